//! `AsyncClient`: the asyncio client, driven on the event loop itself. The
//! socket is the loop's to watch (`add_reader`), the requests of one turn
//! of the loop go out in one write (one `call_soon` per turn), each reply
//! resolves its caller's asyncio future on the spot, and one `call_later`
//! looks after every deadline: an awaited request costs no thread switch.
//! Only opening a connection (TLS handshake and LOGIN included) runs on the
//! shared tokio runtime, whose socket is then handed over (see
//! `gopro::client::socket`). The rules (what each failure means, when to
//! give up on the server, the back-off) are the core's, as for every client.
//!
//! The client is bound to the loop of its calls. A client made on one loop
//! may be used on another once the first has stopped (`asyncio.run` twice);
//! calls from a thread whose loop is not the one driving it are refused.

mod conn;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use gopro::client::end::End;
use gopro::client::socket::Socket;
use gopro::client::{ClientError, ClientSettings};
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use self::conn::{As, Batch, Conn, Dest, Waiter};
use super::awaitable::{awaitable, ready, running_loop, Ready};
use super::calls::Output;
use super::slot::encode_batch;
use super::{addresses, credentials_bytes, BoxFut, ClientStats, Obj, Options};
use crate::defaults;
use crate::errors::{client_err, closed_err};
use crate::util::{command_code, with_body};

/// A result of opening a connection, waiting for the loop to take it.
type Opened = Arc<Mutex<Option<Result<(Socket, usize), ClientError>>>>;

/// What the loop is asked to do for the connection.
#[derive(Default)]
struct Registered {
    reading: Option<i32>,
    writing: Option<i32>,
    flush_soon: bool,
    /// Requests made since the last write, and how many the last write
    /// held: whether callers make their requests one at a time.
    since_write: usize,
    last_write: usize,
    /// When the timer fires, and its handle (held weakly: the loop holds it).
    timer: Option<(Instant, Py<PyWeakrefReference>)>,
}

struct Inner {
    conn: Conn,
    reg: Registered,
}

/// The connection's state and the loop's callbacks into it.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Driver {
    inner: Mutex<Inner>,
    opened: Opened,
    /// The client's encoder, for the checks made before the lock is taken.
    encoder: gopro::Encoder,
    /// The loop bound, for the runtime's thread to find (no Python code
    /// runs while this lock is held).
    bound: Mutex<Option<Py<PyWeakrefReference>>>,
    /// Asked from where the state's lock could not be taken (another
    /// thread, or a drop during a callback): done by the next callback.
    close_asked: AtomicBool,
    orphaned: AtomicBool,
}

fn lock(d: &Driver) -> PyResult<MutexGuard<'_, Inner>> {
    match d.inner.try_lock() {
        Ok(guard) => Ok(guard),
        Err(TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(TryLockError::WouldBlock) => Err(PyRuntimeError::new_err(
            "the AsyncClient is in use on another thread: an AsyncClient belongs to the event loop that runs it",
        )),
    }
}

/// The state for a loop callback; when another thread holds it (a
/// `close` or a counter read), the callback runs again at the loop's next
/// turn instead.
fn lock_or_later<'a>(
    slf: &'a Bound<'_, Driver>,
    callback: &str,
) -> PyResult<Option<MutexGuard<'a, Inner>>> {
    let py = slf.py();
    let d = slf.get();
    let mut inner = match d.inner.try_lock() {
        Ok(guard) => guard,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            if let Some(event_loop) = bound_loop(slf) {
                event_loop.call_method1(intern!(py, "call_soon"), (slf.getattr(callback)?,))?;
            }
            return Ok(None);
        }
    };
    // What was asked while the lock was held elsewhere.
    if d.close_asked.load(Ordering::Acquire) {
        inner.close_now(slf);
    } else if d.orphaned.load(Ordering::Acquire) && !inner.conn.orphaned {
        inner.conn.orphaned = true;
        if inner.conn.is_idle() || inner.conn.give_up_if_orphaned(py) {
            inner.close_now(slf);
        }
    }
    Ok(Some(inner))
}

