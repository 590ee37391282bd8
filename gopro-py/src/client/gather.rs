//! The requests an asyncio loop's callers make in one iteration of the
//! loop, gathered and handed to the connection task together by a callback
//! the loop runs once (`loop.call_soon`): one message to the task instead
//! of one per request, so one wake-up of its thread and one write for all,
//! and the server's replies to them come back in one read and one wake-up
//! of the loop (see `wakeup`).

use std::sync::{Arc, Mutex};

use gopro::client::{Callback, Gathered};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;

use super::CoreClient;

/// A client's requests not yet handed over.
#[derive(Default)]
pub(super) struct Gatherer(Mutex<Pending>);

#[derive(Default)]
struct Pending {
    gathered: Gathered,
    /// The loop that will hand the gathered requests over: set while any
    /// are gathered.
    scheduled_on: Option<Py<PyAny>>,
}

impl Gatherer {
    /// Makes sure that what is gathered is handed over once `event_loop`
    /// (the running loop) gets to the callbacks queued now; requests
    /// gathered for another loop go at once.
    pub(super) fn schedule(
        self: &Arc<Self>,
        client: &Arc<CoreClient>,
        event_loop: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = event_loop.py();
        let unscheduled = {
            let mut pending = self.lock(py);
            if let Some(other) = &pending.scheduled_on {
                if !other.bind(py).is(event_loop) {
                    client.submit_gathered(&mut pending.gathered);
                    pending.scheduled_on = None;
                }
            }
            pending.scheduled_on.is_none()
        };
        if unscheduled {
            // Outside the lock (`call_soon` is Python code), and before
            // anything is gathered: a hand-over that finds nothing does
            // nothing.
            let hand_over = HandOver {
                gatherer: Arc::clone(self),
                client: Arc::clone(client),
            };
            event_loop.call_method1(pyo3::intern!(py, "call_soon"), (hand_over,))?;
            self.lock(py)
                .scheduled_on
                .get_or_insert_with(|| event_loop.clone().unbind());
        }
        Ok(())
    }

    /// Gathers a request (see `gopro::client::Client::try_gather`), after
    /// [`schedule`](Self::schedule). `Ok(Some(done))` when the client is
    /// full. Runs no Python code.
    pub(super) fn push(
        &self,
        py: Python<'_>,
        client: &CoreClient,
        command: u8,
        body: &[u8],
        done: Callback,
    ) -> Result<Option<Callback>, gopro::client::ClientError> {
        client.try_gather(&mut self.lock(py).gathered, command, body, done)
    }

    /// The lock, held only while no Python code runs; the GIL is given back
    /// while waiting for it, as its holder may be waiting for the GIL.
    fn lock(&self, py: Python<'_>) -> std::sync::MutexGuard<'_, Pending> {
        self.0
            .lock_py_attached(py)
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Hands every gathered request to the connection task.
    pub(super) fn hand_over(&self, py: Python<'_>, client: &CoreClient) {
        let mut pending = self.lock(py);
        client.submit_gathered(&mut pending.gathered);
        // The loop's reference goes after the lock.
        let scheduled_on = pending.scheduled_on.take();
        drop(pending);
        drop(scheduled_on);
    }
}

/// What the loop calls to hand a client's gathered requests over.
#[pyclass(frozen, module = "gopro._gopro")]
pub(super) struct HandOver {
    gatherer: Arc<Gatherer>,
    client: Arc<CoreClient>,
}

#[pymethods]
impl HandOver {
    fn __call__(&self, py: Python<'_>) {
        self.gatherer.hand_over(py, &self.client);
    }
}
