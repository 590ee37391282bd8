//! `Client` (blocking) and `AsyncClient` (asyncio), both over the core's
//! tokio client.
//!
//! A `send` that only queues bytes, or a `recv` whose reply is already
//! buffered, is done on the calling thread through the core's `try_send` /
//! `try_recv`, without a future. Any other core call is first polled once on
//! the calling thread, and finishes there if it can. A call that has to wait
//! is moved, as it is, into a task on the shared runtime (an asyncio call's
//! future is then resolved on its loop's thread, see `wakeup`). That task runs to its end even if
//! the Python caller stops waiting (KeyboardInterrupt, asyncio
//! cancellation): the core client pairs replies with requests by order, so
//! a request abandoned half way would hand its reply to the next caller.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gopro::client::{ClientBuilder, ClientError};
use pyo3::exceptions::{PyRuntimeError, PyStopIteration, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyTuple, PyWeakrefReference};

use crate::codec::Frame;
use crate::errors::{client_err, closed_err, frame_err};
use crate::util::{body_bytes, command_code, seconds, with_body};
use crate::wakeup;

type CoreClient = gopro::client::Client;
type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send>>;

/// Polls `fut` once on this thread, inside the runtime's context.
fn poll_once<T>(fut: &mut BoxFut<T>) -> Poll<Result<T, ClientError>> {
    let _guard = gopro::blocking::runtime().enter();
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// What a call returns to Python.
pub(crate) trait Output: Send + 'static {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

impl Output for () {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py.None())
    }
}

impl Output for gopro::Frame {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Frame::new_untracked(py, &self)?.into_any())
    }
}

/// A new connection and its body limit.
struct Connected(CoreClient, usize);

impl Output for Connected {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(
            py,
            AsyncClient {
                slot: Slot::new(self.0, self.1),
            },
        )?
        .into_any())
    }
}

/// Settings shared by both clients' constructors.
fn builder(
    timeout: f64,
    connect_timeout: f64,
    max_body: usize,
    keep_alive: Option<f64>,
) -> PyResult<ClientBuilder> {
    let mut builder = CoreClient::builder()
        .timeout(seconds("timeout", timeout)?)
        .connect_timeout(seconds("connect_timeout", connect_timeout)?)
        .max_body(max_body);
    if let Some(interval) = keep_alive {
        builder = builder.keep_alive(seconds("keep_alive", interval)?);
    }
    Ok(builder)
}

/// What [`Slot::try_send`] came to.
enum Sent {
    /// The send's own outcome.
    Done(PyResult<()>),
    /// It has to wait: the connection, the command and a copy of the body.
    Wait(Arc<CoreClient>, u8, Bytes),
}

/// The open connection, shared by the calls in progress; `close` drops it.
struct Slot(Mutex<Option<Arc<CoreClient>>>, gopro::Encoder);

impl Slot {
    fn new(client: CoreClient, max_body: usize) -> Slot {
        Slot(
            Mutex::new(Some(Arc::new(client))),
            gopro::Encoder::with_max_body(max_body),
        )
    }

    /// The command and body of a request, the body checked against the limit.
    fn args(
        &self,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u8, Bytes)> {
        let py = command.py();
        let command = command_code(command)?;
        let body = match body {
            Some(body) => body_bytes(body)?,
            None => Bytes::new(),
        };
        self.1
            .check_len(body.len())
            .map_err(|e| frame_err(py, &e))?;
        Ok((command, body))
    }

    /// A `send` done at once if the connection allows (see
    /// `gopro::client::Client::try_send`): no future, and the body is not
    /// copied but into the write buffer. The arguments and the client's
    /// being open are checked first, then `ready_to_send`, as for any call;
    /// their errors are raised at once.
    fn try_send(
        &self,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        ready_to_send: impl FnOnce() -> PyResult<()>,
    ) -> PyResult<Sent> {
        let py = command.py();
        let command = command_code(command)?;
        let len = body.map_or(Ok(0), |body| with_body(body, <[u8]>::len))?;
        self.1.check_len(len).map_err(|e| frame_err(py, &e))?;
        let client = self.get(py)?;
        ready_to_send()?;
        // No Python code runs and the GIL is kept while the body is read.
        let attempt = |body: &[u8]| match client.try_send(command, body) {
            Some(result) => Sent::Done(result.map_err(|e| client_err(py, e))),
            None => Sent::Wait(client.clone(), command, Bytes::copy_from_slice(body)),
        };
        match body {
            Some(body) => with_body(body, attempt),
            None => Ok(attempt(b"")),
        }
    }