/// The loop the client is bound to, read without the state's lock.
fn bound_loop<'py>(slf: &Bound<'py, Driver>) -> Option<Bound<'py, PyAny>> {
    let py = slf.py();
    let weak = slf
        .get()
        .bound
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|w| w.clone_ref(py));
    weak.and_then(|w| w.bind(py).upgrade())
}

/// A call's future, on the loop it runs on.
fn create_future<'py>(running: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    running.call_method0(intern!(running.py(), "create_future"))
}

fn is_true(obj: PyResult<Bound<'_, PyAny>>) -> bool {
    obj.and_then(|o| o.is_truthy()).unwrap_or(false)
}

impl Inner {
    /// Binds the connection to `running`, the loop of the call being made,
    /// in place of the loop before, which is not running (see `enter`).
    fn bind(&mut self, slf: &Bound<'_, Driver>, running: &Bound<'_, PyAny>) -> PyResult<()> {
        self.unregister(slf);
        let weak = PyWeakrefReference::new(running)?.unbind();
        let before = slf
            .get()
            .bound
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(weak);
        if before.is_some() {
            // The futures of the loop before are nobody's now.
            self.conn.forget_waiters();
        }
        self.reg = Registered::default();
        // A connection opened while no loop could take it, or one that
        // could not be asked for without a loop.
        if self.conn.connecting {
            let opened = slf
                .get()
                .opened
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(result) = opened {
                self.take_opened(slf, result);
            }
        } else if self.conn.socket.is_none() && self.conn.ended.is_none() {
            self.connect_later(slf, Duration::ZERO);
        }
        self.sync(slf, true);
        if self.conn.socket.is_some() && self.reg.reading.is_none() {
            // A loop that cannot watch a socket (asyncio's proactor loop).
            return Err(crate::wakeup::needs_watching_loop());
        }
        Ok(())
    }

    /// Lets go of the loop's watches (if it is still open).
    fn unregister(&mut self, slf: &Bound<'_, Driver>) {
        let py = slf.py();
        let Some(event_loop) = bound_loop(slf) else {
            return;
        };
        if is_true(event_loop.call_method0(intern!(py, "is_closed"))) {
            return;
        }
        if let Some(fd) = self.reg.reading.take() {
            let _ = event_loop.call_method1(intern!(py, "remove_reader"), (fd,));
        }
        if let Some(fd) = self.reg.writing.take() {
            let _ = event_loop.call_method1(intern!(py, "remove_writer"), (fd,));
        }
        if let Some((_, handle)) = self.reg.timer.take() {
            if let Some(handle) = handle.bind(py).upgrade() {
                let _ = handle.call_method0(intern!(py, "cancel"));
            }
        }
    }

