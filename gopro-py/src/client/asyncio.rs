//! `AsyncClient`: the asyncio client. Each call returns an awaitable
//! (see `awaitable`).

use std::sync::Arc;

use bytes::Bytes;
use gopro::client::Callback;
use pyo3::prelude::*;

use super::awaitable::{awaitable, in_running_loop, ready, running_loop, Ready};
use super::calls::{
    flush_fut, heartbeat_fut, login_fut, recv_fut, recv_many_fut, request_fut, request_many_fut,
    send_fut, send_many_fut, Output,
};
use super::gather::Gatherer;
use super::slot::{Sent, Slot};
use super::{
    addresses, connect_fut, credentials_bytes, BoxFut, ClientStats, CoreClient, Obj, Options,
};
use crate::defaults;
use crate::errors::client_err;
use crate::util::{body_bytes, with_body};
use crate::wakeup;

/// A new connection.
struct Connected(CoreClient);

impl Output for Connected {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Py::new(
            py,
            AsyncClient {
                slot: Slot::new(self.0),
                gatherer: Arc::default(),
            },
        )?
        .into_any())
    }
}

/// An asyncio connection to a GoPro server: `await AsyncClient.connect(addr)`,
/// safe to share between tasks: concurrent requests go out together on the
/// one connection, and each task gets the reply to its own request.
///
/// ```python
/// client = await gopro.AsyncClient.connect("127.0.0.1:8888")
/// replies = await asyncio.gather(*(client.request(1, b) for b in bodies))
/// ```
///
/// Cancelling a request (`task.cancel()`, `asyncio.wait_for`) never hands
/// its reply to another caller: the reply is discarded when it comes.
/// `addr` may be a list of addresses, and `reconnect=True` connects again
/// after the connection is lost, and `tls` speaks TLS, as for `Client`:
///
/// ```python
/// client = await gopro.AsyncClient.connect(
///     ["10.0.0.1:8888", "10.0.0.2:8888"], reconnect=True, login=b"user:secret")
/// ```
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct AsyncClient {
    slot: Slot,
    /// `request`s not yet handed to the connection's task (see `gather`).
    gatherer: Arc<Gatherer>,
}

impl AsyncClient {
    /// Hands the gathered `request`s to the connection's task now: any
    /// other call goes after them, as it was made after them.
    fn hand_over(&self, py: Python<'_>) {
        if let Ok(client) = self.slot.get(py) {
            self.gatherer.hand_over(py, &client);
        }
    }
}

#[pymethods]
impl AsyncClient {
    /// Connects; returns an awaitable of the client.
    #[staticmethod]
    #[pyo3(signature = (addr = None, timeout = defaults::TIMEOUT, *, connect_timeout = defaults::CONNECT_TIMEOUT, max_body = defaults::MAX_BODY, keep_alive = None, reconnect = false, login = None, max_in_flight = defaults::MAX_IN_FLIGHT, max_queued_bytes = defaults::MAX_QUEUED_BYTES, reconnect_delay = defaults::RECONNECT_DELAY, reconnect_max_delay = defaults::RECONNECT_MAX_DELAY, repeatable = None, tls = None),
        text_signature = "(addr='127.0.0.1:8888', timeout=30.0, *, connect_timeout=10.0, max_body=10485760, keep_alive=None, reconnect=False, login=None, max_in_flight=1024, max_queued_bytes=16777216, reconnect_delay=0.1, reconnect_max_delay=2.0, repeatable=None, tls=None)")]
    #[allow(clippy::too_many_arguments)]
    fn connect<'py>(
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
    ) -> PyResult<Bound<'py, PyAny>> {
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
        let connect = connect_fut(addrs, &options)?;
        let fut: BoxFut<Connected> = Box::pin(async move { Ok(Connected(connect.await?)) });
        awaitable(py, fut)
    }

    /// Sends one request; awaits its reply.
    #[pyo3(signature = (command, body = None))]
    fn request<'py>(&self, command: &Obj<'py>, body: Option<&Obj<'py>>) -> PyResult<Obj<'py>> {
        let py = command.py();
        let command = self.slot.check(command, body)?;
        let client = self.slot.get(py)?;
        let event_loop = running_loop(py)?;
        // The request waits in the gatherer for the loop's next turn, and
        // goes to the connection's task with the others made meanwhile;
        // its reply comes to a callback on that task, which resolves the
        // loop's future through the loop's waker: no task of its own, and
        // one wake-up for all the replies of one read.
        self.gatherer.schedule(&client, &event_loop)?;
        let (future, mut done) = wakeup::future(&event_loop)?;
        let callback: Callback = Box::new(move |result| {
            done.send(Box::new(move |py: Python<'_>| {
                result.map_err(|e| client_err(py, e))?.into_py(py)
            }))
        });
        let push = |body: &[u8]| self.gatherer.push(py, &client, command, body, callback);
        let pushed = match body {
            Some(body) => with_body(body, push)?,
            None => push(b""),
        };
        match pushed {
            Ok(None) => Ok(future),
            Ok(Some(_full)) => {
                // The client is full: this call waits for room, after the
                // requests gathered (whose replies make room). The future
                // made for it is cancelled, so that nothing warns of it.
                future.call_method0(pyo3::intern!(py, "cancel"))?;
                self.gatherer.hand_over(py, &client);
                let body = body.map_or(Ok(Bytes::new()), body_bytes)?;
                awaitable(py, request_fut(client, command, body))
            }
            Err(e) => {
                // Raised when awaited, as from a call that waited.
                future.call_method0(pyo3::intern!(py, "cancel"))?;
                ready(py, Err(client_err(py, e)))
            }
        }
    }

    /// A HEARTBEAT round trip.
    fn heartbeat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.hand_over(py);
        awaitable(py, heartbeat_fut(self.slot.get(py)?))
    }

    /// Logs in; raises `ServerError` if the server refuses.
    fn login<'py>(
        &self,
        py: Python<'py>,
        credentials: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let credentials = credentials_bytes(credentials)?;
        self.hand_over(py);
        awaitable(py, login_fut(self.slot.get(py)?, credentials))
    }

    /// Queues a request without waiting for its reply (pipelining).
    #[pyo3(signature = (command, body = None))]
    fn send<'py>(&self, command: &Obj<'py>, body: Option<&Obj<'py>>) -> PyResult<Obj<'py>> {
        let py = command.py();
        self.hand_over(py);
        match self.slot.try_send(command, body, || in_running_loop(py))? {
            // Raised when awaited, as from a call that waited.
            Sent::Done(result) => ready(py, result.map(|()| py.None())),
            Sent::Wait(client, command, body) => awaitable(py, send_fut(client, command, body)),
        }
    }

    /// Writes every queued request.
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.hand_over(py);
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
        self.hand_over(py);
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
        self.hand_over(py);
        awaitable(py, request_many_fut(self.slot.get(py)?, requests))
    }

    /// Closes the connection at once; the result may be awaited.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.hand_over(py);
        self.slot.close(py);
        Ok(Bound::new(py, Ready::new(Ok(py.None())))?.into_any())
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.slot.is_closed(py)
    }

    /// The client's counters (requests, replies, reconnects, resent, lost).
    #[getter]
    fn stats(&self, py: Python<'_>) -> PyResult<ClientStats> {
        Ok(self.slot.get(py)?.stats().into())
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
        self.hand_over(py);
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