    /// The requests of a batch call (`Frame`s or `(command, body)` pairs),
    /// encoded back to back: one buffer for the batch, not one per body.
    fn batch(&self, items: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        let py = items.py();
        // Room for the headers at least; bodies grow it.
        let mut wire = BytesMut::with_capacity(items.len().unwrap_or(0) * gopro::HEADER_LEN);
        let mut push = |command: u8, body: &[u8]| -> PyResult<()> {
            self.1
                .check_len(body.len())
                .map_err(|e| frame_err(py, &e))?;
            let header = gopro::Header::new(gopro::Command(command), body.len() as u32);
            wire.extend_from_slice(&header.to_bytes());
            wire.extend_from_slice(body);
            Ok(())
        };
        for item in items.try_iter()? {
            let item = item?;
            // A plain tuple is not asked whether it is a `Frame`: that check
            // walks the type's bases, and pairs are the common case.
            if !item.is_exact_instance_of::<PyTuple>() {
                if let Ok(frame) = item.cast::<Frame>() {
                    let (command, body) = frame.get().parts(py);
                    push(command, body)?;
                    continue;
                }
            }
            let pair = item.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
            let Some(pair) = pair else {
                return Err(PyTypeError::new_err(format!(
                    "a batch holds gopro.Frame objects or (command, body) pairs, not {}",
                    item.get_type().name()?
                )));
            };
            let command = command_code(&pair.get_item(0)?)?;
            with_body(&pair.get_item(1)?, |body| push(command, body))??;
        }
        Ok(wire.freeze())
    }

    fn get(&self, py: Python<'_>) -> PyResult<Arc<CoreClient>> {
        let guard = self
            .0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| closed_err(py))
    }

    fn close(&self, py: Python<'_>) {
        let client = self
            .0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Dropping the connection closes the socket; no GIL needed for it.
        py.detach(move || drop(client));
    }

    fn is_closed(&self, py: Python<'_>) -> bool {
        self.0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

/// A call, already bound to a client.
fn request_fut(client: Arc<CoreClient>, command: u8, body: Bytes) -> BoxFut<gopro::Frame> {
    Box::pin(async move { client.request(command, body).await })
}

fn send_fut(client: Arc<CoreClient>, command: u8, body: Bytes) -> BoxFut<()> {
    Box::pin(async move { client.send(command, body).await })
}

fn heartbeat_fut(client: Arc<CoreClient>) -> BoxFut<()> {
    Box::pin(async move { client.heartbeat().await })
}

fn login_fut(client: Arc<CoreClient>, credentials: Bytes) -> BoxFut<()> {
    Box::pin(async move { client.login(credentials).await })
}

fn flush_fut(client: Arc<CoreClient>) -> BoxFut<()> {
    Box::pin(async move { client.flush().await })
}

fn recv_fut(client: Arc<CoreClient>) -> BoxFut<gopro::Frame> {
    Box::pin(async move { client.recv().await })
}

fn send_many_fut(client: Arc<CoreClient>, wire: Bytes) -> BoxFut<()> {
    Box::pin(async move { client.send_encoded(&wire).await.map(drop) })
}

fn recv_many_fut(client: Arc<CoreClient>, n: usize) -> BoxFut<Replies> {
    Box::pin(async move {
        let mut frames = Vec::new();
        let error = client.recv_many(n, &mut frames).await.err();
        Ok(Replies(frames, error))
    })
}

fn request_many_fut(client: Arc<CoreClient>, wire: Bytes) -> BoxFut<Replies> {
    Box::pin(async move {
        let n = client.send_encoded(&wire).await?;
        let mut frames = Vec::new();
        let error = client.recv_many(n, &mut frames).await.err();
        Ok(Replies(frames, error))
    })
}

/// The replies of a batch, and the error that cut it short.
pub(crate) struct Replies(Vec<gopro::Frame>, Option<ClientError>);

impl Output for Replies {
    /// A list; or the error, carrying the replies before it as `.replies`.
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = PyList::new(py, Frame::many_untracked(py, &self.0)?)?;
        match self.1 {
            None => Ok(list.into_any().unbind()),
            Some(e) => {
                let err = client_err(py, e);
                err.value(py).setattr("replies", list)?;
                Err(err)
            }
        }
    }
}

/// The blocking client waits on the runtime: never from one of its threads.
fn not_on_a_runtime_thread() -> PyResult<()> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(PyRuntimeError::new_err(
            "gopro.Client cannot be used on a gopro server thread (a handler): use gopro.AsyncClient in an async def handler",
        ));
    }
    Ok(())
}