    /// Makes the loop's watches match what the connection needs. After a
    /// write was tried (`wrote`), bytes left wait for the socket's room;
    /// otherwise new bytes go at the loop's next turn.
    fn sync(&mut self, slf: &Bound<'_, Driver>, wrote: bool) {
        let py = slf.py();
        let Some(event_loop) = bound_loop(slf) else {
            return;
        };
        let wants_write = self.conn.wants_write();
        let fd = self.conn.socket.as_ref().map(Socket::raw_fd);
        if self.reg.reading.is_some() && self.reg.reading != fd {
            let old = self.reg.reading.take();
            let _ = event_loop.call_method1(intern!(py, "remove_reader"), (old,));
        }
        if self.reg.writing.is_some() && (self.reg.writing != fd || (wrote && !wants_write)) {
            let old = self.reg.writing.take();
            let _ = event_loop.call_method1(intern!(py, "remove_writer"), (old,));
        }
        if let Some(fd) = fd {
            if self.reg.reading.is_none() {
                if let Ok(callback) = slf.getattr(intern!(py, "_on_readable")) {
                    if event_loop
                        .call_method1(intern!(py, "add_reader"), (fd, callback))
                        .is_ok()
                    {
                        self.reg.reading = Some(fd);
                    }
                }
            }
            if wrote && wants_write && self.reg.writing.is_none() {
                if let Ok(callback) = slf.getattr(intern!(py, "_on_writable")) {
                    if event_loop
                        .call_method1(intern!(py, "add_writer"), (fd, callback))
                        .is_ok()
                    {
                        self.reg.writing = Some(fd);
                    }
                }
            }
            if !wrote
                && self.conn.has_output()
                && !self.reg.flush_soon
                && self.reg.writing.is_none()
            {
                if let Ok(callback) = slf.getattr(intern!(py, "_on_flush")) {
                    if event_loop
                        .call_method1(intern!(py, "call_soon"), (callback,))
                        .is_ok()
                    {
                        self.reg.flush_soon = true;
                    }
                }
            }
        }
        if let Some(wanted) = self.conn.deadline() {
            let armed_in_time = self.reg.timer.as_ref().is_some_and(|(at, _)| *at <= wanted);
            if !armed_in_time {
                if let Some((_, handle)) = self.reg.timer.take() {
                    if let Some(handle) = handle.bind(py).upgrade() {
                        let _ = handle.call_method0(intern!(py, "cancel"));
                    }
                }
                let delay = wanted.saturating_duration_since(Instant::now());
                // A little late rather than early: a timer that fires
                // before the deadline would find nothing due.
                let delay = delay.as_secs_f64() + 0.001;
                if let Ok(callback) = slf.getattr(intern!(py, "_on_timer")) {
                    let handle = event_loop
                        .call_method1(intern!(py, "call_later"), (delay, callback))
                        .and_then(|h| Ok(PyWeakrefReference::new(&h)?.unbind()));
                    if let Ok(handle) = handle {
                        self.reg.timer = Some((wanted, handle));
                    }
                }
            }
        }
    }

    /// The connection ended: its callers are told, and the client
    /// reconnects or ends.
    fn end(&mut self, slf: &Bound<'_, Driver>, end: End) {
        let py = slf.py();
        if self.conn.end(py, end) && !self.conn.give_up_if_orphaned(py) {
            self.connect_later(slf, Duration::ZERO);
        }
    }

    /// Writes what the socket takes now; `true` if the connection ended.
    fn write(&mut self, slf: &Bound<'_, Driver>) -> bool {
        match self.conn.write_now(slf.py()) {
            Some(end) => {
                self.end(slf, end);
                true
            }
            None => false,
        }
    }

    /// Opens a new connection on the runtime after `delay`; the loop takes
    /// it in `_on_connected`.
    fn connect_later(&mut self, slf: &Bound<'_, Driver>, delay: Duration) {
        if bound_loop(slf).is_none() {
            return;
        }
        self.conn.connecting = true;
        let settings: ClientSettings = self.conn.settings.clone();
        let start = self.conn.next_index();
        let driver = slf.clone().unbind();
        let opened = Arc::clone(&slf.get().opened);
        gopro::blocking::runtime().spawn(async move {
            tokio::time::sleep(delay).await;
            let result = Socket::open(&settings, start, false).await;
            *opened.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            Python::attach(|py| {
                // The loop bound now; a loop closed meanwhile leaves the
                // result to the next loop.
                let driver = driver.bind(py);
                let bound = driver
                    .get()
                    .bound
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|w| w.clone_ref(py));
                let event_loop = bound.and_then(|w| w.bind(py).upgrade());
                if let (Some(event_loop), Ok(callback)) =
                    (event_loop, driver.getattr("_on_connected"))
                {
                    let _ = event_loop.call_method1("call_soon_threadsafe", (callback,));
                }
            });
        });
    }

    fn take_opened(
        &mut self,
        slf: &Bound<'_, Driver>,
        result: Result<(Socket, usize), ClientError>,
    ) {
        self.conn.connecting = false;
        match result {
            Ok((socket, _)) if self.conn.ended.is_some() => socket.close(),
            Ok((socket, index)) => {
                self.conn.connected(socket, index);
                self.write(slf);
            }
            Err(_) if self.conn.ended.is_some() || self.conn.give_up_if_orphaned(slf.py()) => {}
            Err(e) => {
                let delay = self.conn.next_delay();
                tracing::debug!(error = %e, ?delay, "gopro client: reconnect failed; trying again");
                self.connect_later(slf, delay);
            }
        }
    }

    /// Closes the connection now; every call waiting fails.
    fn close_now(&mut self, slf: &Bound<'_, Driver>) {
        let py = slf.py();
        self.conn.closed = true;
        if self.conn.ended.is_none() {
            self.conn.end(py, End::Closed);
        }
        self.unregister(slf);
    }
}

