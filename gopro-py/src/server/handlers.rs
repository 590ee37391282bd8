//! A Python handler called for a frame, and the LOGIN check.
//!
//! This is the hot path: a plain function is called straight from the read
//! buffer with the GIL the batch already holds (see `lifecycle`), and its
//! bytes or `Frame` become the reply without another Python call. A
//! coroutine is handed to the handlers' loop (`loop_thread`). An exception
//! is logged with its traceback and the client gets ERROR.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use gopro::server::Reply;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString};

use super::loop_thread::Ctx;
use crate::codec::Frame;
use crate::util::with_body;

fn logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .get_or_try_init(py, || {
            Ok(py
                .import("logging")?
                .call_method1("getLogger", ("gopro.server",))?
                .unbind())
        })
        .map(|l| l.bind(py))
}

fn isawaitable(obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    static ISAWAITABLE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = obj.py();
    ISAWAITABLE
        .get_or_try_init(py, || {
            PyResult::Ok(py.import("inspect")?.getattr("isawaitable")?.unbind())
        })?
        .bind(py)
        .call1((obj,))?
        .is_truthy()
}

/// What went to a handler: a command, or LOGIN for the authenticator.
#[derive(Clone, Copy)]
enum Target {
    Command(u8),
    Login,
}

impl Target {
    fn describe(self) -> String {
        match self {
            Target::Command(code) => match gopro::Command(code).name() {
                Some(name) => format!("the {name} handler"),
                None => format!("the handler of command {code}"),
            },
            Target::Login => "the authenticator".to_string(),
        }
    }
}

/// Logs a handler's exception with its traceback; returns the reason sent
/// back in the ERROR frame.
fn report(py: Python<'_>, target: Target, err: PyErr) -> String {
    let value = err.value(py);
    let reason = match value.str() {
        Ok(text) if !text.is_empty().unwrap_or(true) => text.to_string(),
        _ => value
            .get_type()
            .name()
            .map_or_else(|_| "handler failed".into(), |n| n.to_string()),
    };
    let log = || -> PyResult<()> {
        let kwargs = PyDict::new(py);
        let info = (value.get_type(), value, err.traceback(py));
        kwargs.set_item("exc_info", info)?;
        logger(py)?.call_method(
            "error",
            (
                "%s raised an exception; the client gets ERROR",
                target.describe(),
            ),
            Some(&kwargs),
        )?;
        Ok(())
    };
    if let Err(e) = log() {
        e.print(py);
    }
    reason
}

type PyFut = Pin<Box<dyn Future<Output = PyResult<Py<PyAny>>> + Send>>;

/// A handler's answer, or the coroutine still to run for it.
enum Step<T> {
    Done(Result<T, String>),
    Wait(PyFut),
}

/// A handler's return value as a reply: bytes-like (sent with the
/// request's command), str (as UTF-8), a `Frame`, or None.
fn to_reply(py: Python<'_>, target: Target, ret: &Bound<'_, PyAny>) -> Result<Reply, String> {
    if ret.is_none() {
        return Ok(Reply::None);
    }
    if let Ok(bytes) = ret.cast::<PyBytes>() {
        return Ok(Reply::Body(Bytes::copy_from_slice(bytes.as_bytes())));
    }
    if let Ok(frame) = ret.cast::<Frame>() {
        return Ok(Reply::Frame(frame.get().to_core(py)));
    }
    if let Ok(text) = ret.cast::<PyString>() {
        return text
            .to_cow()
            .map(|s| Reply::Body(Bytes::copy_from_slice(s.as_bytes())))
            .map_err(|e| report(py, target, e));
    }
    if ret.cast::<PyByteArray>().is_ok() || ret.hasattr("__buffer__").unwrap_or(false) {
        return with_body(ret, |b| Reply::Body(Bytes::copy_from_slice(b)))
            .map_err(|e| report(py, target, e));
    }
    match with_body(ret, |b| Reply::Body(Bytes::copy_from_slice(b))) {
        Ok(reply) => Ok(reply),
        Err(_) => {
            let kind = ret
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string());
            Err(report(
                py,
                target,
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "a handler must return bytes, a gopro.Frame or None, not {kind}"
                )),
            ))
        }
    }
}

