//! What an asyncio call returns: the awaitable of a call that finished at
//! once (no task, no asyncio future), or an asyncio future resolved on the
//! loop's thread when the call has had to wait (see `wakeup`).

use std::cell::RefCell;
use std::sync::Mutex;
use std::task::Poll;

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::PyWeakrefReference;

use super::calls::Output;
use super::{poll_once, BoxFut};
use crate::errors::client_err;
use crate::wakeup;

/// An awaitable whose result is already there: a call that finished when
/// first polled costs no task, no thread switch and no asyncio future. One
/// at its end from the start (no result) serves every call done with `None`.
#[pyclass(frozen, module = "gopro._gopro")]
pub(super) struct Ready {
    result: Mutex<Option<PyResult<Py<PyAny>>>>,
}

impl Ready {
    pub(super) fn new(result: PyResult<Py<PyAny>>) -> Ready {
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

/// `gopro._ready.call_result`, `async def call_result(value): return value`,
/// for a call done at once. Awaiting a native coroutine hands over its value
/// directly, where an awaitable of ours would raise `StopIteration(value)`,
/// which pyo3 makes into an exception object (before Python 3.12).
fn call_result(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CALL_RESULT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CALL_RESULT
        .get_or_try_init(py, || {
            let module = py.import("gopro._ready")?;
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

/// The event loop running on this thread, or the error of
/// `asyncio.get_running_loop`. The loop last seen running here is the one
/// if it still holds the same `_thread_id` object (asyncio's loops set it
/// each time they start, to the running thread's id), without asking
/// asyncio, whose `get_running_loop` makes a system call each time before
/// Python 3.12.
pub(super) fn running_loop(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let last = LAST_LOOP.with_borrow(|last| {
        last.as_ref()
            .map(|(weak, id)| (weak.clone_ref(py), id.clone_ref(py)))
    });
    if let Some((weak, id)) = last {
        if let Some(running) = weak.bind(py).upgrade() {
            let same_run = running
                .getattr(intern!(py, "_thread_id"))
                .is_ok_and(|now| now.is(&id));
            if same_run {
                return Ok(running);
            }
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
    Ok(running)
}

/// The awaitable of a call done at once.
pub(super) fn ready(py: Python<'_>, result: PyResult<Py<PyAny>>) -> PyResult<Bound<'_, PyAny>> {
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
pub(super) fn awaitable<T: Output>(
    py: Python<'_>,
    mut fut: BoxFut<T>,
) -> PyResult<Bound<'_, PyAny>> {
    // The async API needs a running loop, even when the answer is already
    // there: the same call must not work or fail depending on timing.
    let event_loop = running_loop(py)?;
    if let Poll::Ready(result) = poll_once(&mut fut) {
        return ready(
            py,
            result
                .map_err(|e| client_err(py, e))
                .and_then(|v| v.into_py(py)),
        );
    }
    wakeup::spawn(&event_loop, async move {
        let result = fut.await;
        Box::new(move |py: Python<'_>| result.map_err(|e| client_err(py, e))?.into_py(py))
            as wakeup::Make
    })
}