/// Runs a call to its end from a plain thread, with the GIL released while
/// it waits. Signals are checked every so often, so Ctrl-C interrupts the
/// wait (the call itself still finishes in the background).
fn block<T: Output>(py: Python<'_>, mut fut: BoxFut<T>) -> PyResult<Py<PyAny>> {
    not_on_a_runtime_thread()?;
    if let Poll::Ready(result) = poll_once(&mut fut) {
        return result.map_err(|e| client_err(py, e))?.into_py(py);
    }
    let rt = gopro::blocking::runtime();
    let mut task = rt.spawn(fut);
    loop {
        let done = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(200), &mut task).await })
        });
        match done {
            Ok(Ok(result)) => return result.map_err(|e| client_err(py, e))?.into_py(py),
            Ok(Err(join)) => {
                return Err(PyRuntimeError::new_err(format!(
                    "gopro client task failed: {join}"
                )))
            }
            Err(_) => py.check_signals()?,
        }
    }
}

/// An awaitable whose result is already there: a call that finished when
/// first polled costs no task, no thread switch and no asyncio future. One
/// at its end from the start (no result) serves every call done with `None`.
#[pyclass(frozen, module = "gopro._gopro")]
struct Ready {
    result: Mutex<Option<PyResult<Py<PyAny>>>>,
}

impl Ready {
    fn new(result: PyResult<Py<PyAny>>) -> Ready {
        Ready {
            result: Mutex::new(Some(result)),
        }
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let result = self
            .result
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match result {
            // The end, with no exception at all for a None.
            Some(Ok(value)) if value.is_none(py) => Ok(None),
            Some(Ok(value)) => Err(PyStopIteration::new_err((value,))),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// As `__next__`, but the end is said with `StopIteration`, as the
    /// generator protocol has it.
    #[pyo3(signature = (_value = None))]
    fn send(&self, py: Python<'_>, _value: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        match self.__next__(py)? {
            Some(value) => Ok(value),
            None => Err(PyStopIteration::new_err(())),
        }
    }
}

/// `async def call_result(value): return value`, for a call done at once.
/// Awaiting a native coroutine hands over its value directly, where an
/// awaitable of ours would raise `StopIteration(value)`, which pyo3 makes
/// into an exception object (before Python 3.12).
fn call_result(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CALL_RESULT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CALL_RESULT
        .get_or_try_init(py, || {
            let module = PyModule::from_code(
                py,
                c"async def call_result(value):\n    return value\n",
                c"gopro/_ready.py",
                c"gopro._ready",
            )?;
            Ok(module.getattr("call_result")?.unbind())
        })
        .map(|f| f.bind(py))
}

thread_local! {
    /// The event loop last seen running on this thread (weakly), and its
    /// `_thread_id` then: this thread's id, as the loop keeps it while it
    /// runs here.
    static LAST_LOOP: RefCell<Option<(Py<PyWeakrefReference>, Py<PyAny>)>> =
        const { RefCell::new(None) };
}

/// Fails unless an event loop runs on this thread. The loop last seen
/// running here says so if it still holds the same `_thread_id` object
/// (asyncio's loops set it each time they start, to the running thread's
/// id), without asking asyncio, whose `get_running_loop` makes a system call
/// each time before Python 3.12.
fn in_running_loop(py: Python<'_>) -> PyResult<()> {
    let last = LAST_LOOP.with_borrow(|last| {
        last.as_ref()
            .map(|(weak, id)| (weak.clone_ref(py), id.clone_ref(py)))
    });
    if let Some((weak, id)) = last {
        let same_run = weak.bind(py).upgrade().is_some_and(|l| {
            l.getattr(intern!(py, "_thread_id"))
                .is_ok_and(|now| now.is(&id))
        });
        if same_run {
            return Ok(());
        }
    }
    let running = pyo3_async_runtimes::get_running_loop(py)?;
    let seen = match (
        PyWeakrefReference::new(&running),
        running.getattr(intern!(py, "_thread_id")),
    ) {
        (Ok(weak), Ok(id)) if !id.is_none() => Some((weak.unbind(), id.unbind())),
        // A loop without `_thread_id`: asked each time.
        _ => None,
    };
    LAST_LOOP.with_borrow_mut(|last| *last = seen);
    Ok(())
}

/// The awaitable of a call done at once.
fn ready(py: Python<'_>, result: PyResult<Py<PyAny>>) -> PyResult<Bound<'_, PyAny>> {
    if let Ok(value) = &result {
        if !value.is_none(py) {
            return call_result(py)?.call1((value,));
        }
        // Done with None: one awaitable, at its end for good, serves all.
        static DONE: PyOnceLock<Py<Ready>> = PyOnceLock::new();
        let done = DONE.get_or_try_init(py, || {
            Py::new(
                py,
                Ready {
                    result: Mutex::new(None),
                },
            )
        })?;
        return Ok(done.bind(py).clone().into_any());
    }
    Ok(Bound::new(py, Ready::new(result))?.into_any())
}

/// Hands a call to the running asyncio loop.
fn awaitable<T: Output>(py: Python<'_>, mut fut: BoxFut<T>) -> PyResult<Bound<'_, PyAny>> {
    // The async API needs a running loop, even when the answer is already
    // there: the same call must not work or fail depending on timing.
    in_running_loop(py)?;
    if let Poll::Ready(result) = poll_once(&mut fut) {
        return ready(
            py,
            result
                .map_err(|e| client_err(py, e))
                .and_then(|v| v.into_py(py)),
        );
    }
    let event_loop = match pyo3_async_runtimes::get_running_loop(py) {
        Ok(event_loop) => event_loop,
        Err(e) => {
            // Begun already: the call runs to its end (see the top).
            gopro::blocking::runtime().spawn(fut);
            return Err(e);
        }
    };
    wakeup::spawn(&event_loop, async move {
        let result = fut.await;
        Box::new(move |py: Python<'_>| result.map_err(|e| client_err(py, e))?.into_py(py))
            as wakeup::Make
    })
}

/// A blocking connection to a GoPro server.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Client {
    slot: Slot,
    addr: String,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (addr = "127.0.0.1:8888", timeout = 30.0, *, connect_timeout = 10.0, max_body = gopro::DEFAULT_MAX_BODY, keep_alive = None))]
    fn new(
        py: Python<'_>,
        addr: &str,
        timeout: f64,
        connect_timeout: f64,
        max_body: usize,
        keep_alive: Option<f64>,
    ) -> PyResult<Client> {
        let addr = addr.to_string();
        let builder = builder(timeout, connect_timeout, max_body, keep_alive)?;
        let target = addr.clone();
        let fut: BoxFut<CoreClient> = Box::pin(async move { builder.connect(&target).await });
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(PyRuntimeError::new_err(
                "gopro.Client cannot be used on a gopro server thread (a handler): use gopro.AsyncClient in an async def handler",
            ));
        }
        let rt = gopro::blocking::runtime();
        let client = py
            .detach(|| rt.block_on(fut))
            .map_err(|e| client_err(py, e))?;
        Ok(Client {
            slot: Slot::new(client, max_body),
            addr,
        })
    }

