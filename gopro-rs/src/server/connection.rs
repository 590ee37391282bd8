//! One connection: read what has arrived, handle every whole frame in order,
//! write all the replies at once, repeat.
//!
//! The built-in commands are handled synchronously, straight from the read
//! buffer into the write buffer; only application handlers and logins with
//! an authenticator await, in boxed futures. That keeps the per-frame path
//! free of allocation and reference counting, and the future every
//! connection carries (idle or not) small.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tracing::{debug, info, warn};

use super::config::Config;
use super::handler::{BoxFuture, Inline, Reply};
use super::pool;
use super::stats::Counters;
use crate::{Codec, Command, Decoder, Encoder, Error, Header, HEADER_LEN, VERSION};

/// The prefix of the default MESSAGE reply, as the reference server writes it.
const MESSAGE_PREFIX: &[u8] = b"Server says: ";
/// Reads ask for at least this much room, and at most this much at once.
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;
/// A partial frame this small is moved out of the pooled read buffer into
/// one of its own size when the connection goes idle.
const SMALL_PARTIAL: usize = 512;
/// How long a closing connection keeps reading (and discarding) so that the
/// last frames it wrote are not destroyed by a reset.
const LINGER: Duration = Duration::from_millis(500);

/// What woke an idle connection.
enum Event {
    Shutdown,
    Timer,
    Readable(io::Result<()>),
}

/// Why [`Connection::step`] had to stop before it was done.
enum Slow {
    /// The frame just decoded (its body still in the buffer) needs a handler
    /// or an authenticator.
    Frame(Header),
    /// A handler called for the frame just decoded has to wait. (Boxed:
    /// a `Slow` is part of every connection's future.)
    Call(Box<(Command, Call)>),
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

/// A handler's future, guarded against panics. Called and first polled on
/// the synchronous path, where most handlers finish; awaited on the slow
/// path otherwise.
type Call = futures_util::future::CatchUnwind<AssertUnwindSafe<BoxFuture<Result<Reply, String>>>>;

/// Bodies up to this size are copied out of the read buffer for a handler
/// called on the synchronous path; larger ones are split off it, on the slow
/// path.
const INLINE_CALL_BODY: usize = 4096;

/// What a synchronous step leaves to do.
enum Step {
    Continue,
    Close,
    Slow(BytesMut, Slow),
}

/// What one read brought.
struct Read {
    len: usize,
    /// The read stopped short of its room: the socket holds no more now.
    drained: bool,
}

/// What to do after a step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// The peer's address, looked up only when a log line is written.
struct Peer<'a>(&'a TcpStream);

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.peer_addr() {
            Ok(addr) => addr.fmt(f),
            Err(_) => f.write_str("(disconnected)"),
        }
    }
}

pub(crate) struct Connection {
    stream: TcpStream,
    config: Arc<Config>,
    decoder: Decoder,
    /// The read buffer, held only while a frame is partly received.
    rbuf: Option<BytesMut>,
    /// Replies not yet written; taken from the pool when the first is added.
    wbuf: BytesMut,
    /// End of the time allowed for the next whole frame.
    /// In nanoseconds from the server's epoch: half the size of an
    /// `Instant`, which keeps the connection's task in a smaller allocation.
    deadline: u64,
    logged_in: bool,
    login_failures: u32,
    /// What this connection holds of the memory budget; boxed, as only
    /// connections that move large frames ever hold any.
    held: Option<Box<Held>>,
}