#[pymethods]
impl Driver {
    /// The callers' futures are shown to the garbage collector: a task
    /// awaiting a reply holds the client, whose state holds the task's
    /// future, a cycle only the collector can break (a loop closed with
    /// its tasks still waiting). The state taken elsewhere (this thread is
    /// inside a call) hides them for this pass: a cycle is then kept, never
    /// freed too early.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Ok(mut inner) = self.inner.try_lock() else {
            return Ok(());
        };
        let mut result = Ok(());
        inner.conn.each_waiter(&mut |waiter| {
            if result.is_ok() {
                result = visit.call(waiter.future());
            }
        });
        result
    }

    fn __clear__(&self) {
        let mut futures = Vec::new();
        if let Ok(mut inner) = self.inner.try_lock() {
            inner
                .conn
                .each_waiter(&mut |waiter| futures.extend(waiter.take()));
        }
        // Let go of outside the lock: a future's last reference can run
        // Python code (a task's destructor), which may call the client.
        drop(futures);
    }

    fn _on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let Some(mut inner) = lock_or_later(slf, "_on_readable")? else {
            return Ok(());
        };
        let end = inner.conn.read_now(slf.py());
        let mut wrote = false;
        if let Some(end) = end {
            inner.end(slf, end);
        } else if inner.conn.socket.as_ref().is_some_and(Socket::wants_write) {
            // TLS answered something (a key update): it goes now, and what
            // the socket does not take waits for its room.
            wrote = true;
            inner.write(slf);
        }
        inner.conn.prune_deadlines(slf.py());
        inner.sync(slf, wrote);
        Ok(())
    }

    fn _on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let Some(mut inner) = lock_or_later(slf, "_on_writable")? else {
            return Ok(());
        };
        inner.write(slf);
        inner.sync(slf, true);
        Ok(())
    }

    fn _on_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let Some(mut inner) = lock_or_later(slf, "_on_flush")? else {
            return Ok(());
        };
        inner.reg.flush_soon = false;
        inner.reg.last_write = std::mem::take(&mut inner.reg.since_write);
        if inner.reg.writing.is_none() {
            inner.write(slf);
        }
        inner.sync(slf, true);
        Ok(())
    }

    fn _on_timer(slf: &Bound<'_, Self>) -> PyResult<()> {
        let Some(mut inner) = lock_or_later(slf, "_on_timer")? else {
            return Ok(());
        };
        inner.reg.timer = None;
        if let Some(end) = inner.conn.on_timer(slf.py()) {
            inner.end(slf, end);
        } else if inner.conn.has_output() && inner.reg.writing.is_none() {
            // A keep-alive.
            inner.write(slf);
        }
        inner.sync(slf, true);
        Ok(())
    }

    fn _on_connected(slf: &Bound<'_, Self>) -> PyResult<()> {
        let Some(mut inner) = lock_or_later(slf, "_on_connected")? else {
            return Ok(());
        };
        let result = slf
            .get()
            .opened
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(result) = result {
            inner.take_opened(slf, result);
        }
        inner.sync(slf, true);
        Ok(())
    }

    fn _close(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().close_asked.store(true, Ordering::Release);
        // Closed by `lock_or_later` as it takes the lock.
        drop(lock_or_later(slf, "_close")?);
        Ok(())
    }

    fn _orphaned(slf: &Bound<'_, Self>) -> PyResult<()> {
        drop(lock_or_later(slf, "_orphaned")?);
        Ok(())
    }
}

/// A new connection, made into an `AsyncClient` on the loop.
struct Connected(ClientSettings, Socket, usize);

