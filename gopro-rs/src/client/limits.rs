//! The bounds on what one client holds: requests in flight and their bytes.
//! A caller takes a [`Permit`] before its request is queued and waits (or,
//! through [`Limits::try_acquire`], gives up) while the client is full; the
//! permit goes back when the reply is handed over or the request fails.
//!
//! Both counts live in one atomic word, so that taking room and giving it
//! back cost one atomic operation each while nobody waits: every request
//! does both, from any thread. Callers that have to wait queue behind a
//! lock and are served first come, first served: a caller that finds
//! others waiting waits behind them, so a large request is not passed for
//! ever by small ones.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// Requests in the high half of a [`Room`], bytes in the low half.
type Room = u64;

fn room(slots: u32, bytes: u32) -> Room {
    (u64::from(slots) << 32) | u64::from(bytes)
}

fn split(room: Room) -> (u64, u64) {
    (room >> 32, room & u64::from(u32::MAX))
}

#[derive(Debug)]
pub(super) struct Limits {
    /// The room taken.
    used: AtomicU64,
    max_in_flight: u32,
    max_bytes: u32,
    queue: Mutex<Queue>,
    /// Callers in `queue`: a release that sees none takes no lock.
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    /// Callers waiting, oldest first: id, room wanted, waker.
    waiting: VecDeque<(u64, Room, Option<Waker>)>,
    /// Callers given their room and not yet woken to take it.
    granted: Vec<u64>,
}

/// Room for requests in flight; given back when dropped.
#[derive(Debug)]
pub(super) struct Permit {
    limits: Arc<Limits>,
    room: Room,
}

