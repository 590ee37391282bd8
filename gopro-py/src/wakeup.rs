//! Resolving asyncio futures with what the runtime's tasks produce, without
//! taking the GIL on the runtime's threads.
//!
//! A task that finishes a call leaves a maker of its result in its loop's
//! queue and, if no wake-up is already on its way, writes one byte to a
//! socket pair whose other end the event loop watches (`loop.add_reader`).
//! On the loop's thread, which holds the GIL anyway, the results are then
//! made into Python objects and their futures resolved. The runtime's
//! threads never wait for the GIL, and one wake-up serves every call that
//! finished in the meantime.

use std::collections::HashMap;
use std::future::Future;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyo3::exceptions::{PyNotImplementedError, PyRuntimeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyWeakrefMethods, PyWeakrefReference};

/// Makes a call's result (or its exception) on the loop's thread.
pub(crate) type Make = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// The wakers of the event loops in use, each with a weak reference to its
/// loop.
static WAKERS: Mutex<Vec<(Py<PyWeakrefReference>, Py<LoopWaker>)>> = Mutex::new(Vec::new());

/// A future of `event_loop` (the running loop) resolved with what `work`
/// makes, `work` running on the shared runtime.
pub(crate) fn spawn<'py>(
    event_loop: &Bound<'py, PyAny>,
    work: impl Future<Output = Make> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>> {
    let (future, mut done) = future(event_loop)?;
    gopro::blocking::runtime().spawn(async move {
        let make = work.await;
        done.send(make);
    });
    Ok(future)
}

/// A future of `event_loop` (the running loop), and what resolves it from
/// any thread: [`Done::send`], or the drop of the `Done`, which resolves it
/// with an error.
pub(crate) fn future<'py>(event_loop: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Done)> {
    let py = event_loop.py();
    let waker = waker_for(event_loop)?;
    let waker = waker.get();
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let id = waker.next.fetch_add(1, Ordering::Relaxed);
    // Weakly: a future holds its loop, so a strong reference here would
    // keep a loop closed with a call in flight alive, and its waker with
    // it. A future nobody holds any more has nobody to give a result to.
    let weak = PyWeakrefReference::new(&future)?.unbind();
    lock(&waker.waiting).insert(id, weak);
    let done = Done {
        finished: Arc::clone(&waker.finished),
        id,
        sent: false,
    };
    Ok((future, done))
}

/// The waker of `event_loop`, made and registered with it on first use.
fn waker_for<'py>(event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, LoopWaker>> {
    let py = event_loop.py();
    {
        // (The GIL, held by every user of `WAKERS`, is never given back
        // while it is locked: a plain lock.)
        let wakers = lock(&WAKERS);
        for (weak, waker) in wakers.iter() {
            if weak.bind(py).upgrade().is_some_and(|l| l.is(event_loop)) {
                return Ok(waker.bind(py).clone());
            }
        }
    }
    // A new loop: the wakers of loops gone or closed go first. A loop's
    // `is_closed` is Python code, so it is asked outside the lock, of a
    // copy of the list; the entries stay listed meanwhile.
    let known: Vec<_> = lock(&WAKERS)
        .iter()
        .map(|(weak, waker)| (weak.clone_ref(py), waker.clone_ref(py)))
        .collect();
    let dead: Vec<Py<LoopWaker>> = known
        .into_iter()
        .filter(|(weak, _)| {
            weak.bind(py).upgrade().is_none_or(|l| {
                l.call_method0(intern!(py, "is_closed"))
                    .and_then(|closed| closed.is_truthy())
                    .unwrap_or(false)
            })
        })
        .map(|(_, waker)| waker)
        .collect();
    let weak = PyWeakrefReference::new(event_loop)?.unbind();
    let waker = Bound::new(py, LoopWaker::new()?)?;
    let registered = event_loop.call_method1(
        intern!(py, "add_reader"),
        (waker.get().finished.rx.as_raw_fd(), waker.clone()),
    );
    {
        let mut wakers = lock(&WAKERS);
        wakers.retain(|(_, listed)| !dead.iter().any(|d| d.is(listed)));
        if registered.is_ok() {
            wakers.push((weak, waker.clone().unbind()));
        }
    }
    // The last references to the dead wakers go outside the lock.
    drop(dead);
    registered.map_err(|e| {
        if e.is_instance_of::<PyNotImplementedError>(py) {
            let refused = needs_watching_loop();
            refused.set_cause(py, Some(e));
            refused
        } else {
            e
        }
    })?;
    Ok(waker)
}