impl Output for Connected {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let Connected(settings, socket, index) = self;
        let encoder = gopro::Encoder::with_max_body(settings.pipeline.max_body);
        let driver = Bound::new(
            py,
            Driver {
                inner: Mutex::new(Inner {
                    conn: Conn::new(settings, socket, index),
                    reg: Registered::default(),
                }),
                opened: Arc::default(),
                encoder,
                bound: Mutex::default(),
                close_asked: AtomicBool::new(false),
                orphaned: AtomicBool::new(false),
            },
        )?;
        if let Ok(running) = running_loop(py) {
            lock(driver.get())?.bind(&driver, &running)?;
        }
        Ok(Py::new(
            py,
            AsyncClient {
                driver: driver.unbind(),
            },
        )?
        .into_any())
    }
}

/// An asyncio connection to a GoPro server: `await AsyncClient.connect(addr)`,
/// safe to share between tasks: concurrent requests go out together on the
/// one connection, and each task gets the reply to its own request.
///
/// ```python
/// client = await gopro.AsyncClient.connect("127.0.0.1:8888")
/// replies = await asyncio.gather(*(client.request(1, b) for b in bodies))
/// ```
///
/// The client runs on the event loop itself: an awaited request costs no
/// thread switch. Cancelling a request (`task.cancel()`,
/// `asyncio.wait_for`) never hands its reply to another caller: the reply
/// is discarded when it comes. `addr` may be a list of addresses, and
/// `reconnect=True` connects again after the connection is lost, and `tls`
/// speaks TLS, as for `Client`:
///
/// ```python
/// client = await gopro.AsyncClient.connect(
///     ["10.0.0.1:8888", "10.0.0.2:8888"], reconnect=True, login=b"user:secret")
/// ```
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct AsyncClient {
    driver: Py<Driver>,
}

/// A call's checks, in the order every call makes them: its arguments
/// first (by the caller), then whether the client was closed, then the
/// running loop; and the loop binding. Gives the lock and the loop.
fn enter<'a, 'py>(
    driver: &'a Bound<'py, Driver>,
) -> PyResult<(MutexGuard<'a, Inner>, Bound<'py, PyAny>)> {
    let py = driver.py();
    let d = driver.get();
    if d.close_asked.load(Ordering::Acquire) {
        return Err(closed_err(py));
    }
    let running = running_loop(py)?;
    let bound = bound_loop(driver);
    let same = bound.as_ref().is_some_and(|bound| bound.is(&running));
    // Another thread's running loop drives it: refused before the lock,
    // which that loop's callbacks need.
    if !same && bound.is_some_and(|bound| is_true(bound.call_method0(intern!(py, "is_running")))) {
        return Err(PyRuntimeError::new_err(
            "the AsyncClient is driven by an event loop running on another thread",
        ));
    }
    let mut inner = lock(d)?;
    if inner.conn.closed {
        return Err(closed_err(py));
    }
    if !same {
        inner.bind(driver, &running)?;
    }
    Ok((inner, running))
}