/// Calls `func(arg)`; an awaitable result is scheduled on the handlers' loop.
fn call<T>(
    py: Python<'_>,
    target: Target,
    ctx: &Ctx,
    func: &Py<PyAny>,
    arg: Bound<'_, PyAny>,
    convert: fn(Python<'_>, Target, &Bound<'_, PyAny>) -> Result<T, String>,
) -> Step<T> {
    let ret = match func.bind(py).call1((arg,)) {
        Ok(ret) => ret,
        Err(e) => return Step::Done(Err(report(py, target, e))),
    };
    // Replies are checked first: most handlers are plain functions.
    if ret.is_none() || ret.cast::<PyBytes>().is_ok() || ret.cast::<Frame>().is_ok() {
        return Step::Done(convert(py, target, &ret));
    }
    match isawaitable(&ret) {
        Ok(true) => {
            match ctx
                .locals(py)
                .and_then(|locals| super::info::with_connection(py, locals))
                .and_then(|locals| pyo3_async_runtimes::into_future_with_locals(&locals, ret))
            {
                Ok(fut) => Step::Wait(Box::pin(fut)),
                Err(e) => Step::Done(Err(report(py, target, e))),
            }
        }
        _ => Step::Done(convert(py, target, &ret)),
    }
}

async fn finish<T>(
    step: Step<T>,
    target: Target,
    convert: fn(Python<'_>, Target, &Bound<'_, PyAny>) -> Result<T, String>,
) -> Result<T, String> {
    match step {
        Step::Done(result) => result,
        Step::Wait(fut) => {
            let result = fut.await;
            Python::attach(|py| match result {
                Ok(value) => convert(py, target, value.bind(py)),
                Err(e) => Err(report(py, target, e)),
            })
        }
    }
}

/// Gives the calling thread (a runtime worker) a Python thread state that
/// lives as long as the thread. Without it every handler call would create
/// and destroy one, which costs more than most handlers.
pub(super) fn keep_thread_state() {
    thread_local! {
        static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    KEPT.with(|kept| {
        if kept.get() {
            return;
        }
        kept.set(true);
        Python::attach(|_| {
            // SAFETY: PyGILState_Ensure is called with the GIL held by this
            // thread (inside attach); its matching release is never made, so
            // the thread state stays registered while the GIL is given back
            // as usual when attach returns.
            unsafe {
                pyo3::ffi::PyGILState_Ensure();
            }
        });
    });
}

async fn handle(
    code: u8,
    func: Arc<Py<PyAny>>,
    ctx: Arc<Ctx>,
    frame: gopro::Frame,
) -> Result<Reply, String> {
    let target = Target::Command(code);
    keep_thread_state();
    let step = Python::attach(|py| match Bound::new(py, Frame::from_core(py, &frame)) {
        Ok(arg) => call(py, target, &ctx, &func, arg.into_any(), to_reply),
        Err(e) => Step::Done(Err(report(py, target, e))),
    });
    finish(step, target, to_reply).await
}

/// A Python handler for one command code.
pub(super) struct PyHandler {
    pub(super) code: u8,
    pub(super) func: Arc<Py<PyAny>>,
    pub(super) ctx: Arc<Ctx>,
}

impl gopro::server::Handler for PyHandler {
    fn call(&self, frame: gopro::Frame) -> gopro::server::BoxFuture<Result<Reply, String>> {
        Box::pin(handle(
            self.code,
            self.func.clone(),
            self.ctx.clone(),
            frame,
        ))
    }

    /// Calls the function straight from the read buffer: a plain function
    /// answers here; a coroutine's result is awaited.
    fn call_inline(&self, command: gopro::Command, body: &[u8]) -> gopro::server::Inline {
        let target = Target::Command(self.code);
        keep_thread_state();
        let step = Python::attach(
            |py| match Bound::new(py, Frame::copied(py, command.0, body)) {
                Ok(arg) => call(py, target, &self.ctx, &self.func, arg.into_any(), to_reply),
                Err(e) => Step::Done(Err(report(py, target, e))),
            },
        );
        match step {
            Step::Done(result) => gopro::server::Inline::Done(result),
            wait => gopro::server::Inline::Wait(Box::pin(finish(wait, target, to_reply))),
        }
    }
}

fn to_verdict(py: Python<'_>, target: Target, ret: &Bound<'_, PyAny>) -> Result<(), String> {
    match ret.is_truthy() {
        Ok(true) => Ok(()),
        Ok(false) => Err("invalid credentials".to_string()),
        Err(e) => Err(report(py, target, e)),
    }
}

pub(super) async fn authenticate(
    func: Arc<Py<PyAny>>,
    ctx: Arc<Ctx>,
    credentials: Bytes,
) -> Result<(), String> {
    let step = Python::attach(|py| {
        let arg = PyBytes::new(py, &credentials).into_any();
        call(py, Target::Login, &ctx, &func, arg, to_verdict)
    });
    finish(step, Target::Login, to_verdict).await
}