    /// Sends one request and returns its reply.
    #[pyo3(signature = (command, body = None))]
    fn request(
        &self,
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let (command, body) = self.slot.args(command, body)?;
        block(py, request_fut(self.slot.get(py)?, command, body))
    }

    /// A HEARTBEAT round trip.
    fn heartbeat(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        block(py, heartbeat_fut(self.slot.get(py)?))
    }

    /// Logs in; raises `ServerError` if the server refuses.
    fn login(&self, py: Python<'_>, credentials: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let credentials = credentials_bytes(credentials)?;
        block(py, login_fut(self.slot.get(py)?, credentials))
    }

    /// Queues a request without waiting for its reply (pipelining).
    #[pyo3(signature = (command, body = None))]
    fn send(
        &self,
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        match self.slot.try_send(command, body, not_on_a_runtime_thread)? {
            Sent::Done(result) => result.map(|()| py.None()),
            Sent::Wait(client, command, body) => block(py, send_fut(client, command, body)),
        }
    }

    /// Writes every queued request.
    fn flush(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        block(py, flush_fut(self.slot.get(py)?))
    }

    /// The reply to the oldest request not yet answered.
    fn recv(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let client = self.slot.get(py)?;
        not_on_a_runtime_thread()?;
        if let Some(result) = client.try_recv() {
            return result.map_err(|e| client_err(py, e))?.into_py(py);
        }
        block(py, recv_fut(client))
    }

    /// Sends many requests (`Frame`s or `(command, body)` pairs) and
    /// writes them out, in one call.
    fn send_many(&self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let requests = self.slot.batch(requests)?;
        block(py, send_many_fut(self.slot.get(py)?, requests))
    }

    /// The replies to the `n` oldest requests not yet answered, in order.
    /// An error reply (or a failure) raises, with the replies before it in
    /// the exception's `replies`.
    fn recv_many(&self, py: Python<'_>, n: usize) -> PyResult<Py<PyAny>> {
        block(py, recv_many_fut(self.slot.get(py)?, n))
    }

