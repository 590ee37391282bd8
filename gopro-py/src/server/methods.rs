//! The Python surface of `Server`: its constructor, registration, the
//! blocking and asyncio ways to serve, and what it reports.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString, PyTuple};

use super::lifecycle::ShutdownOnDrop;
use super::{Phase, Server, State};
use crate::defaults;
use crate::errors::config_err;
use crate::util::{command_code, seconds};

/// `proxy_protocol=`: the trusted proxies' addresses or networks, from any
/// iterable of str (a list, a tuple). Whether each is an address or a
/// network is the core's check. A lone str is refused: iterating it would
/// give its characters, and taking it as one item would let
/// `"10.0.0.0/8,127.0.0.1"` (the command line's form) look accepted until
/// the core refused it.
fn trusted_proxies(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<String>>> {
    let Some(obj) = obj else {
        return Ok(None);
    };
    let type_name = |o: &Bound<'_, PyAny>| {
        o.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    };
    if obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
    {
        return Err(PyTypeError::new_err(format!(
            "proxy_protocol takes a list of addresses or networks, e.g. [{}], not a {}",
            obj.repr()?,
            type_name(obj)
        )));
    }
    let items = obj.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "proxy_protocol takes a list of addresses or networks (str), not {}",
            type_name(obj)
        ))
    })?;
    items
        .enumerate()
        .map(|(i, item)| {
            let item = item?;
            match item.cast::<PyString>() {
                Ok(text) => text.extract::<String>(),
                Err(_) => Err(PyTypeError::new_err(format!(
                    "proxy_protocol[{i}] must be a str such as \"10.0.0.0/8\", not {}",
                    type_name(&item)
                ))),
            }
        })
        .collect::<PyResult<Vec<_>>>()
        .map(Some)
}

/// What a call that needs a started server raises before the start.
fn not_started() -> PyErr {
    PyRuntimeError::new_err("the server is not started: call start() or serve_forever() first")
}

