//! `Client`: the blocking client. A call waits with the GIL released,
//! on the shared runtime, never from one of its threads.

use std::task::Poll;
use std::time::Duration;

use pyo3::prelude::*;

use super::calls::{
    flush_fut, heartbeat_fut, login_fut, recv_fut, recv_many_fut, request_fut, request_many_fut,
    send_fut, send_many_fut, Output,
};
use super::slot::{Sent, Slot};
use super::{
    addresses, connect_fut, credentials_bytes, poll_once, BoxFut, ClientStats, Obj, Options,
};
use crate::defaults;
use crate::errors::{client_err, not_on_runtime_thread};

/// Runs a call from a plain thread, on this thread, with the GIL released
/// while it waits. Signals are checked every so often, so Ctrl-C
/// interrupts the wait: the call is then dropped, which the core client
/// allows at any point (a reply whose caller is gone is discarded).
fn block<T: Output>(py: Python<'_>, mut fut: BoxFut<T>) -> PyResult<Py<PyAny>> {
    not_on_runtime_thread(py)?;
    if let Poll::Ready(result) = poll_once(&mut fut) {
        return result.map_err(|e| client_err(py, e))?.into_py(py);
    }
    let rt = gopro::blocking::runtime();
    loop {
        let done = py.detach(|| {
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(200), &mut fut).await })
        });
        match done {
            Ok(result) => return result.map_err(|e| client_err(py, e))?.into_py(py),
            Err(_) => py.check_signals()?,
        }
    }
}

/// A blocking connection to a GoPro server, safe to share between threads:
/// concurrent requests go out together on the one connection, and each
/// thread gets the reply to its own request. No lock is held while a
/// thread waits, and the GIL is released.
///
/// ```python
/// client = gopro.Client("127.0.0.1:8888")
/// with concurrent.futures.ThreadPoolExecutor(8) as pool:
///     replies = list(pool.map(lambda b: client.request(1, b), bodies))
/// ```
///
/// `addr` may be a list of addresses: the client connects to the first
/// that answers. With `reconnect=True` it connects again after losing the
/// connection (the next address, after a back-off of `reconnect_delay`
/// doubling up to `reconnect_max_delay`), sends `login` first on every
/// connection, and sends again the requests a GOAWAY left unanswered;
/// requests in flight when a connection is lost otherwise raise
/// `ConnectionLost` (they may have been handled) unless their command is
/// in `repeatable`:
///
/// ```python
/// client = gopro.Client(["10.0.0.1:8888", "10.0.0.2:8888"], reconnect=True,
///                       login=b"user:secret")
/// ```
///
/// A call that times out raises `Timeout` (a `TimeoutError`) and leaves the connection
/// to the other callers. At most `max_in_flight` requests and
/// `max_queued_bytes` bytes are in flight; more callers wait.
///
/// `tls`: a `gopro.TlsConfig` (or `True`, the system's roots) to speak TLS;
/// a handshake that fails raises `TlsError` (a `ConnectError`):
///
/// ```python
/// client = gopro.Client("10.0.0.5:8888", tls=gopro.TlsConfig(ca_file="ca.pem"))
/// ```
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Client {
    slot: Slot,
    addr: String,
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (addr = None, timeout = defaults::TIMEOUT, *, connect_timeout = defaults::CONNECT_TIMEOUT, max_body = defaults::MAX_BODY, keep_alive = None, reconnect = false, login = None, max_in_flight = defaults::MAX_IN_FLIGHT, max_queued_bytes = defaults::MAX_QUEUED_BYTES, reconnect_delay = defaults::RECONNECT_DELAY, reconnect_max_delay = defaults::RECONNECT_MAX_DELAY, repeatable = None, tls = None),
        text_signature = "(addr='127.0.0.1:8888', timeout=30.0, *, connect_timeout=10.0, max_body=10485760, keep_alive=None, reconnect=False, login=None, max_in_flight=1024, max_queued_bytes=16777216, reconnect_delay=0.1, reconnect_max_delay=2.0, repeatable=None, tls=None)")]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        py: Python<'py>,
        addr: Option<&Bound<'py, PyAny>>,
        timeout: f64,
        connect_timeout: f64,
        max_body: usize,
        keep_alive: Option<f64>,
        reconnect: bool,
        login: Option<Bound<'py, PyAny>>,
        max_in_flight: usize,
        max_queued_bytes: usize,
        reconnect_delay: f64,
        reconnect_max_delay: f64,
        repeatable: Option<Bound<'py, PyAny>>,
        tls: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Client> {
        let options = Options {
            timeout,
            connect_timeout,
            max_body,
            keep_alive,
            reconnect,
            login,
            max_in_flight,
            max_queued_bytes,
            reconnect_delay,
            reconnect_max_delay,
            repeatable,
            tls: crate::tls::client_tls(py, tls.as_ref())?,
        };
        let addrs = match addr {
            Some(addr) => addresses(addr)?,
            None => vec![defaults::LISTEN.to_string()],
        };
        let label = addrs.join(",");
        let fut = connect_fut(addrs, &options)?;
        not_on_runtime_thread(py)?;
        let rt = gopro::blocking::runtime();
        let client = py
            .detach(|| rt.block_on(fut))
            .map_err(|e| client_err(py, e))?;
        Ok(Client {
            slot: Slot::new(client),
            addr: label,
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

    /// Queues a request without waiting for its reply (pipelining). It is
    /// written with the ones sent after it: on `flush`, when `recv` waits,
    /// before any other call, or every 16 requests or 64 KiB.
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

    /// Closes the connection; calls waiting and later calls raise
    /// `ConnectionClosed`.
    fn close(&self, py: Python<'_>) {
        self.slot.close(py);
    }

    /// The client's counters (requests, replies, reconnects, resent, lost).
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyResult<ClientStats> {
        Ok(self.slot.get(py)?.stats().into())
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