    /// `send_many` then `recv_many` for as many replies, in one call.
    fn request_many(&self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let requests = self.slot.batch(requests)?;
        block(py, request_many_fut(self.slot.get(py)?, requests))
    }

    /// Closes the connection; later calls raise `ConnectionClosed`.
    fn close(&self, py: Python<'_>) {
        self.slot.close(py);
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.slot.is_closed(py)
    }

    /// The address given.
    #[getter]
    fn addr(&self) -> &str {
        &self.addr
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.slot.close(py);
        false
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.slot.is_closed(py) {
            " closed"
        } else {
            ""
        };
        format!("<gopro.Client {}{state}>", self.addr)
    }
}

/// Credentials: bytes-like, or text sent as UTF-8.
fn credentials_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(text) = obj.cast::<pyo3::types::PyString>() {
        return Ok(Bytes::copy_from_slice(text.to_cow()?.as_bytes()));
    }
    body_bytes(obj)
}

/// An asyncio connection to a GoPro server: `await AsyncClient.connect(addr)`.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct AsyncClient {
    slot: Slot,
}

#[pymethods]
impl AsyncClient {
    /// Connects; returns an awaitable of the client.
    #[staticmethod]
    #[pyo3(signature = (addr = "127.0.0.1:8888", timeout = 30.0, *, connect_timeout = 10.0, max_body = gopro::DEFAULT_MAX_BODY, keep_alive = None))]
    fn connect<'py>(
        py: Python<'py>,
        addr: &str,
        timeout: f64,
        connect_timeout: f64,
        max_body: usize,
        keep_alive: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let builder = builder(timeout, connect_timeout, max_body, keep_alive)?;
        let addr = addr.to_string();
        let fut: BoxFut<Connected> =
            Box::pin(async move { Ok(Connected(builder.connect(&addr).await?, max_body)) });
        awaitable(py, fut)
    }

    /// Sends one request; awaits its reply.
    #[pyo3(signature = (command, body = None))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
        body: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (command, body) = self.slot.args(command, body)?;
        awaitable(py, request_fut(self.slot.get(py)?, command, body))
    }

    /// A HEARTBEAT round trip.
    fn heartbeat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, heartbeat_fut(self.slot.get(py)?))
    }

    /// Logs in; raises `ServerError` if the server refuses.
    fn login<'py>(
        &self,
        py: Python<'py>,
        credentials: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let credentials = credentials_bytes(credentials)?;
        awaitable(py, login_fut(self.slot.get(py)?, credentials))
    }

    /// Queues a request without waiting for its reply (pipelining).
    #[pyo3(signature = (command, body = None))]
    fn send<'py>(
        &self,
        py: Python<'py>,
        command: &Bound<'py, PyAny>,
        body: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.slot.try_send(command, body, || in_running_loop(py))? {
            // Raised when awaited, as from a call that waited.
            Sent::Done(result) => ready(py, result.map(|()| py.None())),
            Sent::Wait(client, command, body) => awaitable(py, send_fut(client, command, body)),
        }
    }

    /// Writes every queued request.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, flush_fut(self.slot.get(py)?))
    }

    /// The reply to the oldest request not yet answered.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.slot.get(py)?;
        in_running_loop(py)?;
        if let Some(result) = client.try_recv() {
            let result = result.map_err(|e| client_err(py, e));
            return ready(py, result.and_then(|frame| frame.into_py(py)));
        }
        awaitable(py, recv_fut(client))
    }

    /// Sends many requests (`Frame`s or `(command, body)` pairs) and
    /// writes them out, in one call.
    fn send_many<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let requests = self.slot.batch(requests)?;
        awaitable(py, send_many_fut(self.slot.get(py)?, requests))
    }

    /// The replies to the `n` oldest requests not yet answered, in order.
    /// An error reply (or a failure) raises, with the replies before it in
    /// the exception's `replies`.
    fn recv_many<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, recv_many_fut(self.slot.get(py)?, n))
    }

    /// `send_many` then `recv_many` for as many replies, in one call.
    fn request_many<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let requests = self.slot.batch(requests)?;
        awaitable(py, request_many_fut(self.slot.get(py)?, requests))
    }

    /// Closes the connection at once; the result may be awaited.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.slot.close(py);
        Ok(Bound::new(py, Ready::new(Ok(py.None())))?.into_any())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.slot.is_closed(py)
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
        self.slot.close(py);
        Ok(Bound::new(
            py,
            Ready::new(Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())),
        )?
        .into_any())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.slot.is_closed(py) {
            " closed"
        } else {
            ""
        };
        format!("<gopro.AsyncClient{state}>")
    }
}