impl AsyncClient {
    /// A `send`: queued at once when there is room, else a future of its
    /// admission.
    fn send_one<'py>(
        &self,
        py: Python<'py>,
        command: u8,
        body: &[u8],
    ) -> PyResult<Bound<'py, PyAny>> {
        let driver = self.driver.bind(py);
        let encoder = &driver.get().encoder;
        gopro::client::check_body(encoder.max_body(), body.len()).map_err(|e| client_err(py, e))?;
        let (mut inner, running) = enter(driver)?;
        if let Some(e) = inner.conn.ended_error() {
            return ready(py, Err(client_err(py, e)));
        }
        // A send that fits is done at once; one that waits for room gets a
        // future of its admission.
        let mut future = None;
        let went = inner
            .conn
            .push_one(py, gopro::Command(command), body, Dest::Stream, || {
                let admitted = create_future(&running)?;
                let waiter = Waiter::new(&admitted)?;
                future = Some(admitted);
                Ok(Some(waiter))
            })?;
        inner.sync(driver, false);
        match future {
            Some(future) if !went => Ok(future),
            _ => ready(py, Ok(py.None())),
        }
    }

    /// One request whose reply goes to a future of its own.
    fn call<'py>(
        &self,
        py: Python<'py>,
        command: u8,
        body: &[u8],
        kind: As,
    ) -> PyResult<Bound<'py, PyAny>> {
        let driver = self.driver.bind(py);
        gopro::client::check_body(driver.get().encoder.max_body(), body.len())
            .map_err(|e| client_err(py, e))?;
        let (mut inner, running) = enter(driver)?;
        if let Some(e) = inner.conn.ended_error() {
            return ready(py, Err(client_err(py, e)));
        }
        let future = create_future(&running)?;
        let dest = Dest::Call(Waiter::new(&future)?, kind);
        // A request made while nothing is in flight goes at once when the
        // requests come one at a time (the last write held one): a lone
        // request awaited is best served so. Otherwise the requests of one
        // turn of the loop go together at its end.
        let alone = inner.conn.is_idle()
            && inner.reg.last_write <= 1
            && !inner.reg.flush_soon
            && inner.reg.writing.is_none();
        inner.reg.since_write += 1;
        inner
            .conn
            .push_one(py, gopro::Command(command), body, dest, || Ok(None))?;
        if alone {
            inner.reg.last_write = std::mem::take(&mut inner.reg.since_write);
            inner.write(driver);
        }
        inner.sync(driver, alone);
        Ok(future)
    }
}

