//! The open connection of a client, shared by its calls in progress, and
//! the checks of a request's arguments (the body against the core's limit).

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::PyTuple;

use super::CoreClient;
use crate::codec::Frame;
use crate::errors::{client_err, closed_err};
use crate::util::{body_bytes, command_code, with_body};

/// What [`Slot::try_send`] came to.
pub(super) enum Sent {
    /// The send's own outcome.
    Done(PyResult<()>),
    /// It has to wait: the connection, the command and a copy of the body.
    Wait(Arc<CoreClient>, u8, Bytes),
}

/// The open connection, shared by the calls in progress; `close` drops it.
pub(super) struct Slot(Mutex<Option<Arc<CoreClient>>>, gopro::Encoder);

impl Slot {
    pub(super) fn new(client: CoreClient) -> Slot {
        let encoder = gopro::Encoder::with_max_body(client.max_body());
        Slot(Mutex::new(Some(Arc::new(client))), encoder)
    }

    /// The command and body of a request, the body checked against the limit.
    pub(super) fn args(
        &self,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(u8, Bytes)> {
        let py = command.py();
        let command = command_code(command)?;
        let body = match body {
            Some(body) => body_bytes(body)?,
            None => Bytes::new(),
        };
        gopro::client::check_body(self.1.max_body(), body.len()).map_err(|e| client_err(py, e))?;
        Ok((command, body))
    }

    /// The command of a request, the body's length checked against the
    /// limit (the body is not copied).
    pub(super) fn check(
        &self,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<u8> {
        let py = command.py();
        let command = command_code(command)?;
        let len = body.map_or(Ok(0), |body| with_body(body, <[u8]>::len))?;
        gopro::client::check_body(self.1.max_body(), len).map_err(|e| client_err(py, e))?;
        Ok(command)
    }

    /// A `send` done at once if the connection allows (see
    /// `gopro::client::Client::try_send`): no future, and the body is not
    /// copied but into the write buffer. The arguments and the client's
    /// being open are checked first, then `ready_to_send`, as for any call;
    /// their errors are raised at once.
    pub(super) fn try_send(
        &self,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        ready_to_send: impl FnOnce() -> PyResult<()>,
    ) -> PyResult<Sent> {
        let py = command.py();
        let command = self.check(command, body)?;
        let client = self.get(py)?;
        ready_to_send()?;
        // No Python code runs and the GIL is kept while the body is read.
        let attempt = |body: &[u8]| match client.try_send(command, body) {
            Some(result) => Sent::Done(result.map_err(|e| client_err(py, e))),
            None => Sent::Wait(client.clone(), command, Bytes::copy_from_slice(body)),
        };
        match body {
            Some(body) => with_body(body, attempt),
            None => Ok(attempt(b"")),
        }
    }

    /// The requests of a batch call, encoded (see [`encode_batch`]).
    pub(super) fn batch(&self, items: &Bound<'_, PyAny>) -> PyResult<Bytes> {
        encode_batch(&self.1, items).map(|(wire, _)| wire)
    }

    pub(super) fn get(&self, py: Python<'_>) -> PyResult<Arc<CoreClient>> {
        let guard = self
            .0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner());
        guard.clone().ok_or_else(|| closed_err(py))
    }

    pub(super) fn close(&self, py: Python<'_>) {
        let client = self
            .0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Calls still waiting on other threads or tasks fail now.
        if let Some(client) = &client {
            client.close();
        }
        // Dropping the connection closes the socket; no GIL needed for it.
        py.detach(move || drop(client));
    }

    pub(super) fn is_closed(&self, py: Python<'_>) -> bool {
        self.0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
    }
}

/// The requests of a batch call (`Frame`s or `(command, body)` pairs),
/// encoded back to back: one buffer for the batch, not one per body; and
/// how many there are.
pub(super) fn encode_batch(
    encoder: &gopro::Encoder,
    items: &Bound<'_, PyAny>,
) -> PyResult<(Bytes, usize)> {
    let py = items.py();
    // Room for the headers at least; bodies grow it.
    let mut wire = BytesMut::with_capacity(items.len().unwrap_or(0) * gopro::HEADER_LEN);
    let mut n = 0;
    let mut push = |command: u8, body: &[u8]| -> PyResult<()> {
        n += 1;
        gopro::client::encode_request(encoder, gopro::Command(command), body, &mut wire)
            .map_err(|e| client_err(py, e))
    };
    for item in items.try_iter()? {
        let item = item?;
        // A plain tuple is not asked whether it is a `Frame`: that check
        // walks the type's bases, and pairs are the common case.
        if !item.is_exact_instance_of::<PyTuple>() {
            if let Ok(frame) = item.cast::<Frame>() {
                let (command, body) = frame.get().parts(py);
                push(command, body)?;
                continue;
            }
        }
        let pair = item.cast::<PyTuple>().ok().filter(|t| t.len() == 2);
        let Some(pair) = pair else {
            return Err(PyTypeError::new_err(format!(
                "a batch holds gopro.Frame objects or (command, body) pairs, not {}",
                item.get_type().name()?
            )));
        };
        let command = command_code(&pair.get_item(0)?)?;
        with_body(&pair.get_item(1)?, |body| push(command, body))??;
    }
    Ok((wire.freeze(), n))
}
