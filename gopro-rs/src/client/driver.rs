//! The connection task: the one owner of a client's socket and
//! [`Pipeline`]. Callers put their requests on a queue and wait for their
//! own reply; the task takes every request queued, writes them in as few
//! writes as the socket allows, and hands each reply to its caller. It
//! keeps the connection alive while idle, gives it up when the server stops
//! answering, and reconnects if asked to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Sleep};
use tracing::{debug, info, warn};

use super::connect::{open, Backoff};
use super::end::{clone_error, copy_codec_error, End};
use super::pipeline::{Event, Fate, Pipeline, Position};
use super::reply::Reply;
use super::{reply_result, ClientError, ClientSettings, ClientStats};
use crate::stream::Stream;
use crate::{Command, Frame};

/// What a caller puts on the queue.
pub(super) enum Msg {
    Request {
        command: Command,
        body: Bytes,
        reply: Reply,
    },
    /// Frames already encoded and checked.
    Encoded { wire: Bytes, reply: Reply },
    /// Answered once everything queued before it is written.
    Flush(oneshot::Sender<()>),
    /// Closes the connection now; every request unanswered fails.
    Close,
}

/// How a client's connection ended for good.
#[derive(Clone, Debug)]
pub(super) enum Ended {
    Closed,
    GoAway(String),
    /// The server ended the TLS session (e.g. it refused the client's
    /// certificate, which TLS 1.3 tells only after the handshake).
    Tls {
        addr: Box<str>,
        reason: Box<str>,
    },
    /// The server sent bytes that are not GoPro.
    Protocol(Arc<crate::Error>),
}