impl Permit {
    /// Adds `permit`'s room to what `held` holds (one permit for a batch).
    pub(super) fn hold(held: &mut Option<Permit>, mut permit: Permit) {
        match held {
            Some(held) => held.room += std::mem::take(&mut permit.room),
            None => *held = Some(permit),
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.room != 0 {
            self.limits.release(self.room);
        }
    }
}

impl Limits {
    pub(super) fn new(max_in_flight: usize, max_bytes: usize) -> Arc<Limits> {
        Arc::new(Limits {
            used: AtomicU64::new(0),
            max_in_flight: u32::try_from(max_in_flight).unwrap_or(u32::MAX).max(1),
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX).max(1),
            queue: Mutex::default(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// What `requests` requests of `bytes` bytes in all take: never more than
    /// the whole client, so that a batch larger than the bounds still goes,
    /// alone.
    fn cost(&self, requests: usize, bytes: usize) -> Room {
        let slots = u32::try_from(requests)
            .unwrap_or(u32::MAX)
            .min(self.max_in_flight);
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX).min(self.max_bytes);
        room(slots, bytes)
    }

    fn permit(self: &Arc<Self>, room: Room) -> Permit {
        Permit {
            limits: Arc::clone(self),
            room,
        }
    }

    /// Takes `wanted` if it fits now.
    fn take(&self, wanted: Room) -> bool {
        let (slots, bytes) = split(wanted);
        let mut used = self.used.load(Ordering::SeqCst);
        loop {
            let (used_slots, used_bytes) = split(used);
            if used_slots + slots > u64::from(self.max_in_flight)
                || used_bytes + bytes > u64::from(self.max_bytes)
            {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + wanted,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, room: Room) {
        self.used.fetch_sub(room, Ordering::SeqCst);
        // Sequentially consistent, as is the count's increment by a caller
        // before it looks at the room: either it sees this release's room,
        // or this sees it waiting.
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let wake = self.serve(&mut self.lock());
            wake.into_iter().for_each(Waker::wake);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives the oldest waiting callers their room while it fits; returns
    /// their wakers, to wake once the lock is released.
    fn serve(&self, queue: &mut Queue) -> Vec<Waker> {
        let mut wake = Vec::new();
        while let Some(&(id, wanted, _)) = queue.waiting.front() {
            if !self.take(wanted) {
                break;
            }
            let (_, _, waker) = queue.waiting.pop_front().expect("the front");
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            queue.granted.push(id);
            wake.extend(waker);
        }
        wake
    }

    /// Waits for room for `requests` requests of `bytes` bytes in all.
    /// Cancel-safe: dropped half way, it holds nothing.
    pub(super) async fn acquire(self: &Arc<Self>, requests: usize, bytes: usize) -> Permit {
        if let Some(permit) = self.try_acquire(requests, bytes) {
            return permit;
        }
        let wanted = self.cost(requests, bytes);
        let turn = {
            let mut queue = self.lock();
            let id = queue.next_id;
            queue.next_id += 1;
            queue.waiting.push_back((id, wanted, None));
            self.waiting.fetch_add(1, Ordering::SeqCst);
            // The room may have come back since it was looked at.
            let wake = self.serve(&mut queue);
            drop(queue);
            wake.into_iter().for_each(Waker::wake);
            Turn {
                limits: self,
                id,
                wanted,
                done: false,
            }
        };
        turn.await_room().await
    }

    /// The room if it is there now and nobody waits for room before.
    pub(super) fn try_acquire(self: &Arc<Self>, requests: usize, bytes: usize) -> Option<Permit> {
        let wanted = self.cost(requests, bytes);
        if self.waiting.load(Ordering::SeqCst) > 0 || !self.take(wanted) {
            return None;
        }
        Some(self.permit(wanted))
    }
}

/// A caller's place in the queue; dropped before its room was taken, it
/// leaves the queue, or gives the room it was granted back.
struct Turn<'a> {
    limits: &'a Arc<Limits>,
    id: u64,
    wanted: Room,
    done: bool,
}

impl Turn<'_> {
    async fn await_room(mut self) -> Permit {
        poll_fn(|cx| {
            let mut queue = self.limits.lock();
            if let Some(at) = queue.granted.iter().position(|&id| id == self.id) {
                queue.granted.swap_remove(at);
                self.done = true;
                return Poll::Ready(());
            }
            if let Some(entry) = queue.waiting.iter_mut().find(|e| e.0 == self.id) {
                match &mut entry.2 {
                    Some(waker) => waker.clone_from(cx.waker()),
                    none => *none = Some(cx.waker().clone()),
                }
            }
            Poll::Pending
        })
        .await;
        self.limits.permit(self.wanted)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut queue = self.limits.lock();
        if let Some(at) = queue.granted.iter().position(|&id| id == self.id) {
            queue.granted.swap_remove(at);
            drop(queue);
            self.limits.release(self.wanted);
            return;
        }
        if let Some(at) = queue.waiting.iter().position(|e| e.0 == self.id) {
            queue.waiting.remove(at);
            self.limits.waiting.fetch_sub(1, Ordering::SeqCst);
            // The ones behind it may fit now.
            let wake = self.limits.serve(&mut queue);
            drop(queue);
            wake.into_iter().for_each(Waker::wake);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::Context;

    use super::*;

    fn poll<F: Future>(fut: Pin<&mut F>) -> Poll<F::Output> {
        fut.poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Room is taken up to each bound, not a byte or a request past it, and
    /// comes back when the permit is dropped.
    #[test]
    fn room_goes_to_each_bound_and_comes_back() {
        let limits = Limits::new(4, 100);
        let a = limits.try_acquire(3, 60).expect("room");
        assert!(limits.try_acquire(2, 1).is_none(), "a fifth request");
        assert!(limits.try_acquire(1, 41).is_none(), "a 101st byte");
        let b = limits.try_acquire(1, 40).expect("the rest");
        drop(a);
        assert!(limits.try_acquire(3, 60).is_some());
        drop(b);
        assert!(limits.try_acquire(4, 100).is_some(), "all of it");
        // More than the whole client goes alone.
        assert!(limits.try_acquire(10, 1000).is_some());
    }

    /// Waiting callers get the room in the order they came, and a caller
    /// that finds others waiting does not take it before them.
    #[test]
    fn waiting_callers_are_served_in_order() {
        let limits = Limits::new(2, 1000);
        let held = limits.try_acquire(2, 10).expect("room");
        let mut big = Box::pin(limits.acquire(2, 10));
        let mut small = Box::pin(limits.acquire(1, 10));
        assert!(poll(big.as_mut()).is_pending());
        assert!(poll(small.as_mut()).is_pending());
        drop(held);
        assert!(poll(small.as_mut()).is_pending(), "behind the big one");
        assert!(limits.try_acquire(1, 1).is_none(), "no jumping the queue");
        let Poll::Ready(big) = poll(big.as_mut()) else {
            panic!("the big one first")
        };
        drop(big);
        assert!(poll(small.as_mut()).is_ready());
    }

    /// A waiter dropped (cancelled) leaves the queue, or gives back the
    /// room it was granted: nothing is held by nobody.
    #[test]
    fn a_cancelled_waiter_holds_nothing() {
        let limits = Limits::new(1, 1000);
        let held = limits.try_acquire(1, 10).expect("room");
        {
            let mut first = Box::pin(limits.acquire(1, 10));
            assert!(poll(first.as_mut()).is_pending());
        }
        let mut second = Box::pin(limits.acquire(1, 10));
        assert!(poll(second.as_mut()).is_pending());
        drop(held);
        // Granted, then dropped before it was polled again.
        drop(second);
        assert!(limits.try_acquire(1, 10).is_some(), "the room is back");
        assert_eq!(limits.waiting.load(Ordering::SeqCst), 0);
    }
}
