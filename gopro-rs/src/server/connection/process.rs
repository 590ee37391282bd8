//! The synchronous path: one read, every whole frame handled in order
//! straight from the read buffer into the reply buffer, one write.
//!
//! This is where HEARTBEAT and MESSAGE spend their time. It hands over to
//! the slow path ([`slow`](super::slow)) only when something has to wait: an
//! application handler that did not finish on its first poll, a LOGIN with
//! an authenticator, a frame too large to copy, a full socket or the memory
//! budget. The helpers it calls in the other files of this module are
//! `#[inline]`, so that splitting the code into files does not keep the
//! compiler from inlining them as it did when they shared one module.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use futures_util::FutureExt;
use tracing::{debug, info, warn};

use super::read::Read;
use super::slow::Slow;
use super::{deadline_after, Connection, Peer, Step};
use crate::server::handler::{BoxFuture, Inline, Reply};
use crate::server::pool;
use crate::server::stats::Counters;
use crate::stream::Transport;
use crate::Command;

/// A handler's future, guarded against panics. Called and first polled on
/// the synchronous path, where most handlers finish; awaited on the slow
/// path otherwise.
pub(super) type Call =
    futures_util::future::CatchUnwind<AssertUnwindSafe<BoxFuture<Result<Reply, String>>>>;

/// Bodies up to this size are copied out of the read buffer for a handler
/// called on the synchronous path; larger ones are split off it, on the slow
/// path.
const INLINE_CALL_BODY: usize = 4096;