impl Ended {
    pub(super) fn error(&self) -> ClientError {
        match self {
            Ended::Closed => ClientError::Closed { unanswered: 0 },
            Ended::GoAway(reason) => ClientError::GoAway {
                reason: reason.clone(),
                unanswered: 0,
            },
            Ended::Protocol(e) => ClientError::Protocol(copy_codec_error(e)),
            Ended::Tls { addr, reason } => ClientError::Tls {
                addr: addr.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// What the client's handles and its task share.
#[derive(Debug, Default)]
pub(super) struct State {
    ended: Mutex<Option<Ended>>,
    /// Whether `ended` is set: read without the lock by every call.
    has_ended: std::sync::atomic::AtomicBool,
    requests: AtomicU64,
    replies: AtomicU64,
    reconnects: AtomicU64,
    resent: AtomicU64,
    lost: AtomicU64,
    /// The connection task has ended: its socket is closed and every
    /// request has had its outcome.
    finished: std::sync::atomic::AtomicBool,
    on_finish: tokio::sync::Notify,
}

impl State {
    /// Marks the connection task as ended, and wakes who waits for it.
    pub(super) fn set_finished(&self) {
        self.finished.store(true, Ordering::Release);
        self.on_finish.notify_waiters();
    }

    /// Waits until the connection task has ended.
    pub(super) async fn finished(&self) {
        let notified = self.on_finish.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so that an end between the
        // two still wakes this waiter.
        notified.as_mut().enable();
        if self.finished.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }

    /// The error for a call made after the connection ended for good.
    pub(super) fn ended(&self) -> Option<ClientError> {
        if !self.has_ended.load(Ordering::Acquire) {
            return None;
        }
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Ended::error)
    }

    /// Puts `msg` on the connection task's queue unless the connection has
    /// ended for good, and says why not otherwise.
    ///
    /// Under the lock that ending takes: the task marks the end (`end`)
    /// before its last look at the queue, so a message is either queued
    /// before that look, and answered, or refused here. (A plain send can
    /// succeed after the task's last look, and the message would then wait
    /// for ever for an answer.)
    pub(super) fn post(
        &self,
        tx: &mpsc::UnboundedSender<Msg>,
        msg: Msg,
    ) -> Result<(), ClientError> {
        let refused = {
            let ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
            match ended.as_ref() {
                Some(ended) => Some((ended.error(), msg)),
                None => tx.send(msg).err().map(|mpsc::error::SendError(msg)| {
                    (ClientError::Closed { unanswered: 0 }, msg)
                }),
            }
        };
        let Some((error, msg)) = refused else {
            return Ok(());
        };
        // Not queued: its requests were never sent, and owe no result.
        if let Msg::Request { reply, .. } | Msg::Encoded { reply, .. } = msg {
            reply.disarm();
        }
        Err(error)
    }

    /// The client was closed: later calls fail at once.
    pub(super) fn close(&self) {
        self.end(Ended::Closed);
    }

    fn end(&self, ended: Ended) {
        let mut slot = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(ended);
        self.has_ended.store(true, Ordering::Release);
    }

    pub(super) fn stats(&self) -> ClientStats {
        ClientStats {
            requests: self.requests.load(Ordering::Relaxed),
            replies: self.replies.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            resent: self.resent.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

/// The requests of one message, waiting for their replies.
struct Waiter {
    first: Position,
    end: Position,
    reply: Reply,
    /// When it was queued: while the client reconnects, a request waits no
    /// longer than the timeout.
    since: Instant,
}

pub(super) struct Driver {
    pipeline: Pipeline,
    waiters: VecDeque<Waiter>,
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    rx: mpsc::UnboundedReceiver<Msg>,
    state: Arc<State>,
    settings: ClientSettings,
    /// Told the outcome of the first LOGIN (or that there is none).
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    /// Every handle is gone: finish what is in flight, then stop.
    orphaned: bool,
    timer: std::pin::Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// The deadlines of the requests the task times out (see
    /// `Reply::timed_by_task`), oldest first.
    deadlines: VecDeque<(Instant, Position)>,
    /// Whether the connection has brought a reply: a TLS failure before
    /// the first one means the session never worked (a refused client
    /// certificate), after it the connection was lost.
    answered: bool,
    /// Callers handed a reply (`request`) that have not queued another
    /// request since: while there are some, a request that wakes the task
    /// is likely the first of several (see `serve`).
    coming_back: usize,
}

impl Driver {
    pub(super) fn new(
        pipeline: Pipeline,
        rx: mpsc::UnboundedReceiver<Msg>,
        state: Arc<State>,
        settings: ClientSettings,
        ready: oneshot::Sender<Result<(), ClientError>>,
    ) -> Driver {
        Driver {
            pipeline,
            waiters: VecDeque::new(),
            flushes: Vec::new(),
            rx,
            state,
            settings,
            ready: Some(ready),
            orphaned: false,
            timer: Box::pin(sleep_until(tokio::time::Instant::now())),
            armed: None,
            deadlines: VecDeque::new(),
            answered: false,
            coming_back: 0,
        }
    }

    /// Serves connections until the client is closed, or its connection
    /// ends and it does not reconnect.
    pub(super) async fn run(mut self, mut stream: Stream, mut index: usize) {
        let mut backoff = self
            .settings
            .reconnect
            .map(|(first, max)| Backoff::new(first, max));
        loop {
            let again = self.pipeline.start_connection(Instant::now());
            self.answered = false;
            if self.pipeline.config().login.is_none() {
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            if again > 0 {
                self.state.resent.fetch_add(again as u64, Ordering::Relaxed);
                info!(
                    requests = again,
                    "gopro client: sending again the requests left unanswered"
                );
            }
            let end = match self.events() {
                Some(end) => end,
                None => self.serve(&mut stream).await,
            };
            // A session that worked and then failed lost its connection.
            let end = end.after(self.answered);
            drop(stream);
            if matches!(end, End::Closed) {
                self.finish(Ended::Closed);
                return;
            }
            end.log(&self.settings.addrs[index]);
            let reconnect = backoff.is_some() && !self.orphaned;
            if !reconnect && matches!(end, End::GoAway(_)) {
                // Requests already queued when the server went away count
                // among those it left unanswered (`GoAway::unanswered`), as
                // if they had been taken a moment earlier. (A close among
                // them changes nothing: the client is ending anyway.)
                let now = Instant::now();
                while let Ok(msg) = self.rx.try_recv() {
                    let _ = self.accept(msg, now);
                }
            }
            let failed = self.pipeline.end_connection(reconnect);
            let ended = (!reconnect).then(|| match &end {
                End::GoAway(reason) => Ended::GoAway(reason.clone()),
                End::Protocol(e) => Ended::Protocol(Arc::new(copy_codec_error(e))),
                End::Tls(reason) => Ended::Tls {
                    addr: self.settings.addrs[index].as_str().into(),
                    reason: reason.as_str().into(),
                },
                _ => Ended::Closed,
            });
            // Ended for good: said before any caller hears of it, so that
            // a call made once one has fails at once, and says why.
            if let Some(ended) = &ended {
                self.state.end(ended.clone());
            }
            let addr = Arc::clone(&self.settings.addrs);
            self.fail(&failed, &end, &addr[index]);
            let (Some(backoff), None) = (backoff.as_mut(), ended.as_ref()) else {
                self.finish(ended.unwrap_or(Ended::Closed));
                return;
            };
            match self.reconnect(backoff, index + 1).await {
                Some((s, i)) => {
                    (stream, index) = (s, i);
                    self.state.reconnects.fetch_add(1, Ordering::Relaxed);
                    info!(addr = %self.settings.addrs[index], "gopro client: reconnected");
                }
                None => {
                    self.finish(Ended::Closed);
                    return;
                }
            }
        }
    }

    /// Every request still waiting fails; later calls fail with `ended`.
    fn finish(&mut self, ended: Ended) {
        self.state.end(ended.clone());
        self.rx.close();
        let error = ended.error();
        while let Ok(msg) = self.rx.try_recv() {
            if let Msg::Request { reply, .. } | Msg::Encoded { reply, .. } = msg {
                self.waiters.push_back(Waiter {
                    first: 0,
                    end: 0,
                    reply,
                    since: Instant::now(),
                });
            }
        }
        for mut waiter in self.waiters.drain(..) {
            while waiter.reply.remaining() > 0 {
                waiter.reply.give(Err(clone_error(&error)));
            }
        }
        self.flushes.clear();
        self.deadlines.clear();
    }

    /// Gives the requests of a connection ended their errors.
    fn fail(&mut self, failed: &[(Position, Fate)], end: &End, addr: &str) {
        let unanswered = failed.len();
        for &(position, fate) in failed {
            self.give_failure(position, fate, end, addr, unanswered);
        }
        self.flushes.clear();
    }

    fn give_failure(
        &mut self,
        position: Position,
        fate: Fate,
        end: &End,
        addr: &str,
        unanswered: usize,
    ) {
        let error = end.failure(fate, addr, unanswered);
        self.count(&error);
        self.give(position, Err(error));
    }

    /// Counts a request that failed and may have been handled.
    fn count(&self, error: &ClientError) {
        if error.may_have_been_handled() {
            self.state.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Hands the result of the request at `position` to its waiter, if it
    /// still has one.
    fn give(&mut self, position: Position, result: Result<Frame, ClientError>) {
        // Waiters are in order of position, and their requests are answered
        // (or fail) in order: the one for `position` is at the front,
        // after any whose requests were abandoned.
        while let Some(front) = self.waiters.front_mut() {
            if front.end <= position {
                self.waiters.pop_front();
                continue;
            }
            if front.first <= position {
                if front.reply.wakes_caller() {
                    self.coming_back += 1;
                }
                front.reply.give(result);
                if front.reply.remaining() == 0 || position + 1 == front.end {
                    self.waiters.pop_front();
                }
            }
            return;
        }
    }

    /// Takes what the server's bytes mean; `Some` when the connection ends.
    fn events(&mut self) -> Option<End> {
        let now = Instant::now();
        while let Some(event) = self.pipeline.poll_event(now) {
            match event {
                Event::Reply { position, frame } => {
                    self.answered = true;
                    self.state.replies.fetch_add(1, Ordering::Relaxed);
                    self.give(position, reply_result(frame));
                }
                Event::Failed { position, fate } => {
                    let error = End::failed_in_turn(fate);
                    self.count(&error);
                    self.give(position, Err(error));
                }
                Event::LoggedIn => {
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                Event::LoginRefused(e) => match self.ready.take() {
                    Some(ready) => {
                        let _ = ready.send(Err(e));
                    }
                    None => warn!(error = %e, "gopro client: LOGIN refused after reconnecting"),
                },
                Event::GoAway { reason } => return Some(End::GoAway(reason)),
                Event::Protocol(e) => return Some(End::Protocol(e)),
                Event::Unsolicited(frame) => return Some(End::unsolicited(&frame)),
            }
        }
        None
    }

    /// Queues a caller's message, taken at `now` (one reading of the clock
    /// for all the messages taken together); `Some` for a close.
    fn accept(&mut self, msg: Msg, now: Instant) -> Option<End> {
        let (submitted, reply) = match msg {
            Msg::Request {
                command,
                body,
                reply,
            } => {
                self.coming_back = self.coming_back.saturating_sub(1);
                (
                    self.pipeline.submit(command, &body).map(|p| p..p + 1),
                    reply,
                )
            }
            Msg::Encoded { wire, reply } => (self.pipeline.submit_encoded(&wire), reply),
            Msg::Flush(done) => {
                if self.pipeline.queued_bytes() == 0 {
                    let _ = done.send(());
                } else {
                    self.flushes.push((self.pipeline.bytes_queued(), done));
                }
                return None;
            }
            Msg::Close => return Some(End::Closed),
        };
        match submitted {
            Ok(range) => {
                self.state
                    .requests
                    .fetch_add(range.end - range.start, Ordering::Relaxed);
                let since = now;
                if reply.timed_by_task() {
                    self.deadlines
                        .push_back((since + self.settings.timeout, range.start));
                }
                self.waiters.push_back(Waiter {
                    first: range.start,
                    end: range.end,
                    reply,
                    since,
                });
            }
            Err(e) => {
                let mut reply = reply;
                reply.give(Err(e));
            }
        }
        None
    }

    /// Writes what the socket takes now.
    fn write_now(&mut self, stream: &mut Stream) -> Result<(), End> {
        loop {
            let out = self.pipeline.to_write();
            if out.is_empty() {
                break;
            }
            match stream.try_write(out) {
                Ok(n) => self.pipeline.wrote(n, Instant::now()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(End::from_io("write", e)),
            }
        }
        // Over TLS, encrypted bytes may wait in rustls for the socket.
        if let Err(e) = stream.flush_now() {
            return Err(End::from_io("write", e));
        }
        if !self.flushes.is_empty() {
            let written = self.pipeline.bytes_written();
            for (_, done) in self.flushes.extract_if(.., |(mark, _)| *mark <= written) {
                let _ = done.send(());
            }
        }
        Ok(())
    }

    /// Reads what the socket has now; `Some` when the connection ends.
    fn read_now(&mut self, stream: &mut Stream) -> Option<End> {
        loop {
            match stream.read_buf(self.pipeline.read_buf(), usize::MAX) {
                Ok(0) => {
                    if let Some(end) = self.events() {
                        return Some(end);
                    }
                    // Inside a reply, the stream is cut short (SPEC §2).
                    return Some(End::end_of_stream(self.pipeline.end_of_stream()));
                }
                Ok(_) => {
                    if let Some(end) = self.events() {
                        return Some(end);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some(End::from_io("read", e)),
            }
        }
    }

    /// Arms the timer for the earliest of the reply deadline and the
    /// keep-alive. Deadlines only move later, so a timer armed earlier
    /// than needed is left as it is, and looks again when it fires.
    fn arm(&mut self) {
        let reply = self.pipeline.reply_deadline(self.response_timeout());
        let keep_alive = self
            .settings
            .keep_alive
            .and_then(|interval| self.pipeline.keep_alive_due(interval));
        // The deadlines of requests answered since go (positions older than
        // the oldest waiter's were answered).
        while let Some(&(_, position)) = self.deadlines.front() {
            if self.waiters.front().is_some_and(|w| position >= w.first) {
                break;
            }
            self.deadlines.pop_front();
        }
        let callback = self.deadlines.front().map(|(at, _)| *at);
        let wanted = [reply, keep_alive, callback].into_iter().flatten().min();
        if let Some(wanted) = wanted {
            if self.armed.is_none_or(|armed| wanted < armed) {
                self.armed = Some(wanted);
                self.timer
                    .as_mut()
                    .reset(tokio::time::Instant::from_std(wanted));
            }
        }
    }

    /// How long the server may leave the oldest request unanswered: a tenth
    /// longer than a call's timeout, so that a lone caller of a server gone
    /// silent is told it timed out, not that the connection was lost.
    fn response_timeout(&self) -> Duration {
        super::builder::response_timeout(self.settings.timeout)
    }

    /// The timer fired: the server stopped answering, or a keep-alive is due.
    fn on_timer(&mut self) -> Option<End> {
        self.armed = None;
        let now = Instant::now();
        while let Some(&(at, position)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            self.time_out(position);
        }
        if let Some(deadline) = self.pipeline.reply_deadline(self.response_timeout()) {
            if deadline <= now {
                return Some(End::Lost(format!(
                    "no reply from the server for {:?}",
                    self.response_timeout()
                )));
            }
        }
        if let Some(interval) = self.settings.keep_alive {
            if self
                .pipeline
                .keep_alive_due(interval)
                .is_some_and(|due| due <= now)
            {
                debug!("gopro client: keep-alive HEARTBEAT");
                self.pipeline.keep_alive();
            }
        }
        None
    }

    /// Serves one connection until it ends.
    async fn serve(&mut self, stream: &mut Stream) -> End {
        loop {
            if !self.orphaned {
                let now = Instant::now();
                while let Ok(msg) = self.rx.try_recv() {
                    if let Some(end) = self.accept(msg, now) {
                        return end;
                    }
                }
            }
            if let Err(end) = self.write_now(stream) {
                return end;
            }
            if self.orphaned && self.waiters.is_empty() && self.pipeline.to_write().is_empty() {
                return End::Closed;
            }
            self.arm();
            let wants_write = !self.pipeline.to_write().is_empty() || stream.wants_flush();
            tokio::select! {
                biased;
                ready = stream.readable() => {
                    if let Err(e) = ready {
                        return End::from_io("read", e);
                    }
                    if let Some(end) = self.read_now(stream) {
                        return end;
                    }
                }
                msg = self.rx.recv(), if !self.orphaned => match msg {
                    Some(msg) => {
                        if let Some(end) = self.accept(msg, Instant::now()) {
                            return end;
                        }
                        if let Some(end) = self.gather().await {
                            return end;
                        }
                    }
                    None => self.orphaned = true,
                },
                ready = stream.writable(), if wants_write => {
                    if let Err(e) = ready {
                        return End::from_io("write", e);
                    }
                }
                () = &mut self.timer, if self.armed.is_some() => {
                    if let Some(end) = self.on_timer() {
                        return end;
                    }
                }
            }
        }
    }

    /// Takes the requests of the callers just answered before writing:
    /// they are queueing their next ones, on this thread's run queue or
    /// another's. The task lets them run first, yielding while that brings
    /// more, so that their requests go in one write instead of a poll and a
    /// write each. `Some` for a close.
    async fn gather(&mut self) -> Option<End> {
        while self.coming_back > 0 {
            tokio::task::yield_now().await;
            let mut more = false;
            let now = Instant::now();
            while let Ok(msg) = self.rx.try_recv() {
                more = true;
                if let Some(end) = self.accept(msg, now) {
                    return Some(end);
                }
            }
            if !more {
                // The others are not coming at once (busy on another
                // thread, or gone): write what there is. They still count,
                // less each time, so that the ones that come later are
                // gathered too, and callers gone for good soon are not.
                self.coming_back /= 2;
                break;
            }
        }
        None
    }

    /// Connects again, waiting between attempts; requests queued meanwhile
    /// wait, each no longer than the timeout. `None` if the client was
    /// closed (or every handle dropped with nothing waiting) first.
    async fn reconnect(&mut self, backoff: &mut Backoff, start: usize) -> Option<(Stream, usize)> {
        let addrs = Arc::clone(&self.settings.addrs);
        let tls = self.settings.tls.clone();
        let mut delay = Duration::ZERO;
        loop {
            let wake = tokio::time::Instant::now() + delay;
            loop {
                self.expire_waiters();
                if self.orphaned && self.waiters.is_empty() {
                    return None;
                }
                let tick = wake.min(tokio::time::Instant::now() + self.settings.timeout / 4);
                tokio::select! {
                    msg = self.rx.recv(), if !self.orphaned => match msg {
                        Some(msg) => {
                            if self.accept(msg, Instant::now()).is_some() {
                                return None;
                            }
                        }
                        None => self.orphaned = true,
                    },
                    () = sleep_until(tick) => {
                        if tick >= wake {
                            break;
                        }
                    }
                }
            }
            let attempt = open(&addrs, start, self.settings.connect_timeout, tls.as_ref());
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    result = &mut attempt => break result,
                    msg = self.rx.recv(), if !self.orphaned => match msg {
                        Some(msg) => {
                            if self.accept(msg, Instant::now()).is_some() {
                                return None;
                            }
                        }
                        None => self.orphaned = true,
                    },
                }
            };
            match result {
                Ok(found) => {
                    backoff.reset();
                    return Some(found);
                }
                Err(e) => {
                    delay = backoff.next_delay();
                    debug!(error = %e, ?delay, "gopro client: reconnect failed; trying again");
                }
            }
        }
    }

    /// A request has waited its whole timeout: its caller is told so now,
    /// and the reply, if it comes, is discarded.
    fn time_out(&mut self, position: Position) {
        let at = self.waiters.partition_point(|w| w.end <= position);
        if let Some(waiter) = self.waiters.get_mut(at) {
            // Every request of a message timed by the task was handed over
            // at once, and so times out at once (a request's own reply that
            // came later must not go to the next one's caller).
            if waiter.first == position {
                while waiter.reply.remaining() > 0 {
                    waiter.reply.give(Err(ClientError::Timeout {
                        waiting_to: "get a reply",
                        after: self.settings.timeout,
                    }));
                }
            }
        }
    }

    /// While there is no connection, requests queued longer than the
    /// timeout fail (their callers have stopped waiting by now).
    fn expire_waiters(&mut self) {
        let now = Instant::now();
        let limit = self.settings.timeout;
        for waiter in &mut self.waiters {
            if now.duration_since(waiter.since) >= limit {
                while waiter.reply.remaining() > 0 {
                    waiter.reply.give(Err(ClientError::Timeout {
                        waiting_to: "reconnect",
                        after: limit,
                    }));
                }
            }
        }
        self.waiters.retain(|w| w.reply.remaining() > 0);
    }
}
