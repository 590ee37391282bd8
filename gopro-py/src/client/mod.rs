//! `Client` (blocking) over the core's tokio client, and `AsyncClient`
//! (asyncio) driven on the event loop itself over the core's sans-IO
//! pipeline. Both are shared by any number of callers: no call holds the
//! connection while it waits, and a call dropped half way (Ctrl-C, asyncio
//! cancellation, `wait_for`) leaves it as it is, its reply discarded.
//!
//! A blocking `send` that only queues bytes, or a `recv` whose reply is
//! already there, is done on the calling thread (`try_send` / `try_recv`).
//! Any other blocking call is polled once on the calling thread, then
//! waited for on its own thread with the GIL released.
//!
//! The files: `calls` (the core calls as futures, and what they return to
//! Python), `slot` (the open connection and the checks of a request's
//! arguments), `awaitable` (what an asyncio call returns), `blocking`
//! (`Client`) and `on_loop` (`AsyncClient`).

mod awaitable;
mod blocking;
mod calls;
mod on_loop;
mod slot;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use gopro::client::{ClientBuilder, ClientError};
use pyo3::prelude::*;

use crate::util::{body_bytes, seconds};

pub(crate) use blocking::Client;
pub(crate) use on_loop::AsyncClient;

type CoreClient = gopro::client::Client;
type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send>>;
/// A Python argument: short, so that the methods' signatures stay on a line.
type Obj<'py> = Bound<'py, PyAny>;

/// Polls `fut` once on this thread, inside the runtime's context.
fn poll_once<T>(fut: &mut BoxFut<T>) -> Poll<Result<T, ClientError>> {
    let _guard = gopro::blocking::runtime().enter();
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// The settings both clients' constructors take, as Python gave them.
pub(super) struct Options<'py> {
    pub(super) timeout: f64,
    pub(super) connect_timeout: f64,
    pub(super) max_body: usize,
    pub(super) keep_alive: Option<f64>,
    pub(super) reconnect: bool,
    pub(super) login: Option<Bound<'py, PyAny>>,
    pub(super) max_in_flight: usize,
    pub(super) max_queued_bytes: usize,
    pub(super) reconnect_delay: f64,
    pub(super) reconnect_max_delay: f64,
    pub(super) repeatable: Option<Bound<'py, PyAny>>,
    /// Made from the `tls` argument when the call was made, so that a bad
    /// argument raises there.
    pub(super) tls: Option<gopro::tls::ClientTls>,
}

impl Options<'_> {
    /// The core builder; its rules are checked by `connect` (and raise
    /// `ConfigError` there).
    fn builder(&self) -> PyResult<ClientBuilder> {
        let mut builder = CoreClient::builder()
            .timeout(seconds("timeout", self.timeout)?)
            .connect_timeout(seconds("connect_timeout", self.connect_timeout)?)
            .max_body(self.max_body)
            .max_in_flight(self.max_in_flight)
            .max_queued_bytes(self.max_queued_bytes)
            .reconnect(self.reconnect)
            .reconnect_delay(seconds("reconnect_delay", self.reconnect_delay)?)
            .reconnect_max_delay(seconds("reconnect_max_delay", self.reconnect_max_delay)?);
        if let Some(interval) = self.keep_alive {
            builder = builder.keep_alive(seconds("keep_alive", interval)?);
        }
        if let Some(login) = &self.login {
            builder = builder.login(credentials_bytes(login)?);
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls(tls.clone());
        }
        if let Some(commands) = &self.repeatable {
            for command in commands.try_iter()? {
                builder = builder.repeatable(crate::util::command_code(&command?)?);
            }
        }
        Ok(builder)
    }
}

/// One address (`"host:port"`) or a list of them, tried in turn.
fn addresses(addr: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if let Ok(one) = addr.cast::<pyo3::types::PyString>() {
        return Ok(vec![one.to_cow()?.into_owned()]);
    }
    let list: Vec<String> = addr.extract().map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(
            "addr must be a str (\"host:port\") or a list of them",
        )
    })?;
    Ok(list)
}

/// Connects with `options` to the first of `addrs` that answers.
fn connect_fut(addrs: Vec<String>, options: &Options<'_>) -> PyResult<BoxFut<CoreClient>> {
    let builder = options.builder()?;
    Ok(Box::pin(async move { builder.connect_any(&addrs).await }))
}

/// A client's counters, as `Client.stats` and `AsyncClient.stats` give them.
#[pyclass(frozen, get_all, module = "gopro._gopro")]
pub(crate) struct ClientStats {
    /// Requests queued.
    requests: u64,
    /// Replies received (ERROR replies included).
    replies: u64,
    /// Connections made again after one was lost.
    reconnects: u64,
    /// Requests written again on a new connection.
    resent: u64,
    /// Requests that failed with `ConnectionLost`: they may have been handled.
    lost: u64,
}

#[pymethods]
impl ClientStats {
    fn __repr__(&self) -> String {
        format!(
            "ClientStats(requests={}, replies={}, reconnects={}, resent={}, lost={})",
            self.requests, self.replies, self.reconnects, self.resent, self.lost
        )
    }
}

impl From<gopro::client::ClientStats> for ClientStats {
    fn from(s: gopro::client::ClientStats) -> Self {
        ClientStats {
            requests: s.requests,
            replies: s.replies,
            reconnects: s.reconnects,
            resent: s.resent,
            lost: s.lost,
        }
    }
}

/// Credentials: bytes-like, or text sent as UTF-8.
fn credentials_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(text) = obj.cast::<pyo3::types::PyString>() {
        return Ok(Bytes::copy_from_slice(text.to_cow()?.as_bytes()));
    }
    body_bytes(obj)
}
