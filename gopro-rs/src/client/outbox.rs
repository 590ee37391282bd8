//! A handle's `send`s, gathered and handed to the connection task together:
//! on `flush`, before `recv` or a full client waits, before any other call
//! of the handle hands over a message (so the wire keeps the order of the
//! calls), when the handle is dropped, or once [`OUTBOX_REQUESTS`] or
//! [`OUTBOX_BYTES`] are gathered; while a `recv` of the handle waits (another task's), a `send`
//! goes at once. One hand-over per batch instead of one per request: each
//! hand-over may wake the connection task's thread, which costs more than
//! encoding the request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use super::limits::Permit;
use super::ClientError;

/// Gathered bytes past which a batch goes without waiting for a flush.
pub(super) const OUTBOX_BYTES: usize = 64 * 1024;
/// Gathered requests past which a batch goes: the connection task writes
/// the first ones while the caller goes on sending.
pub(super) const OUTBOX_REQUESTS: usize = 16;

#[derive(Debug, Default)]
pub(super) struct Outbox {
    gathered: Mutex<Gathered>,
    /// Whether anything is gathered: read without the lock by every call
    /// that hands over a message.
    pending: AtomicBool,
}

#[derive(Debug, Default)]
struct Gathered {
    wire: BytesMut,
    requests: usize,
    /// The room the gathered requests hold in the client.
    permit: Option<Permit>,
}

/// A batch taken from the outbox: its bytes, its requests and their room.
pub(super) type Batch = (Bytes, usize, Permit);

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Gathered> {
        self.gathered.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one request, which `encode` appends (writing nothing on error),
    /// with its room. True once the batch should go.
    pub(super) fn push(
        &self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), ClientError>,
        permit: Permit,
    ) -> Result<bool, ClientError> {
        let mut gathered = self.lock();
        encode(&mut gathered.wire)?;
        gathered.requests += 1;
        match &mut gathered.permit {
            Some(held) => held.merge(permit),
            None => gathered.permit = Some(permit),
        }
        // Sequentially consistent, as is the waiting count of the reply
        // stream: a `send` and a `recv` of one handle on two threads each
        // write one and read the other, and at least one sees the other.
        self.pending.store(true, Ordering::SeqCst);
        Ok(gathered.wire.len() >= OUTBOX_BYTES || gathered.requests >= OUTBOX_REQUESTS)
    }

    /// The batch gathered, if there is one.
    pub(super) fn take(&self) -> Option<Batch> {
        if !self.pending.load(Ordering::SeqCst) {
            return None;
        }
        let mut gathered = self.lock();
        self.pending.store(false, Ordering::SeqCst);
        let permit = gathered.permit.take()?;
        let requests = std::mem::take(&mut gathered.requests);
        Some((gathered.wire.split().freeze(), requests, permit))
    }
}
