//! Where a request's reply goes: a waiting caller, a callback, a batch, or
//! the in-order stream that `send` and `recv` share. A [`Reply`] is given
//! exactly one result per request it stands for: dropped with results still
//! owed (the connection task gone, a message never read), it gives them
//! [`ClientError::Closed`], so that nobody waits for ever.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{oneshot, Notify};

use super::limits::Permit;
use super::ClientError;
use crate::Frame;

/// A callback given each request's outcome once (the C ABI's completions).
pub type Callback = Box<dyn FnOnce(Result<Frame, ClientError>) + Send>;

/// What a batch comes to: its replies in order, and the error that cut it
/// short (the replies after that error are discarded).
pub(super) type BatchResult = (Vec<Frame>, Option<ClientError>);

pub(super) enum To {
    One(Option<oneshot::Sender<Result<Frame, ClientError>>>),
    Callback(Option<Callback>),
    /// A callback per request, in order (see `gathered`).
    Callbacks(VecDeque<Callback>),
    Stream(Arc<ReplyStream>),
    Batch {
        tx: Option<oneshot::Sender<BatchResult>>,
        frames: Vec<Frame>,
    },
}

/// The results owed for one message of requests (one request, or a batch).
pub(super) struct Reply {
    to: To,
    remaining: usize,
    permit: Option<Permit>,
}

impl Reply {
    pub(super) fn new(to: To, requests: usize, permit: Permit) -> Reply {
        Reply {
            to,
            remaining: requests,
            permit: Some(permit),
        }
    }

    /// Owes nothing any more: the requests were never queued. Callbacks
    /// still get `Closed` (as the reply is dropped): each has a caller
    /// waiting for it that the refusal did not reach.
    pub(super) fn disarm(mut self) {
        if !matches!(self.to, To::Callbacks(_)) {
            self.remaining = 0;
        }
    }

    /// Whether the connection task times the request out: a callback has
    /// no caller to do it, and a lone request's caller leaves it to the
    /// task rather than arm a timer of its own for every call.
    pub(super) fn timed_by_task(&self) -> bool {
        matches!(self.to, To::Callback(_) | To::Callbacks(_) | To::One(_))
    }

    /// Whether a result wakes a caller that waits for this one request
    /// (and is likely to make another).
    pub(super) fn wakes_caller(&self) -> bool {
        matches!(self.to, To::One(Some(_)))
    }

    /// Results still owed.
    pub(super) fn remaining(&self) -> usize {
        self.remaining
    }

    /// Hands over the next request's result.
    pub(super) fn give(&mut self, result: Result<Frame, ClientError>) {
        if self.remaining == 0 {
            return;
        }
        self.remaining -= 1;
        let last = self.remaining == 0;
        // The room goes back before the last result is handed over, so that
        // a caller it wakes finds the client as free as its reply says.
        let mut permit = if last { self.permit.take() } else { None };
        if !matches!(self.to, To::Stream(_)) {
            drop(permit.take());
        }
        match &mut self.to {
            To::One(tx) => {
                if let Some(tx) = tx.take() {
                    // A caller gone (cancelled, timed out) is not an error:
                    // its reply is discarded.
                    let _ = tx.send(result);
                }
            }
            To::Callback(f) => {
                if let Some(f) = f.take() {
                    f(result);
                }
            }
            To::Callbacks(callbacks) => {
                if let Some(f) = callbacks.pop_front() {
                    f(result);
                }
            }
            To::Stream(stream) => stream.push(result, permit),
            To::Batch { tx, frames } => match result {
                Ok(frame) if tx.is_some() => {
                    frames.push(frame);
                    if last {
                        let frames = std::mem::take(frames);
                        let _ = tx.take().map(|tx| tx.send((frames, None)));
                    }
                }
                Err(e) => {
                    let frames = std::mem::take(frames);
                    let _ = tx.take().map(|tx| tx.send((frames, Some(e))));
                }
                Ok(_) => {}
            },
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        while self.remaining > 0 {
            let unanswered = self.remaining;
            self.give(Err(ClientError::Closed { unanswered }));
        }
    }
}

/// The replies to one client handle's `send`s, in order, until `recv`
/// takes them. A reply holds its requests' room in the client until it is
/// taken, so that a caller that sends without receiving waits once the
/// client is full instead of growing the stream.
#[derive(Debug, Default)]
pub(super) struct ReplyStream {
    state: Mutex<StreamState>,
    notify: Notify,
    /// Callers waiting for a reply ([`Waiting`]). A reply wakes them only
    /// if there are any (waking takes a lock of its own, which a reply
    /// taken at once by `try_take` would pay for nothing), and a `send`
    /// made while one waits is handed over at once, not gathered.
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct StreamState {
    ready: VecDeque<(Result<Frame, ClientError>, Option<Permit>)>,
    /// Requests sent through the stream whose replies were not yet taken.
    expected: usize,
}

impl ReplyStream {
    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `n` more requests were sent.
    pub(super) fn expect(&self, n: usize) {
        self.lock().expected += n;
    }

    /// The caller could not send the `n` it announced.
    pub(super) fn unexpect(&self, n: usize) {
        let mut state = self.lock();
        state.expected = state.expected.saturating_sub(n);
    }

    fn push(&self, result: Result<Frame, ClientError>, permit: Option<Permit>) {
        self.lock().ready.push_back((result, permit));
        // After the push, under whose lock a waiter that counted itself
        // before looking would have seen the reply.
        if self.is_waited_on() {
            self.notify.notify_waiters();
        }
    }

    /// Requests sent whose replies were not yet taken.
    pub(super) fn expected(&self) -> usize {
        self.lock().expected
    }

    /// The oldest reply if it is there. `None` also when nothing is expected.
    pub(super) fn try_take(&self) -> Option<Result<Frame, ClientError>> {
        let mut state = self.lock();
        let (result, _permit) = state.ready.pop_front()?;
        state.expected -= 1;
        Some(result)
    }

    /// Whether a caller waits for a reply.
    pub(super) fn is_waited_on(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// Counts the caller as waiting, from before it looks for its reply
    /// (and hands over what its handle gathered) until it has it.
    pub(super) fn wait(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(self)
    }

    /// The oldest reply, waiting for it (counted as waiting by `_waiting`).
    /// Cancel-safe: a reply is taken only when it is returned.
    pub(super) async fn take(&self, _waiting: &Waiting<'_>) -> Result<Frame, ClientError> {
        loop {
            // Registered before the queue is looked at: a reply pushed
            // after the look sees this caller waiting, and wakes it.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some((result, _permit)) = state.ready.pop_front() {
                    state.expected -= 1;
                    return result;
                }
                if state.expected == 0 {
                    return Err(ClientError::NothingInFlight {
                        wanted: 1,
                        in_flight: 0,
                    });
                }
            }
            notified.await;
        }
    }
}

/// A caller counted as waiting for a reply while it lives (cancel-safe: a
/// dropped `recv` is no longer counted).
pub(super) struct Waiting<'a>(&'a ReplyStream);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}
