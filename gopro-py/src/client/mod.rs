//! `Client` (blocking) and `AsyncClient` (asyncio), both over the core's
//! tokio client.
//!
//! A `send` that only queues bytes, or a `recv` whose reply is already
//! buffered, is done on the calling thread through the core's `try_send` /
//! `try_recv`, without a future. Any other core call is first polled once on
//! the calling thread, and finishes there if it can. A call that has to wait
//! is moved, as it is, into a task on the shared runtime (an asyncio call's
//! future is then resolved on its loop's thread, see `wakeup`). That task runs to its end even if
//! the Python caller stops waiting (KeyboardInterrupt, asyncio
//! cancellation): the core client pairs replies with requests by order, so
//! a request abandoned half way would hand its reply to the next caller.
//!
//! The files: `calls` (the core calls as futures, and what they return to
//! Python), `slot` (the open connection and the checks of a request's
//! arguments), `awaitable` (what an asyncio call returns), `blocking`
//! (`Client`) and `asyncio` (`AsyncClient`).

mod asyncio;
mod awaitable;
mod blocking;
mod calls;
mod slot;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use gopro::client::{ClientBuilder, ClientError};
use pyo3::prelude::*;

use crate::util::{body_bytes, seconds};

pub(crate) use asyncio::AsyncClient;
pub(crate) use blocking::Client;

type CoreClient = gopro::client::Client;
type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, ClientError>> + Send>>;
/// A Python argument: short, so that the methods' signatures stay on a line.
type Obj<'py> = Bound<'py, PyAny>;

/// Polls `fut` once on this thread, inside the runtime's context.
fn poll_once<T>(fut: &mut BoxFut<T>) -> Poll<Result<T, ClientError>> {
    let _guard = gopro::blocking::runtime().enter();
    fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

/// Settings shared by both clients' constructors.
fn builder(
    timeout: f64,
    connect_timeout: f64,
    max_body: usize,
    keep_alive: Option<f64>,
) -> PyResult<ClientBuilder> {
    let mut builder = CoreClient::builder()
        .timeout(seconds("timeout", timeout)?)
        .connect_timeout(seconds("connect_timeout", connect_timeout)?)
        .max_body(max_body);
    if let Some(interval) = keep_alive {
        builder = builder.keep_alive(seconds("keep_alive", interval)?);
    }
    Ok(builder)
}

/// Credentials: bytes-like, or text sent as UTF-8.
fn credentials_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(text) = obj.cast::<pyo3::types::PyString>() {
        return Ok(Bytes::copy_from_slice(text.to_cow()?.as_bytes()));
    }
    body_bytes(obj)
}