#[pymethods]
impl AsyncClient {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.driver)
    }

    /// Connects; returns an awaitable of the client.
    #[staticmethod]
    #[pyo3(signature = (addr = None, timeout = defaults::TIMEOUT, *, connect_timeout = defaults::CONNECT_TIMEOUT, max_body = defaults::MAX_BODY, keep_alive = None, reconnect = false, login = None, max_in_flight = defaults::MAX_IN_FLIGHT, max_queued_bytes = defaults::MAX_QUEUED_BYTES, reconnect_delay = defaults::RECONNECT_DELAY, reconnect_max_delay = defaults::RECONNECT_MAX_DELAY, repeatable = None, tls = None),
        text_signature = "(addr='127.0.0.1:8888', timeout=30.0, *, connect_timeout=10.0, max_body=10485760, keep_alive=None, reconnect=False, login=None, max_in_flight=1024, max_queued_bytes=16777216, reconnect_delay=0.1, reconnect_max_delay=2.0, repeatable=None, tls=None)")]
    #[allow(clippy::too_many_arguments)]
    fn connect<'py>(
        py: Python<'py>,
        addr: Option<&Bound<'py, PyAny>>,
        timeout: f64,
        connect_timeout: f64,
        max_body: usize,
        keep_alive: Option<f64>,
        reconnect: bool,
        login: Option<Bound<'py, PyAny>>,
        max_in_flight: usize,
        max_queued_bytes: usize,
        reconnect_delay: f64,
        reconnect_max_delay: f64,
        repeatable: Option<Bound<'py, PyAny>>,
        tls: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = Options {
            timeout,
            connect_timeout,
            max_body,
            keep_alive,
            reconnect,
            login,
            max_in_flight,
            max_queued_bytes,
            reconnect_delay,
            reconnect_max_delay,
            repeatable,
            tls: crate::tls::client_tls(py, tls.as_ref())?,
        };
        let addrs = match addr {
            Some(addr) => addresses(addr)?,
            None => vec![defaults::LISTEN.to_string()],
        };
        let settings = options.builder()?.settings(&addrs);
        let fut: BoxFut<Connected> = Box::pin(async move {
            let settings = settings?;
            let (socket, index) = Socket::open(&settings, 0, true).await?;
            Ok(Connected(settings, socket, index))
        });
        awaitable(py, fut)
    }

    /// Sends one request; awaits its reply.
    #[pyo3(signature = (command, body = None))]
    fn request<'py>(&self, command: &Obj<'py>, body: Option<&Obj<'py>>) -> PyResult<Obj<'py>> {
        let py = command.py();
        let code = command_code(command)?;
        match body {
            Some(body) => with_body(body, |b| self.call(py, code, b, As::Frame))?,
            None => self.call(py, code, b"", As::Frame),
        }
    }

    /// A HEARTBEAT round trip.
    fn heartbeat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.call(py, gopro::Command::HEARTBEAT.0, b"", As::Heartbeat)
    }

    /// Logs in; raises `ServerError` if the server refuses.
    fn login<'py>(
        &self,
        py: Python<'py>,
        credentials: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let credentials = credentials_bytes(credentials)?;
        self.call(py, gopro::Command::LOGIN.0, &credentials, As::Login)
    }

    /// Queues a request without waiting for its reply (pipelining); it is
    /// written at the loop's next turn. Waits only while the client is full.
    #[pyo3(signature = (command, body = None))]
    fn send<'py>(&self, command: &Obj<'py>, body: Option<&Obj<'py>>) -> PyResult<Obj<'py>> {
        let py = command.py();
        let code = command_code(command)?;
        match body {
            Some(body) => with_body(body, |b| self.send_one(py, code, b))?,
            None => self.send_one(py, code, b""),
        }
    }

    /// Writes every queued request; raises `Timeout` if they are not all
    /// written within the timeout (the connection stays).
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let driver = self.driver.bind(py);
        let (mut inner, running) = enter(driver)?;
        if let Some(e) = inner.conn.ended_error() {
            return ready(py, Err(client_err(py, e)));
        }
        if inner.reg.writing.is_none() && inner.write(driver) {
            inner.sync(driver, true);
            let e = inner.conn.ended_error();
            return ready(
                py,
                Err(client_err(
                    py,
                    e.unwrap_or(ClientError::Closed { unanswered: 0 }),
                )),
            );
        }
        let future = create_future(&running)?;
        let waiter = Waiter::new(&future)?;
        let done = inner.conn.flush(waiter).is_some();
        inner.sync(driver, true);
        if done {
            return ready(py, Ok(py.None()));
        }
        Ok(future)
    }

    /// The reply to the oldest request sent with `send` not yet received.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.receive(py, 0)
    }

    /// Sends many requests (`Frame`s or `(command, body)` pairs) and
    /// writes them out, in one call.
    fn send_many<'py>(&self, requests: &Obj<'py>) -> PyResult<Obj<'py>> {
        let py = requests.py();
        let driver = self.driver.bind(py);
        let (wire, n) = encode_batch(&driver.get().encoder, requests)?;
        let (mut inner, running) = enter(driver)?;
        if let Some(e) = inner.conn.ended_error() {
            return ready(py, Err(client_err(py, e)));
        }
        let future = create_future(&running)?;
        let dests = (0..n).map(|_| Dest::Stream).collect();
        inner.conn.submit(py, wire, dests, None, Instant::now());
        if inner.reg.writing.is_none() {
            inner.write(driver);
        }
        let done = inner.conn.flush(Waiter::new(&future)?).is_some();
        inner.sync(driver, true);
        if done {
            return ready(py, Ok(py.None()));
        }
        Ok(future)
    }

    /// The replies to the `n` oldest requests sent with `send` not yet
    /// received, in order. An error reply (or a failure) raises, with the
    /// replies before it in the exception's `replies`.
    fn recv_many<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        if n == 0 {
            let driver = self.driver.bind(py);
            drop(enter(driver)?);
            return ready(py, conn::replies(py, Vec::new(), None));
        }
        self.receive(py, n)
    }

    /// Sends many requests and awaits their replies, in one call.
    fn request_many<'py>(&self, requests: &Obj<'py>) -> PyResult<Obj<'py>> {
        let py = requests.py();
        let driver = self.driver.bind(py);
        let (wire, n) = encode_batch(&driver.get().encoder, requests)?;
        let (mut inner, running) = enter(driver)?;
        if let Some(e) = inner.conn.ended_error() {
            return ready(py, Err(client_err(py, e)));
        }
        if n == 0 {
            return ready(py, conn::replies(py, Vec::new(), None));
        }
        let future = create_future(&running)?;
        let batch = Arc::new(Mutex::new(Batch::new(n, Waiter::new(&future)?)));
        let dests = (0..n).map(|_| Dest::Batch(Arc::clone(&batch))).collect();
        inner.conn.submit(py, wire, dests, None, Instant::now());
        inner.sync(driver, false);
        Ok(future)
    }

    /// Closes the connection at once; the result may be awaited.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        close(self.driver.bind(py));
        Ok(Bound::new(py, Ready::new(Ok(py.None())))?.into_any())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        let d = self.driver.get();
        d.close_asked.load(Ordering::Acquire) || lock(d).is_ok_and(|inner| inner.conn.closed)
    }

    /// The client's counters (requests, replies, reconnects, resent, lost).
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyResult<ClientStats> {
        let _ = py;
        let s = lock(self.driver.get())?.conn.stats;
        Ok(ClientStats {
            requests: s.requests,
            replies: s.replies,
            reconnects: s.reconnects,
            resent: s.resent,
            lost: s.lost,
        })
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        Ok(Bound::new(py, Ready::new(Ok(slf.into_any().unbind())))?.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        close(self.driver.bind(py));
        Ok(Bound::new(
            py,
            Ready::new(Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())),
        )?
        .into_any())
    }

    fn __repr__(&self) -> String {
        let state = if self.closed() { " closed" } else { "" };
        format!("<gopro.AsyncClient{state}>")
    }
}

