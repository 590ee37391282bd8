//! Starting and stopping a `Server`: its settings and handlers put into the
//! core's builder, the bind on the server's own thread, the phases in
//! between, and waiting for the end (blocking, or from asyncio).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gopro::server::{ServerBuilder, ServerError, ShutdownHandle, StatsHandle};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3_async_runtimes::TaskLocals;
use tokio::sync::oneshot::error::RecvError;
use tokio::sync::watch;

use super::handlers::{authenticate, keep_thread_state, PyHandler};
use super::loop_thread::Ctx;
use super::{Phase, Running, Server, State};

/// A server bound on its own thread.
struct Started {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
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
                    metrics_addr: server.metrics_addr(),
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

impl Server {
    pub(super) fn lock<'a>(&'a self, py: Python<'_>) -> std::sync::MutexGuard<'a, State> {
        self.state
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn register(&self, py: Python<'_>, code: u8, func: Py<PyAny>) -> PyResult<()> {
        if !func.bind(py).is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "a handler must be callable",
            ));
        }
        gopro::settings::check_handler_command(gopro::Command(code))
            .map_err(|e| crate::errors::config_err(py, &e))?;
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
            metrics_addr,
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
        state.metrics_addr = metrics_addr;
        state.stats = Some(stats);
        state.phase = Phase::Running(Running { handle, done });
    }

    fn failed_start(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.phase = Phase::Idle;
    }

    pub(super) fn start_sync(&self, py: Python<'_>) -> PyResult<()> {
        let ctx = Ctx::new(None);
        let builder = self.prepare(py, &ctx)?;
        let started = spawn_server(builder, ctx);
        self.settle(py.detach(|| started.blocking_recv()))
    }

    /// Records how a start by [`spawn_server`] came out: running, or back
    /// to idle with the reason.
    fn settle(&self, outcome: Result<Result<Started, ServerError>, RecvError>) -> PyResult<()> {
        match outcome {
            Ok(Ok(started)) => {
                self.launch(started);
                Ok(())
            }
            Ok(Err(e)) => {
                self.failed_start();
                Err(Python::attach(|py| crate::errors::server_err(py, e)))
            }
            Err(_) => {
                self.failed_start();
                Err(PyRuntimeError::new_err("the server thread could not start"))
            }
        }
    }

    pub(super) fn done(&self, py: Python<'_>) -> Option<watch::Receiver<bool>> {
        match &self.lock(py).phase {
            Phase::Running(r) => Some(r.done.clone()),
            _ => None,
        }
    }

    /// Waits for the server to stop, with the GIL released, checking for
    /// signals (Ctrl-C) every so often.
    pub(super) fn wait_sync(py: Python<'_>, mut done: watch::Receiver<bool>) -> PyResult<()> {
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

/// Stops the server if the awaiting task is cancelled before it has stopped.
pub(super) struct ShutdownOnDrop(pub(super) Option<ShutdownHandle>);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.shutdown();
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
            server.get().settle(spawn_server(builder, ctx).await)
        })))
    }

    /// The awaitable of `serve()` and `__aenter__`: starts serving from the
    /// running loop unless the server is running already, then awaits
    /// `then(server)`.
    pub(super) fn start_then<'py, T, F>(
        slf: &Bound<'py, Self>,
        then: impl FnOnce(Py<Server>) -> F + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: Future<Output = PyResult<T>> + Send + 'static,
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let pending = Server::start_async(slf)?;
        let this = slf.clone().unbind();
        pyo3_async_runtimes::tokio::future_into_py(slf.py(), async move {
            if let Some(bind) = pending {
                bind.await?;
            }
            then(this).await
        })
    }
}
