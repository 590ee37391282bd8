//! The server-wide memory budget: bytes held for frames and replies beyond
//! each connection's first (pooled) buffer, across all connections.
//!
//! A connection claims the whole of a frame that does not fit its pooled
//! buffer before reading more of it, and waits, without reading, while the
//! budget cannot cover it. Claims are served in order, so a large frame is
//! not starved by smaller ones, and a frame whose claim is granted can
//! always be completed: the server stalls the connections asking for the
//! most instead of allocating, and never aborts. Replies are already made
//! when they are counted, so they may overdraw the budget; an overdraft is
//! paid back first, before any claim is granted again.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

pub(crate) struct Budget {
    limit: usize,
    /// One permit per byte not yet claimed.
    permits: Semaphore,
    /// Bytes counted beyond the limit (replies), to be paid back first.
    overdraft: AtomicUsize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Budget {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Budget {
            limit,
            permits: Semaphore::new(limit),
            overdraft: AtomicUsize::new(0),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes counted now.
    pub(crate) fn used(&self) -> usize {
        self.limit - self.permits.available_permits() + self.overdraft.load(Ordering::Relaxed)
    }

    /// Claims `n` bytes if the budget has them now.
    pub(crate) fn try_claim(&self, n: usize) -> bool {
        match u32::try_from(n) {
            Ok(n) => self.permits.try_acquire_many(n).map(|p| p.forget()).is_ok(),
            Err(_) => false,
        }
    }

    /// Claims `n` bytes, waiting in line until the budget has them.
    /// `n` is at most the limit (checked when the server is built).
    pub(crate) async fn claim(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        // The semaphore is never closed.
        if let Ok(permit) = self.permits.acquire_many(n).await {
            permit.forget();
        }
    }

    /// Counts `n` bytes already allocated, overdrawing if need be.
    pub(crate) fn charge(&self, n: usize) {
        let got = self.permits.forget_permits(n);
        if got < n {
            self.overdraft.fetch_add(n - got, Ordering::Relaxed);
        }
    }

    /// Gives back `n` bytes claimed or charged.
    pub(crate) fn release(&self, n: usize) {
        let mut owed = self.overdraft.load(Ordering::Relaxed);
        let repaid = loop {
            let repay = owed.min(n);
            match self.overdraft.compare_exchange_weak(
                owed,
                owed - repay,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break repay,
                Err(now) => owed = now,
            }
        };
        if n > repaid {
            self.permits.add_permits(n - repaid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn claims_wait_in_line_and_overdrafts_are_paid_first() {
        let budget = std::sync::Arc::new(Budget::new(100));
        assert!(budget.try_claim(60));
        assert!(!budget.try_claim(41));
        assert!(budget.try_claim(40));
        assert_eq!(budget.used(), 100);
        budget.charge(30); // replies: 30 over
        assert_eq!(budget.used(), 130);
        let waiter = tokio::spawn({
            let budget = budget.clone();
            async move { budget.claim(50).await }
        });
        tokio::task::yield_now().await;
        budget.release(60); // 30 repaid, 30 free: not enough for 50
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        // A later small claim does not jump the queue.
        assert!(!budget.try_claim(10));
        budget.release(40);
        waiter.await.unwrap();
        // The waiter's 50 and the replies' 30.
        assert_eq!(budget.used(), 80);
        budget.release(50);
        budget.release(30);
        assert_eq!(budget.used(), 0);
        assert!(!budget.try_claim(101));
    }
}
