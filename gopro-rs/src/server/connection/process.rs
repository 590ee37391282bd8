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
use crate::server::stats::{Batch, Class, Counters};
use crate::stream::Transport;
use crate::Command;

/// A handler's future, guarded against panics. Called and first polled on
/// the synchronous path, where most handlers finish; awaited on the slow
/// path otherwise.
pub(super) type Call =
    futures_util::future::CatchUnwind<AssertUnwindSafe<BoxFuture<Result<Reply, String>>>>;

/// When an application handler's call started, for the latency histogram;
/// `None` for the built-in commands' handlers, which are not timed.
pub(super) type Started = Option<std::time::Instant>;

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
            Ok(Read { len, drained }) => {
                Counters::add(&self.config.shared.counters.bytes_in, len as u64);
                drained
            }
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
        // Frames by class, added to the server's counters once at the end.
        let mut tally = Batch::default();
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
                    tally.frames_in.add(Class::Heartbeat, run);
                    tally.frames_out.add(Class::Heartbeat, run);
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
            let length = header.length as usize;
            debug!(peer = %Peer(&self.stream), command = %header.command, length, "frame");
            self.push_echo(buf, &mut echo);
            if self.handle_inline(header.command, &buf[at - length..at], &mut tally) {
                // Counted by `handle_inline`.
            } else if header.command != Command::LOGIN && length <= INLINE_CALL_BODY {
                tally.frames_in.add(Class::of(header.command), 1);
                match self.call_now(header.command, &buf[at - length..at]) {
                    Ok(Some(class)) => tally.frames_out.add(class, 1),
                    Ok(None) => {}
                    Err((call, started)) => {
                        break Err(Slow::Call(Box::new((header.command, call, started))))
                    }
                }
            } else {
                tally.frames_in.add(Class::of(header.command), 1);
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
        if !tally.is_empty() {
            self.config.shared.counters.add_batch(&tally);
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

    /// Handles a frame that needs no waiting and counts it and its reply in
    /// `tally`; `false` if it needs waiting (a LOGIN with an authenticator,
    /// or a handler), uncounted.
    pub(super) fn handle_inline(
        &mut self,
        command: Command,
        body: &[u8],
        tally: &mut Batch,
    ) -> bool {
        let reply = if command == Command::LOGIN {
            if self.config.authenticator.is_some() {
                return false;
            }
            self.push_parts(Command::LOGIN, b"OK", &[])
        } else if !self.logged_in && command != Command::HEARTBEAT {
            self.push_error("not authenticated")
        } else if self.config.handlers[command.0 as usize].is_some() {
            return false;
        } else {
            match command {
                Command::HEARTBEAT => self.push_parts(command, &[], body),
                // The common case: counted once, as one MESSAGE in and one
                // out, with no look-up by class (see `Batch`).
                Command::MESSAGE => match self.push_message(body) {
                    Class::Message => {
                        tally.messages += 1;
                        return true;
                    }
                    // Its reply over the body limit, an ERROR.
                    class => class,
                },
                _ => self.push_error(&format!("unknown command: {}", command.0)),
            }
        };
        tally.frames_in.add(Class::of(command), 1);
        tally.frames_out.add(reply, 1);
        true
    }

    /// Calls the handler for `command` and polls its future once: `Ok`
    /// (with the class of the reply added, if any) if it finished, else
    /// the call to await.
    pub(super) fn call_now(
        &mut self,
        command: Command,
        body: &[u8],
    ) -> Result<Option<Class>, (Call, Started)> {
        let Some(handler) = &self.config.handlers[command.0 as usize] else {
            return Ok(None);
        };
        let started = start_timer(command);
        let mut call =
            match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call_inline(command, body)))
            {
                Ok(Inline::Done(outcome)) => {
                    return Ok(self.replied(command, Ok(outcome), started))
                }
                Ok(Inline::Wait(fut)) => AssertUnwindSafe(fut).catch_unwind(),
                Err(panic) => return Ok(self.replied(command, Err(panic), started)),
            };
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match Pin::new(&mut call).poll(&mut cx) {
            Poll::Ready(outcome) => Ok(self.replied(command, outcome, started)),
            Poll::Pending => Err((call, started)),
        }
    }

    /// Adds what a handler's call came to: its reply, or an ERROR for a
    /// failure or a panic. Returns the class of the frame added, if any,
    /// and records the call's time if it was `started` on a timer.
    pub(super) fn replied(
        &mut self,
        command: Command,
        outcome: std::thread::Result<Result<Reply, String>>,
        started: Started,
    ) -> Option<Class> {
        if let Some(started) = started {
            let took = started.elapsed();
            self.config.shared.counters.handler_latency.record(took);
        }
        match outcome {
            Ok(Ok(reply)) => self.push_reply(command, reply),
            Ok(Err(reason)) => {
                self.count_error(|c| &c.handler);
                Some(self.push_error(&reason))
            }
            Err(_) => {
                warn!(%command, "handler panicked");
                self.count_error(|c| &c.handler);
                Some(self.push_error(&format!("handler for command {} panicked", command.0)))
            }
        }
    }
}

/// Starts timing a handler call: application commands only, so that the
/// built-in commands' handlers (HEARTBEAT and MESSAGE overridden) do not
/// pay for reading the clock.
#[inline]
pub(super) fn start_timer(command: Command) -> Started {
    command.is_application().then(std::time::Instant::now)
}
