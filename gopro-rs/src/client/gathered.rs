//! Requests with a callback each, gathered by a binding and handed to the
//! connection task together: one message, and so at most one wake-up of
//! the task's thread and one write, for every request a caller's event loop
//! made in one turn (Python's `AsyncClient` gathers what one iteration of
//! the asyncio loop asks and hands it over once, with `loop.call_soon`).

use std::collections::VecDeque;

use bytes::BytesMut;

use super::limits::Permit;
use super::reply::{Reply, To};
use super::{check_body, encode_request, Callback, Client, ClientError, Msg};
use crate::{Command, Encoder, HEADER_LEN};

/// Requests gathered by [`Client::try_gather`], not yet handed over by
/// [`Client::submit_gathered`]. Dropped with requests in it, it gives each
/// callback [`ClientError::Closed`]: nobody waits for ever.
#[derive(Default)]
pub struct Gathered {
    wire: BytesMut,
    callbacks: VecDeque<Callback>,
    /// The room the gathered requests hold in the client.
    permit: Option<Permit>,
}

impl std::fmt::Debug for Gathered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gathered")
            .field("requests", &self.callbacks.len())
            .field("bytes", &self.wire.len())
            .finish()
    }
}

impl Gathered {
    /// Requests gathered.
    pub fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// Whether nothing is gathered.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }
}

impl Drop for Gathered {
    fn drop(&mut self) {
        let unanswered = self.callbacks.len();
        for done in self.callbacks.drain(..) {
            done(Err(ClientError::Closed { unanswered }));
        }
    }
}

impl Client {
    /// [`try_submit`](Self::try_submit), except that the request is added
    /// to `gathered` instead of being handed to the connection task: it is
    /// sent by the next [`submit_gathered`](Self::submit_gathered) of
    /// `gathered`. Its room in the client is taken now: `Ok(Some(done))`
    /// gives the callback back when the client is full (nothing gathered),
    /// and an error says why the request cannot go (nothing gathered).
    pub fn try_gather(
        &self,
        gathered: &mut Gathered,
        command: impl Into<Command>,
        body: &[u8],
        done: Callback,
    ) -> Result<Option<Callback>, ClientError> {
        check_body(self.shared.max_body, body.len())?;
        self.check_open()?;
        let Some(permit) = self.shared.limits.try_acquire(1, HEADER_LEN + body.len()) else {
            return Ok(Some(done));
        };
        let encoder = Encoder::with_max_body(self.shared.max_body);
        encode_request(&encoder, command.into(), body, &mut gathered.wire)?;
        gathered.callbacks.push_back(done);
        Permit::hold(&mut gathered.permit, permit);
        Ok(None)
    }

    /// Hands every request of `gathered` to the connection task in one
    /// message, which leaves it empty. Each request is timed out by the
    /// task, as with [`try_submit`](Self::try_submit), from this hand-over.
    /// If the connection has ended, every callback is given why, now.
    pub fn submit_gathered(&self, gathered: &mut Gathered) {
        let Some(permit) = gathered.permit.take() else {
            return;
        };
        let wire = gathered.wire.split().freeze();
        let callbacks = std::mem::take(&mut gathered.callbacks);
        if self.check_open().is_err() {
            for done in callbacks {
                done(Err(self.ended_error()));
            }
            return;
        }
        let requests = callbacks.len();
        let reply = Reply::new(To::Callbacks(callbacks), requests, permit);
        // A message refused (the connection ended meanwhile) gives its
        // callbacks `Closed` as it is dropped (see `Reply::disarm`).
        let _ = self.post(Msg::Encoded { wire, reply });
    }
}
