//! `Server`: the core's tokio server with Python handlers.
//!
//! Plain-function handlers are called on the server's worker threads, with
//! the GIL taken for the call. `async def` handlers (anything returning an
//! awaitable) run on an asyncio loop: the serving loop when the server is
//! served from asyncio (`async with server`, `await server.serve()`), else a
//! loop thread the server starts when the first coroutine needs it and
//! stops after its last connection has finished.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gopro::server::{Reply, ServerBuilder, ServerError, ShutdownHandle, StatsHandle};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::{MutexExt, PyOnceLock};
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyModule, PyString, PyTuple};
use pyo3_async_runtimes::TaskLocals;
use tokio::sync::watch;

use crate::codec::Frame;
use crate::util::{command_code, seconds, with_body};

/// Starts and stops the loop thread for coroutine handlers of a server
/// served without asyncio.
const LOOP_THREAD: &str = r#"
import asyncio
import threading

def start():
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run():
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            try:
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    thread = threading.Thread(target=run, name="gopro-handlers", daemon=True)
    thread.start()
    ready.wait()
    return loop, thread

def stop(loop, thread):
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
"#;

fn loop_thread(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            PyModule::from_code(
                py,
                &std::ffi::CString::new(LOOP_THREAD).expect("no NUL in the loop-thread code"),
                c"gopro/_loop_thread.py",
                c"gopro._loop_thread",
            )
            .map(Bound::unbind)
        })
        .map(|m| m.bind(py))
}

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
struct Ctx {
    loop_state: Mutex<LoopState>,
    owns_loop: AtomicBool,
}

impl Ctx {
    fn new(serving: Option<TaskLocals>) -> Arc<Ctx> {
        Arc::new(Ctx {
            loop_state: Mutex::new(serving.map_or(LoopState::Lazy, LoopState::Serving)),
            owns_loop: AtomicBool::new(false),
        })
    }

