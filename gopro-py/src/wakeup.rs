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

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
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
    let py = event_loop.py();
    let waker = waker_for(event_loop)?;
    let waker = waker.get();
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let id = waker.next.fetch_add(1, Ordering::Relaxed);
    lock(&waker.waiting).insert(id, future.clone().unbind());
    let mut done = Done {
        finished: Arc::clone(&waker.finished),
        id,
        sent: false,
    };
    gopro::blocking::runtime().spawn(async move {
        let make = work.await;
        done.send(make);
    });
    Ok(future)
}

/// The waker of `event_loop`, made and registered with it on first use.
fn waker_for<'py>(event_loop: &Bound<'py, PyAny>) -> PyResult<Bound<'py, LoopWaker>> {
    let py = event_loop.py();
    let dead = {
        let mut wakers = WAKERS
            .lock_py_attached(py)
            .unwrap_or_else(PoisonError::into_inner);
        for (weak, waker) in wakers.iter() {
            if weak.bind(py).upgrade().is_some_and(|l| l.is(event_loop)) {
                return Ok(waker.bind(py).clone());
            }
        }
        // Loops gone: their wakers go too, outside the lock (dropping a
        // waiting future may run Python code).
        let (live, dead) = std::mem::take(&mut *wakers)
            .into_iter()
            .partition(|(weak, _)| weak.bind(py).upgrade().is_some());
        *wakers = live;
        dead
    };
    drop::<Vec<_>>(dead);
    let waker = Bound::new(py, LoopWaker::new()?)?;
    event_loop.call_method1(
        intern!(py, "add_reader"),
        (waker.get().rx.as_raw_fd(), waker.clone()),
    )?;
    let weak = PyWeakrefReference::new(event_loop)?.unbind();
    WAKERS
        .lock_py_attached(py)
        .unwrap_or_else(PoisonError::into_inner)
        .push((weak, waker.clone().unbind()));
    Ok(waker)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a loop's waker shares with the runtime's tasks.
struct Finished {
    results: Mutex<Vec<(u64, Make)>>,
    /// A wake-up byte was written and not yet read.
    signalled: AtomicBool,
    tx: UnixStream,
}

impl Finished {
    fn push(&self, id: u64, make: Make) {
        lock(&self.results).push((id, make));
        if !self.signalled.swap(true, Ordering::AcqRel) {
            // At most this one byte is in the socket: the write cannot
            // block, and a failure (the loop's end closed) leaves nobody
            // to wake.
            let _ = (&self.tx).write(&[1]);
        }
    }
}

/// Sends a task's result once: what it made, or, if the task ends without
/// making anything (it panicked, or the runtime dropped it), an error.
struct Done {
    finished: Arc<Finished>,
    id: u64,
    sent: bool,
}

impl Done {
    fn send(&mut self, make: Make) {
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
    rx: UnixStream,
    /// The futures of the calls not yet resolved, by id.
    waiting: Mutex<HashMap<u64, Py<PyAny>>>,
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
            }),
            rx,
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
            match (&self.rx).read(&mut sink) {
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
            let Some(future) = lock(&self.waiting).remove(&id) else {
                continue;
            };
            if let Err(e) = resolve(future.bind(py), make) {
                e.write_unraisable(py, Some(future.bind(py)));
            }
        }
    }
}

fn resolve(future: &Bound<'_, PyAny>, make: Make) -> PyResult<()> {
    let py = future.py();
    // A cancelled call: its result is dropped (the call itself ran to its
    // end, see `client`).
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(());
    }
    match make(py) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
        Err(e) => future.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
    };
    Ok(())
}