impl Server {
    /// The address the last start bound.
    fn bound_addr(&self, py: Python<'_>) -> PyResult<std::net::SocketAddr> {
        self.lock(py).local_addr.ok_or_else(not_started)
    }
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

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        listen = defaults::LISTEN,
        *,
        reuse_port = defaults::REUSE_PORT,
        read_timeout = defaults::READ_TIMEOUT,
        write_timeout = defaults::WRITE_TIMEOUT,
        max_body = defaults::MAX_BODY,
        max_connections = defaults::MAX_CONNECTIONS,
        grace = defaults::GRACE,
        prelogin_max_body = defaults::PRELOGIN_MAX_BODY,
        max_login_failures = defaults::MAX_LOGIN_FAILURES,
        max_buffered_replies = defaults::MAX_BUFFERED_REPLIES,
        memory_budget = defaults::MEMORY_BUDGET,
        raise_nofile_limit = defaults::RAISE_NOFILE_LIMIT,
        tls = None,
        tls_handshake_timeout = defaults::TLS_HANDSHAKE_TIMEOUT,
        metrics_listen = None,
        metrics_max_scrapers = defaults::METRICS_MAX_SCRAPERS,
        metrics_header_timeout = defaults::METRICS_HEADER_TIMEOUT,
        proxy_protocol = None,
    ),
    // The defaults' values, for `inspect.signature` and the stub; a test
    // checks them against `_DEFAULTS`, made from the same constants.
    text_signature = "(listen='127.0.0.1:8888', *, reuse_port=False, read_timeout=60.0, write_timeout=10.0, \
        max_body=10485760, max_connections=10000, grace=10.0, prelogin_max_body=16384, \
        max_login_failures=3, max_buffered_replies=1048576, memory_budget=268435456, \
        raise_nofile_limit=True, tls=None, tls_handshake_timeout=10.0, metrics_listen=None,
        metrics_max_scrapers=64, metrics_header_timeout=10.0, proxy_protocol=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        listen: &str,
        reuse_port: bool,
        read_timeout: f64,
        write_timeout: f64,
        max_body: usize,
        max_connections: usize,
        grace: f64,
        prelogin_max_body: usize,
        max_login_failures: u32,
        max_buffered_replies: usize,
        memory_budget: usize,
        raise_nofile_limit: bool,
        tls: Option<&Bound<'_, PyAny>>,
        tls_handshake_timeout: f64,
        metrics_listen: Option<&str>,
        metrics_max_scrapers: usize,
        metrics_header_timeout: f64,
        proxy_protocol: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Server> {
        let tls = crate::tls::server_tls(tls)?;
        let trusted = trusted_proxies(proxy_protocol)?;
        let base = gopro::server::Server::builder()
            .listen(listen)
            .reuse_port(reuse_port)
            .read_timeout(seconds("read_timeout", read_timeout)?)
            .write_timeout(seconds("write_timeout", write_timeout)?)
            .max_body(max_body)
            .max_connections(max_connections)
            .grace(seconds("grace", grace)?)
            .prelogin_max_body(prelogin_max_body)
            .max_login_failures(max_login_failures)
            .max_buffered_replies(max_buffered_replies)
            .memory_budget(memory_budget)
            .raise_nofile_limit(raise_nofile_limit)
            .tls_handshake_timeout(seconds("tls_handshake_timeout", tls_handshake_timeout)?)
            .metrics_max_scrapers(metrics_max_scrapers)
            .metrics_header_timeout(seconds("metrics_header_timeout", metrics_header_timeout)?);
        let base = match &tls {
            Some(tls) => base.tls(tls.clone()),
            None => base,
        };
        let base = match metrics_listen {
            Some(addr) => base.metrics_listen(addr),
            None => base,
        };
        let base = match trusted {
            Some(trusted) => base.proxy_protocol(trusted),
            None => base,
        };
        // The core's rules, checked now rather than at start.
        base.validate().map_err(|e| config_err(py, &e))?;
        Ok(Server {
            listen: listen.to_string(),
            base,
            tls,
            state: Mutex::new(State {
                handlers: Vec::new(),
                authenticator: None,
                phase: Phase::Idle,
                local_addr: None,
                metrics_addr: None,
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
        crate::errors::not_on_runtime_thread(py)?;
        self.start_sync(py)
    }

    /// Serves until `shutdown()` (from any thread or a handler) or Ctrl-C,
    /// then stops gracefully. Ctrl-C raises KeyboardInterrupt once the
    /// server has stopped.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        crate::errors::not_on_runtime_thread(py)?;
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
        crate::errors::not_on_runtime_thread(py)?;
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
        Ok(self.bound_addr(py)?.to_string())
    }

    /// The address the metrics are served on, "host:port"
    /// (`http://host:port/metrics`), or None without `metrics_listen`.
    #[getter]
    fn metrics_addr(&self, py: Python<'_>) -> PyResult<Option<String>> {
        self.bound_addr(py)?;
        Ok(self.lock(py).metrics_addr.map(|a| a.to_string()))
    }

    /// The server's counters: connections open and accepted, frames in
    /// and out, bytes held against `memory_budget`, and errors by kind.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Some(handle) = self.lock(py).stats.clone() else {
            return Err(not_started());
        };
        let s = handle.snapshot();
        let e = s.errors;
        let errors = PyDict::new(py);
        // The core's kinds, and the PROXY refusals, which the core counts
        // beside them (`Stats::proxy_refused`).
        for (key, value) in e.labelled().into_iter().chain([("proxy", s.proxy_refused)]) {
            errors.set_item(key, value)?;
        }
        let dict = PyDict::new(py);
        dict.set_item("connections", s.connections)?;
        dict.set_item("connections_accepted", s.connections_accepted)?;
        dict.set_item("tls_handshakes", s.tls_handshakes)?;
        dict.set_item("proxy_headers", s.proxy_headers)?;
        dict.set_item("frames_in", s.frames_in)?;
        dict.set_item("frames_out", s.frames_out)?;
        dict.set_item("bytes_buffered", s.bytes_buffered)?;
        dict.set_item("memory_budget", s.memory_budget)?;
        dict.set_item("errors", errors)?;
        Ok(dict)
    }

    /// Reads the certificate and key files of the server's
    /// `TlsServerConfig` again and uses them for the next handshakes
    /// (connections already open keep theirs). A file that cannot be read
    /// or parsed raises `TlsConfigError` and the certificate in use stays.
    /// Callable whether the server runs or not, from any thread or handler.
    fn reload_tls(&self, py: Python<'_>) -> PyResult<()> {
        let Some(tls) = &self.tls else {
            return Err(PyRuntimeError::new_err(
                "the server has no TLS: give Server(tls=gopro.TlsServerConfig(...))",
            ));
        };
        py.detach(|| tls.reload())
            .map_err(|e| crate::errors::tls_config_err(py, &e))
    }

    /// The port the server listens on.
    #[getter]
    fn port(&self, py: Python<'_>) -> PyResult<u16> {
        Ok(self.bound_addr(py)?.port())
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
        Server::start_then(&slf, |this| async move {
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
        Server::start_then(&slf, |this| async move { Ok(this) })
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