    fn locals(&self, py: Python<'_>) -> PyResult<TaskLocals> {
        let mut state = self
            .loop_state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        match &*state {
            LoopState::Serving(locals) | LoopState::Owned { locals, .. } => Ok(locals.clone()),
            LoopState::Stopped => Err(PyRuntimeError::new_err("the server has stopped")),
            LoopState::Lazy => {
                let started = loop_thread(py)?.getattr("start")?.call0()?;
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
    fn stop(&self) {
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
                let stop = loop_thread(py).and_then(|m| m.getattr("stop"));
                if let Err(e) = stop.and_then(|stop| stop.call1((locals.event_loop(py), thread))) {
                    e.print(py);
                }
            }
        });
    }
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
fn keep_thread_state() {
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
struct PyHandler {
    code: u8,
    func: Arc<Py<PyAny>>,
    ctx: Arc<Ctx>,
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

async fn authenticate(
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

struct Running {
    handle: ShutdownHandle,
    done: watch::Receiver<bool>,
}

/// A server bound on its own thread.
struct Started {
    local_addr: SocketAddr,
    handle: ShutdownHandle,
    stats: StatsHandle,
    done: watch::Receiver<bool>,
}

/// Binds and serves on a thread of its own, with a current-thread runtime:
/// every handler call then takes the GIL from the same thread, where
/// runtime workers would pass it back and forth between them on every
/// frame. The receiver gets the bound server or why it could not bind.
fn spawn_server(
    builder: ServerBuilder,
    ctx: Arc<Ctx>,
) -> tokio::sync::oneshot::Receiver<Result<Started, ServerError>> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("gopro-server".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = tx.send(Err(ServerError::Runtime(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                let server = match builder.bind().await {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let (stopped, done) = watch::channel(false);
                let _ = tx.send(Ok(Started {
                    local_addr: server.local_addr(),
                    handle: server.shutdown_handle(),
                    stats: server.stats(),
                    done,
                }));
                server.run().await;
                // The loop thread outlives the last handler: run() has
                // waited for every connection.
                ctx.stop();
                let _ = stopped.send(true);
            });
        });
    // If the thread could not start, the sender went with the closure and
    // the caller sees the thread end before binding.
    drop(thread);
    rx
}

enum Phase {
    Idle,
    /// Binding; a shutdown asked for meanwhile is applied right after.
    Starting {
        shutdown: bool,
    },
    Running(Running),
}

struct State {
    handlers: Vec<(u8, Arc<Py<PyAny>>)>,
    authenticator: Option<Arc<Py<PyAny>>>,
    phase: Phase,
    local_addr: Option<SocketAddr>,
    /// The counters of the last server started; readable after it stops.
    stats: Option<StatsHandle>,
}

/// A GoPro server with handlers written in Python.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Server {
    /// The address asked for, as given.
    listen: String,
    /// The settings; each start clones it and adds the Python handlers.
    base: ServerBuilder,
    state: Mutex<State>,
}

/// Registers a handler for one command; returned by `Server.handler(code)`.
#[pyclass(frozen, module = "gopro._gopro")]
struct HandlerDecorator {
    server: Py<Server>,
    code: u8,
}

#[pymethods]
impl HandlerDecorator {
    fn __call__(&self, py: Python<'_>, func: Py<PyAny>) -> PyResult<Py<PyAny>> {
        self.server
            .get()
            .register(py, self.code, func.clone_ref(py))?;
        Ok(func)
    }
}

impl Server {
    fn lock<'a>(&'a self, py: Python<'_>) -> std::sync::MutexGuard<'a, State> {
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, py: Python<'_>, code: u8, func: Py<PyAny>) -> PyResult<()> {
        if !func.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a handler must be callable",
            ));
        }
        let command = gopro::Command(code);
        if command == gopro::Command::LOGIN {
            return Err(PyValueError::new_err(
                "LOGIN goes to the authenticator: use @server.authenticator",
            ));
        }
        if !(command.is_application()
            || command == gopro::Command::HEARTBEAT
            || command == gopro::Command::MESSAGE)
        {
            return Err(PyValueError::new_err(format!(
                "cannot register a handler for command {command}: use 16-255, HEARTBEAT or MESSAGE"
            )));
        }
        let mut state = self.lock(py);
        if !matches!(state.phase, Phase::Idle) {
            return Err(PyRuntimeError::new_err(
                "register handlers before the server starts",
            ));
        }
        state.handlers.retain(|(c, _)| *c != code);
        state.handlers.push((code, Arc::new(func)));
        Ok(())
    }

    /// Takes the Starting phase and returns a builder with the handlers.
    fn prepare(&self, py: Python<'_>, ctx: &Arc<Ctx>) -> PyResult<ServerBuilder> {
        let mut state = self.lock(py);
        match state.phase {
            Phase::Idle => {}
            Phase::Running(ref r) if *r.done.borrow() => {}
            _ => return Err(PyRuntimeError::new_err("the server is already running")),
        }
        state.phase = Phase::Starting { shutdown: false };
        // The GIL is taken once per batch of frames, not once per handler
        // call (the calls inside take it again for free).
        let mut builder = self.base.clone().batch_scope(|batch| {
            keep_thread_state();
            Python::attach(|_| batch());
        });
        for (code, func) in &state.handlers {
            builder = builder.handler(
                *code,
                PyHandler {
                    code: *code,
                    func: func.clone(),
                    ctx: ctx.clone(),
                },
            );
        }
        if let Some(func) = &state.authenticator {
            let (func, ctx) = (func.clone(), ctx.clone());
            builder = builder.authenticator(move |credentials: Bytes| {
                authenticate(func.clone(), ctx.clone(), credentials)
            });
        }
        Ok(builder)
    }

    /// Records a server started by [`spawn_server`].
    fn launch(&self, started: Started) {
        let Started {
            local_addr,
            handle,
            stats,
            done,
        } = started;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let shutdown = matches!(state.phase, Phase::Starting { shutdown: true });
        if shutdown {
            handle.shutdown();
        }
        state.local_addr = Some(local_addr);
        state.stats = Some(stats);
        state.phase = Phase::Running(Running { handle, done });
    }

    fn failed_start(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.phase = Phase::Idle;
    }

