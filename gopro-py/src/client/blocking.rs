//! `Client`: the blocking client. A call waits with the GIL released,
//! on the shared runtime, never from one of its threads.

use std::task::Poll;
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::calls::{
    flush_fut, heartbeat_fut, login_fut, recv_fut, recv_many_fut, request_fut, request_many_fut,
    send_fut, send_many_fut, Output,
};
use super::slot::{Sent, Slot};
use super::{builder, credentials_bytes, poll_once, BoxFut, CoreClient, Obj};
use crate::defaults;
use crate::errors::{client_err, not_on_runtime_thread};

/// Runs a call to its end from a plain thread, with the GIL released while
/// it waits. Signals are checked every so often, so Ctrl-C interrupts the
/// wait (the call itself still finishes in the background).
fn block<T: Output>(py: Python<'_>, mut fut: BoxFut<T>) -> PyResult<Py<PyAny>> {
    not_on_runtime_thread(py)?;
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

/// A blocking connection to a GoPro server.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Client {
    slot: Slot,
    addr: String,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (addr = defaults::LISTEN, timeout = defaults::TIMEOUT, *, connect_timeout = defaults::CONNECT_TIMEOUT, max_body = defaults::MAX_BODY, keep_alive = None),
        text_signature = "(addr='127.0.0.1:8888', timeout=30.0, *, connect_timeout=10.0, max_body=10485760, keep_alive=None)")]
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
        not_on_runtime_thread(py)?;
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
    fn request(&self, command: &Obj<'_>, body: Option<&Obj<'_>>) -> PyResult<Py<PyAny>> {
        let py = command.py();
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
    fn send(&self, command: &Obj<'_>, body: Option<&Obj<'_>>) -> PyResult<Py<PyAny>> {
        let py = command.py();
        match self
            .slot
            .try_send(command, body, || not_on_runtime_thread(py))?
        {
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
        not_on_runtime_thread(py)?;
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
