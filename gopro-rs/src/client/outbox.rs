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
        Permit::hold(&mut gathered.permit, permit);
        // Sequentially consistent, as is the waiting count of the reply
        // stream: a `send` and a `recv` of one handle on two threads each
        // write one and read the other, and at least one sees the other.
        self.pending.store(true, Ordering::SeqCst);
        Ok(gathered.wire.len() >= OUTBOX_BYTES || gathered.requests >= OUTBOX_REQUESTS)
    }

    /// Hands the batch gathered, if there is one, to `post`, under the
    /// outbox's lock: a batch taken is posted before a later one can be,
    /// or the replies, which go to the stream in the wire's order, would
    /// come back out of the order of the `send`s.
    pub(super) fn post<E>(&self, post: impl FnOnce(Batch) -> Result<(), E>) -> Result<(), E> {
        if !self.pending.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut gathered = self.lock();
        self.pending.store(false, Ordering::SeqCst);
        let Some(permit) = gathered.permit.take() else {
            return Ok(());
        };
        let requests = std::mem::take(&mut gathered.requests);
        post((gathered.wire.split().freeze(), requests, permit))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::client::limits::Limits;

    fn push(outbox: &Outbox, limits: &Arc<Limits>, bytes: usize) -> bool {
        let permit = limits.try_acquire(1, bytes).expect("room");
        outbox
            .push(
                |wire| {
                    wire.resize(wire.len() + bytes, 0);
                    Ok(())
                },
                permit,
            )
            .unwrap()
    }

    fn take(outbox: &Outbox) -> Option<Batch> {
        let mut taken = None;
        let post = |batch| {
            taken = Some(batch);
            Ok::<_, ()>(())
        };
        outbox.post(post).unwrap();
        taken
    }

    /// A batch goes at its 16th request, or at 64 KiB, not one before; it
    /// holds the room of all its requests until it is dropped.
    #[test]
    fn a_batch_goes_at_its_limits() {
        let limits = Limits::new(64, 1 << 20);
        let outbox = Outbox::default();
        assert!(take(&outbox).is_none(), "nothing gathered");
        for _ in 1..OUTBOX_REQUESTS {
            assert!(!push(&outbox, &limits, 8));
        }
        assert!(push(&outbox, &limits, 8), "the 16th request");
        let (wire, requests, permit) = take(&outbox).unwrap();
        assert_eq!(
            (wire.len(), requests),
            (8 * OUTBOX_REQUESTS, OUTBOX_REQUESTS)
        );
        assert!(limits.try_acquire(64 - OUTBOX_REQUESTS + 1, 8).is_none());
        drop(permit);
        assert!(limits.try_acquire(64, 8).is_some(), "all the room back");
        assert!(take(&outbox).is_none(), "taken once");

        assert!(!push(&outbox, &limits, OUTBOX_BYTES - 1));
        assert!(push(&outbox, &limits, 1), "at 64 KiB");
        assert_eq!(take(&outbox).unwrap().0.len(), OUTBOX_BYTES);
    }
}
