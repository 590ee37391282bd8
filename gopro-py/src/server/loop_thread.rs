//! Where coroutine handlers run: the serving asyncio loop, or a loop thread
//! of the server's own, started by `gopro._loop` when the first coroutine
//! needs it and stopped after the server's last connection has finished.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::PyModule;
use pyo3_async_runtimes::TaskLocals;

/// The Python module that starts and stops the loop thread
/// (`python/gopro/_loop.py`), imported once.
fn loop_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || py.import("gopro._loop").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// Where coroutine handlers run.
enum LoopState {
    /// None yet; a loop thread is started on first use.
    Lazy,
    /// The asyncio loop the server is served from.
    Serving(TaskLocals),
    /// The server's own loop thread.
    Owned {
        locals: TaskLocals,
        thread: Py<PyAny>,
    },
    /// The server has stopped.
    Stopped,
}

/// What the handlers of one run of a server share.
pub(super) struct Ctx {
    loop_state: Mutex<LoopState>,
    owns_loop: AtomicBool,
}

impl Ctx {
    pub(super) fn new(serving: Option<TaskLocals>) -> Arc<Ctx> {
        Arc::new(Ctx {
            loop_state: Mutex::new(serving.map_or(LoopState::Lazy, LoopState::Serving)),
            owns_loop: AtomicBool::new(false),
        })
    }

    pub(super) fn locals(&self, py: Python<'_>) -> PyResult<TaskLocals> {
        let mut state = self
            .loop_state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        match &*state {
            LoopState::Serving(locals) | LoopState::Owned { locals, .. } => Ok(locals.clone()),
            LoopState::Stopped => Err(PyRuntimeError::new_err("the server has stopped")),
            LoopState::Lazy => {
                let started = loop_module(py)?.getattr("start")?.call0()?;
                let (event_loop, thread): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
                    started.extract()?;
                let locals = TaskLocals::new(event_loop).copy_context(py)?;
                self.owns_loop.store(true, Ordering::SeqCst);
                *state = LoopState::Owned {
                    locals: locals.clone(),
                    thread: thread.unbind(),
                };
                Ok(locals)
            }
        }
    }

    /// Stops the loop thread, if one was started, once nothing needs it.
    pub(super) fn stop(&self) {
        if !self.owns_loop.load(Ordering::SeqCst) {
            if let Ok(mut state) = self.loop_state.lock() {
                if matches!(*state, LoopState::Lazy) {
                    *state = LoopState::Stopped;
                    return;
                }
            }
        }
        Python::attach(|py| {
            let old = std::mem::replace(
                &mut *self
                    .loop_state
                    .lock_py_attached(py)
                    .unwrap_or_else(|e| e.into_inner()),
                LoopState::Stopped,
            );
            if let LoopState::Owned { locals, thread } = old {
                let stop = loop_module(py).and_then(|m| m.getattr("stop"));
                if let Err(e) = stop.and_then(|stop| stop.call1((locals.event_loop(py), thread))) {
                    e.print(py);
                }
            }
        });
    }
}