/// The error for a loop that cannot watch a socket (asyncio's proactor
/// loop, whose `add_reader` raises `NotImplementedError`).
pub(crate) fn needs_watching_loop() -> PyErr {
    PyRuntimeError::new_err(
        "gopro's asyncio calls need an event loop that watches sockets (loop.add_reader): \
         asyncio's selector loop or uvloop",
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a loop's waker shares with the runtime's tasks: the results, and
/// both ends of the socket pair, so that a task finishing after its loop
/// and waker are gone still writes to an open socket (no `SIGPIPE`).
struct Finished {
    results: Mutex<Vec<(u64, Make)>>,
    /// A wake-up byte was written and not yet read.
    signalled: AtomicBool,
    tx: UnixStream,
    rx: UnixStream,
}

impl Finished {
    fn push(&self, id: u64, make: Make) {
        lock(&self.results).push((id, make));
        if !self.signalled.swap(true, Ordering::AcqRel) {
            // Bytes already waiting (`WouldBlock`) wake the loop as well.
            while let Err(e) = (&self.tx).write(&[1]) {
                if e.kind() != ErrorKind::Interrupted {
                    break;
                }
            }
        }
    }
}

/// Sends a task's result once: what it made, or, if the task ends without
/// making anything (it panicked, or the runtime dropped it), an error.
pub(crate) struct Done {
    finished: Arc<Finished>,
    id: u64,
    sent: bool,
}

impl Done {
    /// Resolves the future with what `make` makes, on the loop's thread.
    pub(crate) fn send(&mut self, make: Make) {
        self.sent = true;
        self.finished.push(self.id, make);
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if !self.sent {
            self.finished.push(
                self.id,
                Box::new(|_| {
                    Err(PyRuntimeError::new_err(
                        "gopro client task failed before its result",
                    ))
                }),
            );
        }
    }
}

/// One event loop's end of the wake-ups: called by the loop when a byte
/// arrives, it resolves the futures of the calls that finished.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct LoopWaker {
    finished: Arc<Finished>,
    /// The futures of the calls not yet resolved, by id.
    waiting: Mutex<HashMap<u64, Py<PyWeakrefReference>>>,
    next: AtomicU64,
}

impl LoopWaker {
    fn new() -> PyResult<LoopWaker> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(LoopWaker {
            finished: Arc::new(Finished {
                results: Mutex::new(Vec::new()),
                signalled: AtomicBool::new(false),
                tx,
                rx,
            }),
            waiting: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
        })
    }
}

#[pymethods]
impl LoopWaker {
    fn __call__(&self, py: Python<'_>) {
        let mut sink = [0u8; 16];
        loop {
            match (&self.finished.rx).read(&mut sink) {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        // Cleared before the queue is taken: a result queued after this
        // writes a new byte, and is resolved on the next call.
        self.finished.signalled.store(false, Ordering::Release);
        let results = std::mem::take(&mut *lock(&self.finished.results));
        for (id, make) in results {
            let weak = lock(&self.waiting).remove(&id);
            let Some(future) = weak.and_then(|weak| weak.bind(py).upgrade()) else {
                continue;
            };
            if let Err(e) = resolve(&future, make) {
                e.write_unraisable(py, Some(&future));
            }
        }
    }
}

fn resolve(future: &Bound<'_, PyAny>, make: Make) -> PyResult<()> {
    let py = future.py();
    // A cancelled call: its result is dropped (the core client discards
    // the reply of a request whose caller is gone).
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    match make(py) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
        Err(e) => future.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
    };
    Ok(())
}
