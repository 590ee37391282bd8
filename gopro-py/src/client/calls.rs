//! The core client's calls as futures, bound to a connection, and what
//! each returns to Python.

use std::sync::Arc;

use bytes::Bytes;
use gopro::client::ClientError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use super::{BoxFut, CoreClient};
use crate::codec::Frame;
use crate::errors::client_err;

/// What a call returns to Python.
pub(super) trait Output: Send + 'static {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>>;
}

impl Output for () {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py.None())
    }
}

impl Output for gopro::Frame {
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(Frame::new_untracked(py, &self)?.into_any())
    }
}

/// A call, already bound to a client.
pub(super) fn request_fut(
    client: Arc<CoreClient>,
    command: u8,
    body: Bytes,
) -> BoxFut<gopro::Frame> {
    Box::pin(async move { client.request(command, body).await })
}

pub(super) fn send_fut(client: Arc<CoreClient>, command: u8, body: Bytes) -> BoxFut<()> {
    Box::pin(async move { client.send(command, body).await })
}

pub(super) fn heartbeat_fut(client: Arc<CoreClient>) -> BoxFut<()> {
    Box::pin(async move { client.heartbeat().await })
}

pub(super) fn login_fut(client: Arc<CoreClient>, credentials: Bytes) -> BoxFut<()> {
    Box::pin(async move { client.login(credentials).await })
}

pub(super) fn flush_fut(client: Arc<CoreClient>) -> BoxFut<()> {
    Box::pin(async move { client.flush().await })
}

pub(super) fn recv_fut(client: Arc<CoreClient>) -> BoxFut<gopro::Frame> {
    Box::pin(async move { client.recv().await })
}

pub(super) fn send_many_fut(client: Arc<CoreClient>, wire: Bytes) -> BoxFut<()> {
    Box::pin(async move { client.send_encoded(&wire).await.map(drop) })
}

pub(super) fn recv_many_fut(client: Arc<CoreClient>, n: usize) -> BoxFut<Replies> {
    Box::pin(async move {
        let mut frames = Vec::new();
        let error = client.recv_many(n, &mut frames).await.err();
        Ok(Replies(frames, error))
    })
}

pub(super) fn request_many_fut(client: Arc<CoreClient>, wire: Bytes) -> BoxFut<Replies> {
    Box::pin(async move {
        let mut frames = Vec::new();
        let error = client.request_encoded(wire, &mut frames).await.err();
        Ok(Replies(frames, error))
    })
}

/// The replies of a batch, and the error that cut it short.
pub(super) struct Replies(Vec<gopro::Frame>, Option<ClientError>);

impl Output for Replies {
    /// A list; or the error, carrying the replies before it as `.replies`.
    fn into_py(self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let list = PyList::new(py, Frame::many_untracked(py, &self.0)?)?;
        match self.1 {
            None => Ok(list.into_any().unbind()),
            Some(e) => {
                let err = client_err(py, e);
                err.value(py).setattr("replies", list)?;
                Err(err)
            }
        }
    }
}