impl AsyncClient {
    fn receive<'py>(&self, py: Python<'py>, many: usize) -> PyResult<Bound<'py, PyAny>> {
        let driver = self.driver.bind(py);
        let (mut inner, running) = enter(driver)?;
        if many == 0 {
            if let Some(result) = inner.conn.try_recv() {
                let result = result.map_err(|e| client_err(py, e));
                return ready(
                    py,
                    result.and_then(|f| Ok(crate::codec::Frame::new_untracked(py, &f)?.into_any())),
                );
            }
        }
        let future = create_future(&running)?;
        let result = inner.conn.recv(py, many, Waiter::new(&future)?);
        inner.sync(driver, false);
        match result {
            Ok(()) => Ok(future),
            Err((e, frames)) if many > 0 => ready(py, conn::replies(py, frames, Some(e))),
            Err((e, _)) => ready(py, Err(client_err(py, e))),
        }
    }
}

/// Closes the client: at once on the loop's thread (or with no loop
/// running), else on the loop that drives it.
fn close(driver: &Bound<'_, Driver>) {
    let py = driver.py();
    let Ok(mut inner) = lock(driver.get()) else {
        // Busy on another thread: its loop closes it at its next turn.
        driver.get().close_asked.store(true, Ordering::Release);
        if let Some(event_loop) = bound_loop(driver) {
            if let Ok(callback) = driver.getattr(intern!(py, "_close")) {
                let _ = event_loop.call_method1(intern!(py, "call_soon_threadsafe"), (callback,));
            }
        }
        return;
    };
    if let Some(event_loop) = bound_loop(driver) {
        let here = running_loop(py).is_ok_and(|running| running.is(&event_loop));
        if !here && is_true(event_loop.call_method0(intern!(py, "is_running"))) {
            if let Ok(callback) = driver.getattr(intern!(py, "_close")) {
                if event_loop
                    .call_method1(intern!(py, "call_soon_threadsafe"), (callback,))
                    .is_ok()
                {
                    driver.get().close_asked.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
    inner.close_now(driver);
}

impl Drop for AsyncClient {
    fn drop(&mut self) {
        // The connection goes with its last handle, once what is in flight
        // has its replies.
        Python::attach(|py| {
            let driver = self.driver.bind(py);
            let d = driver.get();
            d.orphaned.store(true, Ordering::Release);
            match d.inner.try_lock() {
                Ok(inner) => {
                    drop(inner);
                    drop(lock_or_later(driver, "_orphaned"));
                }
                // Taken by a callback this drop interrupted, or another
                // thread: the loop sees to it at its next turn.
                Err(_) => {
                    if let (Some(event_loop), Ok(callback)) =
                        (bound_loop(driver), driver.getattr(intern!(py, "_orphaned")))
                    {
                        let _ = event_loop
                            .call_method1(intern!(py, "call_soon_threadsafe"), (callback,));
                    }
                }
            }
        });
    }
}
