//! `AsyncClient`: the asyncio client. Each call returns an awaitable
//! (see `awaitable`).

use pyo3::prelude::*;

use super::awaitable::{awaitable, in_running_loop, ready, Ready};
use super::calls::{
    flush_fut, heartbeat_fut, login_fut, recv_fut, recv_many_fut, request_fut, request_many_fut,
    send_fut, send_many_fut, Output,
};
use super::slot::{Sent, Slot};
use super::{builder, credentials_bytes, BoxFut, CoreClient, Obj};
use crate::defaults;
use crate::errors::client_err;

/// A new connection and its body limit.
struct Connected(CoreClient, usize);

impl Output for Connected {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(
            py,
            AsyncClient {
                slot: Slot::new(self.0, self.1),
            },
        )?
        .into_any())
    }
}

/// An asyncio connection to a GoPro server: `await AsyncClient.connect(addr)`.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct AsyncClient {
    slot: Slot,
}

#[pymethods]
impl AsyncClient {
    /// Connects; returns an awaitable of the client.
    #[staticmethod]
    #[pyo3(signature = (addr = defaults::LISTEN, timeout = defaults::TIMEOUT, *, connect_timeout = defaults::CONNECT_TIMEOUT, max_body = defaults::MAX_BODY, keep_alive = None),
        text_signature = "(addr='127.0.0.1:8888', timeout=30.0, *, connect_timeout=10.0, max_body=10485760, keep_alive=None)")]
    fn connect<'py>(
        py: Python<'py>,
        addr: &str,
        timeout: f64,
        connect_timeout: f64,
        max_body: usize,
        keep_alive: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let builder = builder(timeout, connect_timeout, max_body, keep_alive)?;
        let addr = addr.to_string();
        let fut: BoxFut<Connected> =
            Box::pin(async move { Ok(Connected(builder.connect(&addr).await?, max_body)) });
        awaitable(py, fut)
    }

    /// Sends one request; awaits its reply.
    #[pyo3(signature = (command, body = None))]
    fn request<'py>(&self, command: &Obj<'py>, body: Option<&Obj<'py>>) -> PyResult<Obj<'py>> {
        let py = command.py();
        let (command, body) = self.slot.args(command, body)?;
        awaitable(py, request_fut(self.slot.get(py)?, command, body))
    }

    /// A HEARTBEAT round trip.
    fn heartbeat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, heartbeat_fut(self.slot.get(py)?))
    }

    /// Logs in; raises `ServerError` if the server refuses.
    fn login<'py>(
        &self,
        py: Python<'py>,
        credentials: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let credentials = credentials_bytes(credentials)?;
        awaitable(py, login_fut(self.slot.get(py)?, credentials))
    }

    /// Queues a request without waiting for its reply (pipelining).
    #[pyo3(signature = (command, body = None))]
    fn send<'py>(&self, command: &Obj<'py>, body: Option<&Obj<'py>>) -> PyResult<Obj<'py>> {
        let py = command.py();
        match self.slot.try_send(command, body, || in_running_loop(py))? {
            // Raised when awaited, as from a call that waited.
            Sent::Done(result) => ready(py, result.map(|()| py.None())),
            Sent::Wait(client, command, body) => awaitable(py, send_fut(client, command, body)),
        }
    }

    /// Writes every queued request.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, flush_fut(self.slot.get(py)?))
    }

    /// The reply to the oldest request not yet answered.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.slot.get(py)?;
        in_running_loop(py)?;
        if let Some(result) = client.try_recv() {
            let result = result.map_err(|e| client_err(py, e));
            return ready(py, result.and_then(|frame| frame.into_py(py)));
        }
        awaitable(py, recv_fut(client))
    }

    /// Sends many requests (`Frame`s or `(command, body)` pairs) and
    /// writes them out, in one call.
    fn send_many<'py>(&self, requests: &Obj<'py>) -> PyResult<Obj<'py>> {
        let py = requests.py();
        let requests = self.slot.batch(requests)?;
        awaitable(py, send_many_fut(self.slot.get(py)?, requests))
    }

    /// The replies to the `n` oldest requests not yet answered, in order.
    /// An error reply (or a failure) raises, with the replies before it in
    /// the exception's `replies`.
    fn recv_many<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyAny>> {
        awaitable(py, recv_many_fut(self.slot.get(py)?, n))
    }

    /// `send_many` then `recv_many` for as many replies, in one call.
    fn request_many<'py>(&self, requests: &Obj<'py>) -> PyResult<Obj<'py>> {
        let py = requests.py();
        let requests = self.slot.batch(requests)?;
        awaitable(py, request_many_fut(self.slot.get(py)?, requests))
    }

    /// Closes the connection at once; the result may be awaited.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.slot.close(py);
        Ok(Bound::new(py, Ready::new(Ok(py.None())))?.into_any())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.slot.is_closed(py)
    }

    fn __aenter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, PyAny>> {
        let py = slf.py();
        Ok(Bound::new(py, Ready::new(Ok(slf.into_any().unbind())))?.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.slot.close(py);
        Ok(Bound::new(
            py,
            Ready::new(Ok(false.into_pyobject(py)?.to_owned().into_any().unbind())),
        )?
        .into_any())
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.slot.is_closed(py) {
            " closed"
        } else {
            ""
        };
        format!("<gopro.AsyncClient{state}>")
    }
}
