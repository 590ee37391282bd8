//! The bounds on what one client holds: requests in flight and their bytes.
//! A caller takes a [`Permit`] before its request is queued and waits (or,
//! through [`Limits::try_acquire`], gives up) while the client is full; the
//! permit goes back when the reply is handed over or the request fails.

use std::sync::Arc;

use tokio::sync::Semaphore;

#[derive(Debug)]
pub(super) struct Limits {
    slots: Semaphore,
    bytes: Semaphore,
    max_in_flight: u32,
    max_bytes: u32,
}

/// Room for requests in flight; given back when dropped.
#[derive(Debug)]
pub(super) struct Permit {
    limits: Arc<Limits>,
    slots: u32,
    bytes: u32,
}

impl Permit {
    /// Holds `other`'s room too, until this one is dropped.
    pub(super) fn merge(&mut self, mut other: Permit) {
        self.slots += std::mem::take(&mut other.slots);
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limits.slots.add_permits(self.slots as usize);
        self.limits.bytes.add_permits(self.bytes as usize);
    }
}

impl Limits {
    pub(super) fn new(max_in_flight: usize, max_bytes: usize) -> Arc<Limits> {
        let max_in_flight = u32::try_from(max_in_flight).unwrap_or(u32::MAX).max(1);
        let max_bytes = u32::try_from(max_bytes).unwrap_or(u32::MAX).max(1);
        Arc::new(Limits {
            slots: Semaphore::new(max_in_flight as usize),
            bytes: Semaphore::new(max_bytes as usize),
            max_in_flight,
            max_bytes,
        })
    }

    /// What `requests` requests of `bytes` bytes in all take: never more than
    /// the whole client, so that a batch larger than the bounds still goes,
    /// alone.
    fn cost(&self, requests: usize, bytes: usize) -> (u32, u32) {
        let slots = u32::try_from(requests)
            .unwrap_or(u32::MAX)
            .min(self.max_in_flight);
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.max_bytes);
        (slots, bytes)
    }

    /// Waits for room for `requests` requests of `bytes` bytes in all.
    /// Cancel-safe: dropped half way, it holds nothing.
    pub(super) async fn acquire(self: &Arc<Self>, requests: usize, bytes: usize) -> Permit {
        let (slots, bytes) = self.cost(requests, bytes);
        let mut permit = Permit {
            limits: Arc::clone(self),
            slots: 0,
            bytes: 0,
        };
        // The semaphores are never closed.
        if let Ok(p) = self.slots.acquire_many(slots).await {
            p.forget();
            permit.slots = slots;
        }
        if let Ok(p) = self.bytes.acquire_many(bytes).await {
            p.forget();
            permit.bytes = bytes;
        }
        permit
    }

    /// The room if it is there now.
    pub(super) fn try_acquire(self: &Arc<Self>, requests: usize, bytes: usize) -> Option<Permit> {
        let (slots, bytes) = self.cost(requests, bytes);
        self.slots.try_acquire_many(slots).ok()?.forget();
        let mut permit = Permit {
            limits: Arc::clone(self),
            slots,
            bytes: 0,
        };
        self.bytes.try_acquire_many(bytes).ok()?.forget();
        permit.bytes = bytes;
        Some(permit)
    }
}