/// A connection's share of the memory budget.
#[derive(Default)]
struct Held {
    /// Claimed for the frame in progress.
    frame: usize,
    /// Claimed for that frame's reply, when the server itself makes it.
    reply: usize,
    /// Charged for the reply buffer's growth past a pooled buffer.
    replies: usize,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, config: Arc<Config>) -> Connection {
        // Replies are batched by hand: one write per batch, so Nagle only adds latency.
        let _ = stream.set_nodelay(true);
        info!(%peer, "connection opened");
        let max_body = if config.authenticator.is_some() {
            config.prelogin_max_body.min(config.max_body)
        } else {
            config.max_body
        };
        let decoder = Codec::builder()
            .max_body(max_body)
            .require_current_version()
            .decoder();
        Connection {
            stream,
            deadline: deadline_after(&config),
            logged_in: config.authenticator.is_none(),
            config,
            decoder,
            rbuf: None,
            wbuf: BytesMut::new(),
            login_failures: 0,
            held: None,
        }
    }

    #[allow(clippy::manual_async_fn)] // on purpose, see below
    pub(crate) fn run(mut self) -> impl std::future::Future<Output = ()> + Send {
        // An async block, not an async fn: an async fn would keep a second
        // copy of `self` in its state for the whole life of the connection.
        async move { self.serve().await }
    }

    async fn serve(&mut self) {
        // Pinned once, so that waiting costs no registration per batch; the
        // timer is moved to the deadline only when it fires early.
        let mut cancelled = pin!(self.config.shutdown.clone().cancelled_owned());
        // Whether `cancelled` holds this task's waker: polling it takes two
        // locks every connection shares, so after the first poll it is
        // polled again only once shutdown has been asked for.
        let mut watching = false;
        let mut timer = pin!(sleep_until(self.deadline()));
        loop {
            // Waiting is a plain poll of the three sources: readiness goes
            // through `poll_read_ready`, which stores only a waker, where a
            // `readable()` future would carry a waiter node in every idle
            // connection. Acting on the event outside lets the compiler
            // overlap the waiting and the handling states.
            let event = std::future::poll_fn(|cx| {
                if !watching || self.config.shared.shutting_down.load(Ordering::Acquire) {
                    watching = true;
                    if cancelled.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Event::Shutdown);
                    }
                }
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                self.stream.poll_read_ready(cx).map(Event::Readable)
            })
            .await;
            match event {
                Event::Shutdown => {
                    Box::pin(self.shut_down()).await;
                    break;
                }
                Event::Timer => {
                    if Instant::now() < self.deadline() {
                        timer.as_mut().reset(self.deadline());
                        continue;
                    }
                    Box::pin(self.timed_out()).await;
                    break;
                }
                Event::Readable(Err(e)) => {
                    debug!(peer = %Peer(&self.stream), "connection failed: {e}");
                    self.count_error(|c| &c.io);
                    break;
                }
                Event::Readable(Ok(())) => match self.step() {
                    Step::Continue => {}
                    Step::Close => break,
                    Step::Slow(buf, slow) => {
                        if Box::pin(self.slow_path(buf, slow)).await == Flow::Close {
                            break;
                        }
                    }
                },
            }
        }
        self.release_buffers();
        info!(peer = %Peer(&self.stream), "connection closed");
    }

    /// Reads what has arrived, handles the whole frames, writes the replies,
    /// all without waiting; hands over to [`slow_path`](Self::slow_path)
    /// when something has to wait (a handler, a login, a full socket).
    fn step(&mut self) -> Step {
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
    fn process(&mut self, buf: &mut BytesMut) -> Result<(), Slow> {
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
    /// has one (see [`ServerBuilder::batch_scope`](super::ServerBuilder::batch_scope)).
    fn process_in_scope(&mut self, buf: &mut BytesMut) -> Result<(), Slow> {
        let Some(scope) = self.config.batch_scope.clone() else {
            return self.process(buf);
        };
        let mut result = Ok(());
        scope(&mut || result = self.process(buf));
        result
    }

    /// Copies a run of HEARTBEAT frames from the read buffer to the replies.
    fn push_echo(&mut self, buf: &[u8], echo: &mut std::ops::Range<usize>) {
        if echo.start != echo.end {
            self.out().extend_from_slice(&buf[echo.clone()]);
            if self.wbuf.capacity() > pool::BUFFER_SIZE {
                self.charge_replies();
            }
            *echo = 0..0;
        }
    }

    /// Goes on from where [`step`](Self::step) had to stop, waiting where it
    /// must, until the buffer is handled and the replies written.
    async fn slow_path(&mut self, mut buf: BytesMut, mut slow: Slow) -> Flow {
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
                    let (command, call) = *pending;
                    if self.finish_call(command, call).await == Flow::Close {
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

    /// The buffer to read into: the partial frame held, in a pooled buffer,
    /// with room for what that frame still needs. The room grows with what
    /// has arrived (at most doubling), so a header announcing a large body
    /// reserves nothing until its bytes come.
    fn read_buffer(&mut self) -> BytesMut {
        let mut buf = match self.rbuf.take() {
            Some(small) if small.capacity() < MIN_READ => {
                let mut buf = pool::take();
                buf.extend_from_slice(&small);
                buf
            }
            Some(buf) => buf,
            None => pool::take(),
        };
        let want = self
            .decoder
            .bytes_needed(&buf)
            .min(MAX_READ)
            .min(buf.len().max(pool::BUFFER_SIZE))
            .max(MIN_READ);
        if buf.capacity() - buf.len() < want {
            // At most doubling, and never past the end of the frame, which
            // is all the memory budget covers (reserve could double past it).
            let frame_end = buf.len() + self.decoder.bytes_needed(&buf);
            let target = (buf.capacity() * 2).min(frame_end).max(buf.len() + want);
            let mut bigger = BytesMut::with_capacity(target);
            bigger.extend_from_slice(&buf);
            buf.clear();
            pool::give(buf);
            return bigger;
        }
        buf
    }

    /// Reads at most `limit` bytes. A read that fills less than the room it
    /// was given drained the socket (as tokio's `poll_read` takes it): its
    /// readiness is cleared then, so the next read waits for the next
    /// wake-up instead of making one more system call to learn EAGAIN.
    fn read_into(&self, buf: &mut BytesMut, limit: usize) -> io::Result<Read> {
        let room = limit.min(buf.capacity() - buf.len());
        let mut len = 0;
        // (`try_read_buf` inside `try_io`: both clear the readiness only as
        // of the event they saw, so neither can lose a newer one.)
        let result = self.stream.try_io(Interest::READABLE, || {
            len = self.stream.try_read_buf(&mut (&mut *buf).limit(limit))?;
            if len > 0 && len < room {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(Read {
                len,
                drained: false,
            }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && len > 0 => {
                Ok(Read { len, drained: true })
            }
            Err(e) => Err(e),
        }
    }

    /// End of the time allowed for the next whole frame.
    fn deadline(&self) -> Instant {
        self.config.epoch + Duration::from_nanos(self.deadline)
    }

    /// How much one read may bring: the rest of a frame the budget covers
    /// and a pooled buffer's worth after it, or a pooled buffer's worth in
    /// all. A buffer kept from an earlier large frame has more room than
    /// that, and must not take in a large frame before it is claimed.
    fn read_limit(&self, buf: &BytesMut) -> usize {
        let claimed = self.held.as_ref().map_or(0, |h| h.frame);
        match self.decoder.pending_header() {
            Some(h) if h.frame_len() > pool::BUFFER_SIZE && claimed >= h.frame_len() => {
                self.decoder.bytes_needed(buf) + pool::BUFFER_SIZE
            }
            _ => pool::BUFFER_SIZE.saturating_sub(buf.len()).max(HEADER_LEN),
        }
    }

    /// Claims from the memory budget the whole of a frame too large for a
    /// pooled buffer before more of it is read; `Err` with the bytes still
    /// to claim when the budget cannot cover them now.
    fn claim(&mut self) -> Result<(), usize> {
        let Some(header) = self.decoder.pending_header() else {
            return Ok(());
        };
        let frame = header.frame_len();
        if frame <= pool::BUFFER_SIZE {
            return Ok(());
        }
        // An echo's reply is as large as the request, and made while the
        // request is still held: claim both at once.
        let echo = (header.command == Command::HEARTBEAT || header.command == Command::MESSAGE)
            && self.config.handlers[header.command.0 as usize].is_none();
        let need = if echo {
            frame + HEADER_LEN + header.length as usize + MESSAGE_PREFIX.len()
        } else {
            frame
        };
        let budget = &self.config.shared.budget;
        let need = need.min(budget.limit().max(frame));
        let has = self.held.as_ref().map_or(0, |h| h.frame + h.reply);
        if need <= has {
            return Ok(());
        }
        let more = need - has;
        if budget.try_claim(more) {
            self.add_claim(more);
            Ok(())
        } else {
            Err(more)
        }
    }

    /// Books `more` claimed bytes: the frame's first, the rest for its reply.
    fn add_claim(&mut self, more: usize) {
        let frame = self.decoder.pending_header().map_or(0, |h| h.frame_len());
        let held = self.held.get_or_insert_default();
        let to_frame = frame.saturating_sub(held.frame).min(more);
        held.frame += to_frame;
        held.reply += more - to_frame;
    }

    /// Gives back the claims once no frame needs them, or when `force`d.
    fn release_claim(&mut self, force: bool) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let claimed = held.frame + held.reply;
        if claimed > 0 && (force || self.decoder.pending_header().is_none()) {
            self.config.shared.budget.release(claimed);
            held.frame = 0;
            held.reply = 0;
        }
    }

    /// Counts the reply buffer's growth past a pooled buffer against the
    /// memory budget, from the reply's claim first.
    fn charge_replies(&mut self) {
        let size = self.wbuf.capacity().saturating_sub(pool::BUFFER_SIZE);
        let held = self.held.get_or_insert_default();
        if size > held.replies {
            let grown = size - held.replies;
            let claimed = grown.min(held.reply);
            held.reply -= claimed;
            held.replies = size;
            self.config.shared.budget.charge(grown - claimed);
        }
    }

    /// Gives back what the reply buffer was charged.
    fn release_charge(&mut self) {
        if let Some(held) = self.held.as_mut() {
            if held.replies > 0 {
                self.config.shared.budget.release(held.replies);
                held.replies = 0;
            }
        }
    }

    /// Counts frames sent: once per batch for the replies made inline,
    /// once per reply on the slow path.
    fn sent(&self, n: u64) {
        Counters::add(&self.config.shared.counters.frames_out, n);
    }

    fn count_error(&self, which: impl FnOnce(&Counters) -> &AtomicU64) {
        which(&self.config.shared.counters).fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the read buffer only while it holds part of a frame. A small
    /// partial frame left when the connection goes `idle` moves into a
    /// buffer of its own size, so that a peer stalling mid-frame holds its
    /// bytes, not a whole buffer.
    fn keep_or_return(&mut self, mut buf: BytesMut, idle: bool) {
        if buf.is_empty() {
            pool::give(buf);
            self.release_claim(false);
        } else if idle && buf.len() <= SMALL_PARTIAL && buf.capacity() >= MIN_READ {
            self.rbuf = Some(BytesMut::from(&buf[..]));
            buf.clear();
            pool::give(buf);
            // Claimed again when more of the frame arrives.
            self.release_claim(true);
        } else {
            self.rbuf = Some(buf);
        }
    }

    fn release_buffers(&mut self) {
        if let Some(mut buf) = self.rbuf.take() {
            buf.clear();
            pool::give(buf);
        }
        self.release_claim(true);
        self.release_wbuf();
    }

    fn release_wbuf(&mut self) {
        let mut buf = std::mem::take(&mut self.wbuf);
        if buf.capacity() > 0 {
            buf.clear();
            pool::give(buf);
        }
        self.release_charge();
    }

    /// Handles a frame that needs no waiting; `false` if it does (a LOGIN
    /// with an authenticator, or an application handler).
    fn handle_inline(&mut self, command: Command, body: &[u8]) -> bool {
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
    fn call_now(&mut self, command: Command, body: &[u8]) -> Result<bool, Call> {
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
    fn replied(
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

    /// A LOGIN with an authenticator, or a frame for an application handler.
    async fn handle_async(&mut self, command: Command, body: Bytes) -> Flow {
        if command == Command::LOGIN {
            // Answered OK or ERROR, unless the server closes first.
            self.sent(1);
            return self.login(body).await;
        }
        let Some(handler) = self.config.handlers[command.0 as usize].clone() else {
            return Flow::Continue;
        };
        let frame = crate::Frame::new(command, body);
        match std::panic::catch_unwind(AssertUnwindSafe(|| handler.call(frame))) {
            Ok(fut) => {
                self.finish_call(command, AssertUnwindSafe(fut).catch_unwind())
                    .await
            }
            Err(panic) => {
                if self.replied(command, Err(panic)) {
                    self.sent(1);
                }
                Flow::Continue
            }
        }
    }

    /// Awaits a handler's call and adds what it came to; `Close` if the
    /// server closes the connection first.
    async fn finish_call(&mut self, command: Command, call: Call) -> Flow {
        let force = self.config.force.clone();
        tokio::select! {
            outcome = call => {
                if self.replied(command, outcome) {
                    self.sent(1);
                }
                Flow::Continue
            }
            () = force.cancelled() => Flow::Close,
        }
    }

    async fn login(&mut self, credentials: Bytes) -> Flow {
        let Some(authenticator) = self.config.authenticator.clone() else {
            self.push_parts(Command::LOGIN, b"OK", &[]);
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
                self.push_parts(Command::LOGIN, b"OK", &[]);
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
                    return Flow::Close;
                }
                self.push_error(&format!("login failed: {reason}"));
                Flow::Continue
            }
        }
    }

    /// The buffer replies go into, taken from the pool on first use.
    fn out(&mut self) -> &mut BytesMut {
        if self.wbuf.capacity() == 0 {
            self.wbuf = pool::take();
        }
        &mut self.wbuf
    }

    fn encoder(&self) -> Encoder {
        Encoder::with_max_body(self.config.max_body)
    }

    /// Adds a reply made of `prefix` and `body`, without building a frame;
    /// replies over the body limit become ERROR (SPEC §2).
    fn push_parts(&mut self, command: Command, prefix: &[u8], body: &[u8]) {
        let encoder = self.encoder();
        let out = self.out();
        out.reserve(HEADER_LEN + prefix.len() + body.len());
        if let Err(e) = encoder.encode_parts(VERSION, command, &[prefix, body], out) {
            return self.push_error(&format!("reply not sent: {e}"));
        }
        if self.wbuf.capacity() > pool::BUFFER_SIZE {
            self.charge_replies();
        }
    }

    /// The MESSAGE reply, `"Server says: "` + body: header and prefix are
    /// put together on the stack and copied as one piece.
    fn push_message(&mut self, body: &[u8]) {
        const PREFIXED: usize = HEADER_LEN + MESSAGE_PREFIX.len();
        let length = MESSAGE_PREFIX.len() + body.len();
        let Ok(header) = self.encoder().header(VERSION, Command::MESSAGE, length) else {
            return self.push_parts(Command::MESSAGE, MESSAGE_PREFIX, body);
        };
        let mut head = [0u8; PREFIXED];
        head[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        head[HEADER_LEN..].copy_from_slice(MESSAGE_PREFIX);
        let out = self.out();
        out.reserve(PREFIXED + body.len());
        out.put_slice(&head);
        out.put_slice(body);
        if self.wbuf.capacity() > pool::BUFFER_SIZE {
            self.charge_replies();
        }
    }

    fn push_reply(&mut self, command: Command, reply: Reply) {
        match reply {
            Reply::None => {}
            Reply::Body(body) => self.push_parts(command, &[], &body),
            Reply::Frame(frame) => {
                let encoder = self.encoder();
                match encoder.encode(&frame, self.out()) {
                    Ok(()) => self.charge_replies(),
                    Err(e) => self.push_error(&format!("reply not sent: {e}")),
                }
            }
        }
    }

    fn push_error(&mut self, reason: &str) {
        debug!(peer = %Peer(&self.stream), "ERROR {reason}");
        // Reasons are short; cut one that is not, on a character boundary.
        let mut end = reason.len().min(self.config.max_body).min(4096);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.push_parts(Command::ERROR, &[], &reason.as_bytes()[..end]);
    }

    /// Writes every buffered reply, waiting (within the write timeout) for a
    /// peer that is slow to read.
    async fn flush(&mut self) -> Flow {
        if self.wbuf.is_empty() {
            return Flow::Continue;
        }
        let result = match self.write_now() {
            Ok(true) => Ok(()),
            Ok(false) => self.write_rest().await,
            Err(e) => Err(e),
        };
        self.release_wbuf();
        match result {
            Ok(()) => Flow::Continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                warn!(peer = %Peer(&self.stream), timeout = ?self.config.write_timeout, "peer is not reading its replies: closing");
                self.count_error(|c| &c.write_timeout);
                Flow::Close
            }
            Err(e) => {
                debug!(peer = %Peer(&self.stream), "write failed: {e}");
                self.count_error(|c| &c.io);
                Flow::Close
            }
        }
    }

    /// Writes what the socket takes now; `true` once everything is written.
    fn write_now(&mut self) -> io::Result<bool> {
        loop {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => {
                    self.wbuf.advance(n);
                    if self.wbuf.is_empty() {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes the rest within the write timeout (or until the server closes).
    async fn write_rest(&mut self) -> io::Result<()> {
        let force = self.config.force.clone();
        let limit = self.config.write_timeout;
        tokio::select! {
            written = timeout(limit, self.stream.write_all(&self.wbuf)) => match written {
                Ok(result) => result,
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            },
            () = force.cancelled() => Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }

    /// The stream cannot be trusted: say why, then close (SPEC §2).
    async fn protocol_error(&mut self, error: Error) -> Flow {
        warn!(peer = %Peer(&self.stream), "protocol error: {error}");
        self.count_error(|c| &c.protocol);
        self.push_error(&error.to_string());
        self.sent(1);
        self.close_after_flush().await
    }

    /// Writes what is buffered, then closes without destroying it.
    async fn close_after_flush(&mut self) -> Flow {
        if self.flush().await == Flow::Continue {
            self.linger().await;
        }
        Flow::Close
    }

    /// Half-closes and discards input for a moment, so that closing with
    /// unread input does not reset the connection before the peer has read
    /// the last frames.
    async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let mut scratch = pool::take();
        let _ = timeout(LINGER, async {
            loop {
                scratch.clear();
                if self.stream.readable().await.is_err() {
                    return;
                }
                match self.stream.try_read_buf(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        scratch.clear();
        pool::give(scratch);
    }

    /// No whole frame arrived in time (SPEC §5).
    async fn timed_out(&mut self) {
        self.count_error(|c| &c.read_timeout);
        let mid_frame = self.rbuf.is_some() || self.decoder.pending_header().is_some();
        if mid_frame {
            info!(peer = %Peer(&self.stream), timeout = ?self.config.read_timeout, "read timeout mid-frame: closing");
            self.push_error(&format!(
                "read timeout: no whole frame within {:?}",
                self.config.read_timeout
            ));
            self.sent(1);
            let _ = self.close_after_flush().await;
        } else {
            debug!(peer = %Peer(&self.stream), "idle past the read timeout: closing");
        }
    }

    /// Shutdown (SPEC §6): handle the frames already received, reply, then
    /// GOAWAY; cut short when the grace period is over.
    async fn shut_down(&mut self) {
        let force = self.config.force.clone();
        tokio::select! {
            () = self.finish() => {}
            () = force.cancelled() => {}
        }
    }

    async fn finish(&mut self) {
        let mut buf = self.rbuf.take().unwrap_or_else(pool::take);
        // Frames that reached the socket before shutdown count as received.
        loop {
            if buf.capacity() - buf.len() < MIN_READ {
                buf.reserve(MIN_READ);
            }
            match self.stream.try_read_buf(&mut buf) {
                Ok(n) if n > 0 && buf.len() <= self.decoder.max_body() + HEADER_LEN => {}
                _ => break,
            }
        }
        // Handled as any batch; the replies go out with the GOAWAY.
        let flow = match self.process_in_scope(&mut buf) {
            Ok(()) => {
                self.keep_or_return(buf, true);
                Flow::Continue
            }
            Err(slow) => self.slow_path(buf, slow).await,
        };
        if flow == Flow::Continue {
            self.push_parts(Command::GOAWAY, b"server shutting down", &[]);
            self.sent(1);
            let _ = self.close_after_flush().await;
        }
    }
}

/// The read deadline from now, in nanoseconds from the server's epoch.
fn deadline_after(config: &Config) -> u64 {
    let at = Instant::now()
        .saturating_duration_since(config.epoch)
        .saturating_add(config.read_timeout);
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is this future plus the socket: keep it small
    /// (the target is at most 1.5 KiB of memory per idle connection).
    #[tokio::test]
    async fn the_connection_future_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (stream, peer) = accepted.unwrap();
        let config = Arc::new(crate::server::ServerBuilder::new().into_config());
        let future = Connection::new(stream, peer, config).run();
        let size = std::mem::size_of_val(&future);
        drop(client);
        eprintln!("connection future: {size} bytes");
        // Past 472 bytes the task takes the next 128-byte size class.
        assert!(size <= 472, "connection future is {size} bytes");
    }
}