    fn start_sync(&self, py: Python<'_>) -> PyResult<()> {
        let ctx = Ctx::new(None);
        let builder = self.prepare(py, &ctx)?;
        let started = spawn_server(builder, ctx);
        match py.detach(|| started.blocking_recv()) {
            Ok(Ok(started)) => {
                self.launch(started);
                Ok(())
            }
            Ok(Err(e)) => {
                self.failed_start();
                Err(server_err(e))
            }
            Err(_) => {
                self.failed_start();
                Err(PyRuntimeError::new_err("the server thread could not start"))
            }
        }
    }

    fn done(&self, py: Python<'_>) -> Option<watch::Receiver<bool>> {
        match &self.lock(py).phase {
            Phase::Running(r) => Some(r.done.clone()),
            _ => None,
        }
    }

    /// Waits for the server to stop, with the GIL released, checking for
    /// signals (Ctrl-C) every so often.
    fn wait_sync(py: Python<'_>, mut done: watch::Receiver<bool>) -> PyResult<()> {
        let rt = gopro::blocking::runtime();
        loop {
            let stopped = py.detach(|| {
                rt.block_on(async {
                    tokio::time::timeout(Duration::from_millis(100), done.wait_for(|d| *d))
                        .await
                        .is_ok()
                })
            });
            if stopped {
                return Ok(());
            }
            py.check_signals()?;
        }
    }
}

fn server_err(e: gopro::server::ServerError) -> PyErr {
    match e {
        gopro::server::ServerError::Bind { addr, source } => {
            pyo3::exceptions::PyOSError::new_err(format!("cannot listen on {addr}: {source}"))
        }
        other => PyValueError::new_err(other.to_string()),
    }
}

fn in_runtime_err() -> PyErr {
    PyRuntimeError::new_err(
        "this call blocks: it cannot be made on a gopro server thread (a handler); use server.shutdown()",
    )
}

