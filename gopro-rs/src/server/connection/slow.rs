//! The slow path: what has to wait, in a boxed future of its own so that
//! the future every connection carries stays small.
//!
//! [`step`](Connection::step) hands over a [`Slow`] when it has to stop;
//! [`slow_path`](Connection::slow_path) waits for it (a handler, an
//! authenticator, the socket, the memory budget), then goes back to handling
//! the rest of the buffer the synchronous way.

use std::io;
use std::panic::AssertUnwindSafe;

use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use tracing::{debug, info, warn};

use super::process::{start_timer, Call, Started};
use super::{deadline_after, Connection, Flow, Peer};
use crate::server::handler::BoxFuture;
use crate::server::pool;
use crate::server::stats::Class;
use crate::stream::Transport;
use crate::{Command, Error, Header};

/// Why [`Connection::step`] had to stop before it was done.
pub(super) enum Slow {
    /// The frame just decoded (its body still in the buffer) needs a handler
    /// or an authenticator.
    Frame(Header),
    /// A handler called for the frame just decoded has to wait. (Boxed:
    /// a `Slow` is part of every connection's future.)
    Call(Box<(Command, Call, Started)>),
    /// The socket did not take all the replies.
    Write,
    /// The stream cannot be trusted.
    Error(Error),
    /// Writing failed.
    Io(io::Error),
    /// The frame in progress needs this many more bytes of the memory
    /// budget before more of it is read.
    Budget(usize),
}

impl<T: Transport> Connection<T> {
    /// Goes on from where [`step`](Self::step) had to stop, waiting where it
    /// must, until the buffer is handled and the replies written.
    pub(super) async fn slow_path(&mut self, mut buf: BytesMut, mut slow: Slow) -> Flow {
        let flow = loop {
            match slow {
                Slow::Error(e) => break self.protocol_error(e).await,
                Slow::Io(e) => {
                    debug!(peer = %Peer(&self.stream), "write failed: {e}");
                    self.count_error(|c| &c.io);
                    break Flow::Close;
                }
                Slow::Budget(more) => {
                    debug!(peer = %Peer(&self.stream), more, "waiting for the memory budget");
                    let shared = self.config.shared.clone();
                    let shutdown = self.config.shutdown.clone();
                    tokio::select! {
                        () = shared.budget.claim(more) => {
                            self.add_claim(more);
                            // The wait was the server's, not the peer's.
                            self.deadline = deadline_after(&self.config);
                        }
                        () = shutdown.cancelled() => {}
                    }
                }
                Slow::Write => {
                    if self.flush().await == Flow::Close {
                        break Flow::Close;
                    }
                }
                Slow::Frame(header) => {
                    let body = buf.split_to(header.length as usize).freeze();
                    // What follows the body moves to a buffer of its own: a
                    // handler may keep the body, and with it the allocation
                    // it shares, which must not go back to the pool.
                    let rest = std::mem::replace(&mut buf, pool::take());
                    buf.extend_from_slice(&rest);
                    if self.handle_async(header.command, body).await == Flow::Close {
                        break self.close_after_flush().await;
                    }
                }
                Slow::Call(pending) => {
                    let (command, call, started) = *pending;
                    if self.finish_call(command, call, started).await == Flow::Close {
                        break Flow::Close;
                    }
                }
            }
            match self.process_in_scope(&mut buf) {
                Ok(()) => break self.flush().await,
                Err(next) => slow = next,
            }
        };
        if flow == Flow::Close {
            buf.clear();
        }
        self.keep_or_return(buf, false);
        flow
    }

    /// A LOGIN with an authenticator, or a frame for an application handler.
    pub(super) async fn handle_async(&mut self, command: Command, body: Bytes) -> Flow {
        if command == Command::LOGIN {
            return self.login(body).await;
        }
        let Some(handler) = self.config.handlers[command.0 as usize].clone() else {
            return Flow::Continue;
        };
        let frame = crate::Frame::new(command, body);
        let started = start_timer(command);
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(frame))) {
            Ok(fut) => {
                self.finish_call(command, AssertUnwindSafe(fut).catch_unwind(), started)
                    .await
            }
            Err(panic) => {
                if let Some(class) = self.replied(command, Err(panic), started) {
                    self.sent(class);
                }
                Flow::Continue
            }
        }
    }

    /// Awaits a handler's call and adds what it came to; `Close` if the
    /// server closes the connection first.
    pub(super) async fn finish_call(
        &mut self,
        command: Command,
        call: Call,
        started: Started,
    ) -> Flow {
        let force = self.config.force.clone();
        tokio::select! {
            outcome = call => {
                if let Some(class) = self.replied(command, outcome, started) {
                    self.sent(class);
                }
                Flow::Continue
            }
            () = force.cancelled() => Flow::Close,
        }
    }

    pub(super) async fn login(&mut self, credentials: Bytes) -> Flow {
        let Some(authenticator) = self.config.authenticator.clone() else {
            let class = self.push_parts(Command::LOGIN, b"OK", &[]);
            self.sent(class);
            return Flow::Continue;
        };
        let force = self.config.force.clone();
        let verdict = tokio::select! {
            verdict = guarded(Command::LOGIN, || authenticator.authenticate(credentials)) => verdict,
            () = force.cancelled() => return Flow::Close,
        };
        match verdict {
            Ok(()) => {
                self.logged_in = true;
                self.login_failures = 0;
                self.decoder.set_max_body(self.config.max_body);
                info!(peer = %Peer(&self.stream), "logged in");
                let class = self.push_parts(Command::LOGIN, b"OK", &[]);
                self.sent(class);
                Flow::Continue
            }
            Err(reason) => {
                self.count_error(|c| &c.login);
                self.login_failures += 1;
                let max = self.config.max_login_failures;
                warn!(peer = %Peer(&self.stream), failures = self.login_failures, "login failed: {reason}");
                if self.login_failures >= max {
                    self.push_error(&format!(
                        "login failed: {reason}; {max} failed logins in a row, closing"
                    ));
                    self.sent(Class::Error);
                    return Flow::Close;
                }
                self.push_error(&format!("login failed: {reason}"));
                self.sent(Class::Error);
                Flow::Continue
            }
        }
    }
}

/// Runs a handler or authenticator so that a panic becomes an error reply
/// instead of taking the connection (or the server) down.
async fn guarded<T>(
    command: Command,
    call: impl FnOnce() -> BoxFuture<Result<T, String>>,
) -> Result<T, String> {
    let panicked = || format!("handler for command {} panicked", command.0);
    let fut = match std::panic::catch_unwind(AssertUnwindSafe(call)) {
        Ok(fut) => fut,
        Err(_) => {
            warn!(%command, "handler panicked");
            return Err(panicked());
        }
    };
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            warn!(%command, "handler panicked");
            Err(panicked())
        }
    }
}