impl<T: Transport> Connection<T> {
    /// Reads what has arrived, handles the whole frames, writes the replies,
    /// all without waiting; hands over to [`slow_path`](Self::slow_path)
    /// when something has to wait (a handler, a login, a full socket).
    #[inline]
    pub(super) fn step(&mut self) -> Step {
        if let Err(more) = self.claim() {
            let buf = self.rbuf.take().unwrap_or_default();
            return Step::Slow(buf, Slow::Budget(more));
        }
        let mut buf = self.read_buffer();
        let limit = self.read_limit(&buf);
        let drained = match self.read_into(&mut buf, limit) {
            Ok(Read { len: 0, .. }) => {
                if self.decoder.is_mid_frame(&buf) {
                    if let Err(e) = self.decoder.decode_eof(&mut buf) {
                        info!(peer = %Peer(&self.stream), "peer closed mid-frame: {e}");
                    }
                }
                buf.clear();
                pool::give(buf);
                return Step::Close;
            }
            Ok(Read { drained, .. }) => drained,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing more for now: the connection goes idle.
                self.keep_or_return(buf, true);
                return Step::Continue;
            }
            Err(e) => {
                debug!(peer = %Peer(&self.stream), "read failed: {e}");
                self.count_error(|c| &c.io);
                buf.clear();
                pool::give(buf);
                return Step::Close;
            }
        };
        if let Err(slow) = self.process_in_scope(&mut buf) {
            return Step::Slow(buf, slow);
        }
        match self.write_now() {
            Ok(true) => {
                self.release_wbuf();
                self.keep_or_return(buf, drained);
                Step::Continue
            }
            Ok(false) => Step::Slow(buf, Slow::Write),
            Err(e) => Step::Slow(buf, Slow::Io(e)),
        }
    }

    /// Handles whole frames inline, in order, until none is left or one
    /// needs waiting.
    pub(super) fn process(&mut self, buf: &mut BytesMut) -> Result<(), Slow> {
        // Frames are read in place through a cursor; the buffer is advanced
        // once, past everything handled.
        let mut at = 0;
        let mut handled = 0;
        let mut inline = 0;
        // A HEARTBEAT's reply is the frame itself: consecutive ones are
        // copied to the replies as one run, `echo`, when another reply or
        // the end of the batch comes.
        let echo_heartbeats = self.config.handlers[Command::HEARTBEAT.0 as usize].is_none();
        let mut echo = 0..0;
        let result = loop {
            if echo_heartbeats {
                // A run of HEARTBEATs is only stepped over (see `echo`).
                let start = at;
                let room = self
                    .config
                    .max_buffered_replies
                    .saturating_sub(self.wbuf.len() + echo.len());
                let run = self
                    .decoder
                    .skip_run(buf, &mut at, Command::HEARTBEAT, room);
                if run > 0 {
                    debug!(peer = %Peer(&self.stream), count = run, "HEARTBEAT frames");
                    handled += run;
                    inline += run;
                    if echo.end != start {
                        self.push_echo(buf, &mut echo);
                        echo.start = start;
                    }
                    echo.end = at;
                }
            }
            // Any other frame, or a HEARTBEAT the run did not take (over the
            // room left, or whole only with a header an earlier read took).
            let header = match self.decoder.decode_slice(buf, &mut at) {
                Ok(Some(header)) => header,
                Ok(None) => break Ok(()),
                Err(e) => break Err(Slow::Error(e)),
            };
            handled += 1;
            let length = header.length as usize;
            debug!(peer = %Peer(&self.stream), command = %header.command, length, "frame");
            self.push_echo(buf, &mut echo);
            if self.handle_inline(header.command, &buf[at - length..at]) {
                // Every built-in command handled inline gets one reply.
                inline += 1;
            } else if header.command != Command::LOGIN && length <= INLINE_CALL_BODY {
                match self.call_now(header.command, &buf[at - length..at]) {
                    Ok(replied) => inline += u64::from(replied),
                    Err(call) => break Err(Slow::Call(Box::new((header.command, call)))),
                }
            } else {
                // Leave the body at the front of the buffer for the slow path.
                at -= length;
                break Err(Slow::Frame(header));
            }
            if self.wbuf.len() + echo.len() >= self.config.max_buffered_replies {
                self.push_echo(buf, &mut echo);
                match self.write_now() {
                    Ok(true) => {}
                    Ok(false) => break Err(Slow::Write),
                    Err(e) => break Err(Slow::Io(e)),
                }
            }
        };
        self.push_echo(buf, &mut echo);
        buf.advance(at);
        if handled > 0 {
            Counters::add(&self.config.shared.counters.frames_in, handled);
            self.sent(inline);
            self.deadline = deadline_after(&self.config);
        }
        result
    }

    /// [`process`](Self::process), inside the server's batch scope if it
    /// has one (see [`ServerBuilder::batch_scope`](crate::server::ServerBuilder::batch_scope)).
    #[inline]
    pub(super) fn process_in_scope(&mut self, buf: &mut BytesMut) -> Result<(), Slow> {
        let Some(scope) = self.config.batch_scope.clone() else {
            return self.process(buf);
        };
        let mut result = Ok(());
        scope(&mut || result = self.process(buf));
        result
    }

    /// Handles a frame that needs no waiting; `false` if it does (a LOGIN
    /// with an authenticator, or an application handler).
    pub(super) fn handle_inline(&mut self, command: Command, body: &[u8]) -> bool {
        if command == Command::LOGIN {
            if self.config.authenticator.is_some() {
                return false;
            }
            self.push_parts(Command::LOGIN, b"OK", &[]);
            return true;
        }
        if !self.logged_in && command != Command::HEARTBEAT {
            self.push_error("not authenticated");
            return true;
        }
        if self.config.handlers[command.0 as usize].is_some() {
            return false;
        }
        match command {
            Command::HEARTBEAT => self.push_parts(command, &[], body),
            Command::MESSAGE => self.push_message(body),
            _ => self.push_error(&format!("unknown command: {}", command.0)),
        }
        true
    }

    /// Calls the application handler for `command` and polls its future
    /// once: `Ok` (with whether a reply was added) if it finished, else the
    /// call to await.
    pub(super) fn call_now(&mut self, command: Command, body: &[u8]) -> Result<bool, Call> {
        let Some(handler) = &self.config.handlers[command.0 as usize] else {
            return Ok(false);
        };
        let mut call =
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call_inline(command, body)))
            {
                Ok(Inline::Done(outcome)) => return Ok(self.replied(command, Ok(outcome))),
                Ok(Inline::Wait(fut)) => AssertUnwindSafe(fut).catch_unwind(),
                Err(panic) => return Ok(self.replied(command, Err(panic))),
            };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut call).poll(&mut cx) {
            Poll::Ready(outcome) => Ok(self.replied(command, outcome)),
            Poll::Pending => Err(call),
        }
    }

    /// Adds what a handler's call came to: its reply, or an ERROR for a
    /// failure or a panic. `true` if a frame was added.
    pub(super) fn replied(
        &mut self,
        command: Command,
        outcome: std::thread::Result<Result<Reply, String>>,
    ) -> bool {
        match outcome {
            Ok(Ok(Reply::None)) => false,
            Ok(Ok(reply)) => {
                self.push_reply(command, reply);
                true
            }
            Ok(Err(reason)) => {
                self.count_error(|c| &c.handler);
                self.push_error(&reason);
                true
            }
            Err(_) => {
                warn!(%command, "handler panicked");
                self.count_error(|c| &c.handler);
                self.push_error(&format!("handler for command {} panicked", command.0));
                true
            }
        }
    }
}