/// Stops the server if the awaiting task is cancelled before it has stopped.
struct ShutdownOnDrop(Option<ShutdownHandle>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.shutdown();
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        listen = "127.0.0.1:8888",
        *,
        read_timeout = 60.0,
        write_timeout = 10.0,
        max_body = gopro::DEFAULT_MAX_BODY,
        max_connections = 10_000,
        grace = 10.0,
        prelogin_max_body = 16 * 1024,
        max_login_failures = 3,
        max_buffered_replies = gopro::server::DEFAULT_MAX_BUFFERED_REPLIES,
        memory_budget = gopro::server::DEFAULT_MEMORY_BUDGET,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        listen: &str,
        read_timeout: f64,
        write_timeout: f64,
        max_body: usize,
        max_connections: usize,
        grace: f64,
        prelogin_max_body: usize,
        max_login_failures: u32,
        max_buffered_replies: usize,
        memory_budget: usize,
    ) -> PyResult<Server> {
        if max_connections == 0 {
            return Err(PyValueError::new_err("max_connections must be at least 1"));
        }
        if memory_budget < max_body.saturating_add(gopro::HEADER_LEN) {
            return Err(PyValueError::new_err(format!(
                "memory_budget ({memory_budget}) must be at least max_body + 8 ({}), or a frame of max_body could never be received",
                max_body.saturating_add(gopro::HEADER_LEN)
            )));
        }
        let grace = if grace == 0.0 {
            Duration::ZERO
        } else {
            seconds("grace", grace)?
        };
        let base = gopro::server::Server::builder()
            .listen(listen)
            .read_timeout(seconds("read_timeout", read_timeout)?)
            .write_timeout(seconds("write_timeout", write_timeout)?)
            .max_body(max_body)
            .max_connections(max_connections)
            .grace(grace)
            .prelogin_max_body(prelogin_max_body)
            .max_login_failures(max_login_failures)
            .max_buffered_replies(max_buffered_replies)
            .memory_budget(memory_budget);
        Ok(Server {
            listen: listen.to_string(),
            base,
            state: Mutex::new(State {
                handlers: Vec::new(),
                authenticator: None,
                phase: Phase::Idle,
                local_addr: None,
                stats: None,
            }),
        })
    }

    /// Registers `func` for frames with command `code`:
    /// `@server.handler(16)` or `server.handler(16, func)`.
    #[pyo3(signature = (code, func = None))]
    fn handler(
        slf: Bound<'_, Self>,
        code: &Bound<'_, PyAny>,
        func: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let code = command_code(code)?;
        match func {
            Some(func) => {
                slf.get().register(py, code, func.clone_ref(py))?;
                Ok(func)
            }
            None => Ok(Py::new(
                py,
                HandlerDecorator {
                    server: slf.unbind(),
                    code,
                },
            )?
            .into_any()),
        }
    }

    /// Registers the LOGIN check: `func(credentials: bytes)` returns true to
    /// accept. Usable as a decorator.
    fn authenticator(&self, py: Python<'_>, func: Py<PyAny>) -> PyResult<Py<PyAny>> {
        if !func.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "an authenticator must be callable",
            ));
        }
        let mut state = self.lock(py);
        if !matches!(state.phase, Phase::Idle) {
            return Err(PyRuntimeError::new_err(
                "set the authenticator before the server starts",
            ));
        }
        state.authenticator = Some(Arc::new(func.clone_ref(py)));
        Ok(func)
    }

    /// Binds and serves in the background; returns at once.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(in_runtime_err());
        }
        self.start_sync(py)
    }

    /// Serves until `shutdown()` (from any thread or a handler) or Ctrl-C,
    /// then stops gracefully. Ctrl-C raises KeyboardInterrupt once the
    /// server has stopped.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(in_runtime_err());
        }
        let done = match self.done(py) {
            Some(done) if !*done.borrow() => done,
            _ => {
                self.start_sync(py)?;
                self.done(py).expect("just started")
            }
        };
        if let Err(interrupted) = Server::wait_sync(py, done.clone()) {
            self.shutdown(py);
            // A second Ctrl-C while finishing stops waiting.
            Server::wait_sync(py, done)?;
            return Err(interrupted);
        }
        Ok(())
    }

    /// Stops gracefully (SPEC §6): stops accepting, finishes the frames in
    /// hand, sends GOAWAY and closes. Returns at once; callable from any
    /// thread and from a handler.
    fn shutdown(&self, py: Python<'_>) {
        let mut state = self.lock(py);
        match &mut state.phase {
            Phase::Running(r) => r.handle.shutdown(),
            Phase::Starting { shutdown } => *shutdown = true,
            Phase::Idle => {}
        }
    }

    /// Waits until the server has stopped; False if `timeout` seconds passed first.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(in_runtime_err());
        }
        let Some(mut done) = self.done(py) else {
            return Ok(true);
        };
        match timeout {
            None => Server::wait_sync(py, done).map(|()| true),
            Some(t) => {
                let limit = Duration::try_from_secs_f64(t.max(0.0))
                    .map_err(|e| PyValueError::new_err(e.to_string()))?;
                let rt = gopro::blocking::runtime();
                Ok(py.detach(|| {
                    rt.block_on(async {
                        tokio::time::timeout(limit, done.wait_for(|d| *d))
                            .await
                            .is_ok()
                    })
                }))
            }
        }
    }

    /// Whether the server is serving.
    #[getter]
    fn running(&self, py: Python<'_>) -> bool {
        match &self.lock(py).phase {
            Phase::Running(r) => !*r.done.borrow(),
            Phase::Starting { .. } => true,
            Phase::Idle => false,
        }
    }

    /// The address the server listens on, "host:port" (the port chosen
    /// when listening on port 0).
    #[getter]
    fn local_addr(&self, py: Python<'_>) -> PyResult<String> {
        self.lock(py)
            .local_addr
            .map(|a| a.to_string())
            .ok_or_else(|| {
                PyRuntimeError::new_err(
                    "the server is not started: call start() or serve_forever() first",
                )
            })
    }

    /// The server's counters: connections open and accepted, frames in
    /// and out, bytes held against `memory_budget`, and errors by kind.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Some(handle) = self.lock(py).stats.clone() else {
            return Err(PyRuntimeError::new_err(
                "the server is not started: call start() or serve_forever() first",
            ));
        };
        let s = handle.snapshot();
        let e = s.errors;
        let errors = PyDict::new(py);
        for (key, value) in [
            ("busy", e.busy),
            ("protocol", e.protocol),
            ("read_timeout", e.read_timeout),
            ("write_timeout", e.write_timeout),
            ("handler", e.handler),
            ("login", e.login),
            ("io", e.io),
        ] {
            errors.set_item(key, value)?;
        }
        let dict = PyDict::new(py);
        dict.set_item("connections", s.connections)?;
        dict.set_item("connections_accepted", s.connections_accepted)?;
        dict.set_item("frames_in", s.frames_in)?;
        dict.set_item("frames_out", s.frames_out)?;
        dict.set_item("bytes_buffered", s.bytes_buffered)?;
        dict.set_item("memory_budget", s.memory_budget)?;
        dict.set_item("errors", errors)?;
        Ok(dict)
    }

    /// The port the server listens on.
    #[getter]
    fn port(&self, py: Python<'_>) -> PyResult<u16> {
        self.lock(py).local_addr.map(|a| a.port()).ok_or_else(|| {
            PyRuntimeError::new_err(
                "the server is not started: call start() or serve_forever() first",
            )
        })
    }

    /// The address asked for.
    #[getter]
    fn listen(&self) -> &str {
        &self.listen
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.shutdown(py);
        if let Some(done) = self.done(py) {
            Server::wait_sync(py, done)?;
        }
        Ok(false)
    }

    /// Serves from the running asyncio loop until `shutdown()`; coroutine
    /// handlers run on that loop. Cancelling the awaiting task shuts the
    /// server down.
    fn serve<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.clone().unbind();
        let pending = Server::start_async(&slf)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            if let Some(bind) = pending {
                bind.await?;
            }
            let (done, handle) = match &this
                .get()
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .phase
            {
                Phase::Running(r) => (r.done.clone(), r.handle.clone()),
                _ => return Ok(()),
            };
            let mut guard = ShutdownOnDrop(Some(handle));
            let mut done = done;
            let _ = done.wait_for(|d| *d).await;
            guard.0 = None;
            Ok(())
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.clone().unbind();
        let pending = Server::start_async(&slf)?;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            if let Some(bind) = pending {
                bind.await?;
            }
            Ok(this)
        })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        slf: Bound<'py, Self>,
        _exc: &Bound<'py, PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        slf.get().shutdown(py);
        let done = slf.get().done(py);
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            if let Some(mut done) = done {
                let _ = done.wait_for(|d| *d).await;
            }
            Ok(false)
        })
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = self.lock(py);
        match (&state.phase, state.local_addr) {
            (Phase::Running(r), Some(addr)) if !*r.done.borrow() => {
                format!("<gopro.Server listening on {addr}>")
            }
            _ => format!("<gopro.Server {} (not running)>", self.listen),
        }
    }
}

type BindFut = Pin<Box<dyn Future<Output = PyResult<()>> + Send>>;

impl Server {
    /// Starts serving from the running loop: None if already running, else
    /// the future that binds and launches.
    fn start_async(slf: &Bound<'_, Self>) -> PyResult<Option<BindFut>> {
        let py = slf.py();
        let this = slf.get();
        if let Some(done) = this.done(py) {
            if !*done.borrow() {
                return Ok(None);
            }
        }
        let locals = TaskLocals::with_running_loop(py)?.copy_context(py)?;
        let ctx = Ctx::new(Some(locals));
        let builder = this.prepare(py, &ctx)?;
        let server: Py<Server> = slf.clone().unbind();
        Ok(Some(Box::pin(async move {
            match spawn_server(builder, ctx).await {
                Ok(Ok(started)) => {
                    server.get().launch(started);
                    Ok(())
                }
                Err(_) => {
                    server.get().failed_start();
                    Err(PyRuntimeError::new_err("the server thread could not start"))
                }
                Ok(Err(e)) => {
                    server.get().failed_start();
                    Err(server_err(e))
                }
            }
        })))
    }
}
