//! `gopro.current_connection()`: the core's `ConnectionInfo` of the
//! connection whose frame (or LOGIN) a handler is answering.
//!
//! The core keeps it in a task-local of the connection's task. A plain
//! function handler runs on that task, so the call reads it there. A
//! coroutine runs on an asyncio loop, another thread: the handler's task
//! is given a copy of the loop's context in which a `ContextVar` holds the
//! connection, so that the coroutine, and the tasks and threads
//! (`asyncio.to_thread`) it starts with that context, see it too.

use std::sync::Arc;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3_async_runtimes::TaskLocals;

use crate::util::quoted;

type CoreInfo = gopro::server::ConnectionInfo;

/// The `ContextVar` coroutine handlers read the connection from.
fn connection_var(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    VAR.get_or_try_init(py, || {
        Ok::<_, PyErr>(
            py.import("contextvars")?
                .getattr("ContextVar")?
                .call1(("gopro.connection",))?
                .unbind(),
        )
    })
    .map(|v| v.bind(py))
}

/// The task locals a coroutine handler is scheduled with: `locals` with,
/// when it is called for a connection, a copy of its context in which the
/// connection is set.
pub(super) fn with_connection(py: Python<'_>, locals: TaskLocals) -> PyResult<TaskLocals> {
    let Some(info) = CoreInfo::current() else {
        return Ok(locals);
    };
    let context = locals.context(py).call_method0("copy")?;
    let set = connection_var(py)?.getattr("set")?;
    context.call_method1("run", (set, ConnectionInfo(info)))?;
    Ok(TaskLocals::new(locals.event_loop(py)).with_context(context))
}

/// The connection being served by the handler or authenticator that calls
/// this: in a plain function, during the call; in a coroutine, while it
/// runs and in the tasks it starts (its context is copied). Raises
/// `RuntimeError` anywhere else (outside a handler, in a thread the
/// handler started without its context).
#[pyfunction]
pub(crate) fn current_connection(py: Python<'_>) -> PyResult<Py<PyAny>> {
    if let Some(info) = CoreInfo::current() {
        return Ok(Py::new(py, ConnectionInfo(info))?.into_any());
    }
    let value = connection_var(py)?.call_method1("get", (py.None(),))?;
    if value.is_none() {
        return Err(PyRuntimeError::new_err(
            "no connection: current_connection() answers inside a server's handler or \
             authenticator",
        ));
    }
    Ok(value.unbind())
}

/// A connection as its handlers see it: the peer's address and, over TLS,
/// the protocol version, the server name the client asked for and the
/// identity in its certificate (verified against the server's client CA).
/// Immutable: it may be kept after the handler returns.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct ConnectionInfo(Arc<CoreInfo>);

impl ConnectionInfo {
    fn client(&self) -> Option<&gopro::tls::PeerIdentity> {
        self.0.tls.as_ref().and_then(|t| t.client.as_ref())
    }

    fn strings<'py, T: ToString>(
        &self,
        py: Python<'py>,
        get: impl Fn(&gopro::tls::PeerIdentity) -> &[T],
    ) -> PyResult<Bound<'py, PyTuple>> {
        let items: Vec<String> = self
            .client()
            .map(|c| get(c).iter().map(T::to_string).collect())
            .unwrap_or_default();
        PyTuple::new(py, items)
    }
}

#[pymethods]
impl ConnectionInfo {
    /// The peer's address, "host:port": behind a balancer speaking the
    /// PROXY protocol (`Server(proxy_protocol=...)`), the client its header
    /// names.
    #[getter]
    fn peer(&self) -> String {
        self.0.peer.to_string()
    }

    /// The server's address for this connection, "host:port" (behind a
    /// balancer, the one the client connected to, from the header).
    #[getter]
    fn local(&self) -> Option<String> {
        self.0.local.map(|a| a.to_string())
    }

    /// Whether the connection is over TLS.
    #[getter]
    fn tls(&self) -> bool {
        self.0.tls.is_some()
    }

    /// "TLSv1.3" or "TLSv1.2" (as `ssl.SSLSocket.version()`), None in
    /// plaintext.
    #[getter]
    fn tls_version(&self) -> Option<&'static str> {
        self.0.tls.as_ref().map(|t| t.version)
    }

    /// The server name the client asked for (SNI), if it sent one.
    #[getter]
    fn server_name(&self) -> Option<&str> {
        self.0.tls.as_ref().and_then(|t| t.server_name.as_deref())
    }

    /// The client certificate's subject, e.g. "CN=device-42, O=Acme";
    /// None if the client showed no certificate.
    #[getter]
    fn client_subject(&self) -> Option<&str> {
        self.client().map(|c| c.subject.as_str())
    }

    /// The client certificate's common name (CN), if it has one.
    #[getter]
    fn client_common_name(&self) -> Option<&str> {
        self.client().and_then(|c| c.common_name.as_deref())
    }

    /// The DNS names of the client certificate's alternative names.
    #[getter]
    fn client_dns_names<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.strings(py, |c| &c.dns_names)
    }

    /// The IP addresses of the client certificate's alternative names.
    #[getter]
    fn client_ip_addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.strings(py, |c| &c.ip_addresses)
    }

    /// The URIs of the client certificate's alternative names (SPIFFE IDs).
    #[getter]
    fn client_uris<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.strings(py, |c| &c.uris)
    }

    /// The e-mail addresses of the client certificate's alternative names.
    #[getter]
    fn client_emails<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.strings(py, |c| &c.emails)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let mut text = format!("ConnectionInfo(peer={}", quoted(py, &self.peer()));
        if let Some(tls) = &self.0.tls {
            text += &format!(", tls_version={}", quoted(py, tls.version));
            if let Some(name) = &tls.server_name {
                text += &format!(", server_name={}", quoted(py, name));
            }
            if let Some(client) = &tls.client {
                text += &format!(", client_subject={}", quoted(py, &client.subject));
            }
        }
        text + ")"
    }
}
