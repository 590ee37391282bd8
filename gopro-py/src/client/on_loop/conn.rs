//! One asyncio connection's state, driven on its event loop: the core's
//! sans-IO [`Pipeline`] over a non-blocking [`Socket`], with the asyncio
//! futures waiting for each position. Every call and every loop callback
//! takes the state's lock, does its work without waiting, and tells the
//! loop what to watch next; nothing here blocks the loop.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gopro::client::end::{clone_error, End};
use gopro::client::pipeline::{Event, Pipeline, Position};
use gopro::client::socket::Socket;
use gopro::client::{Backoff, ClientError, ClientSettings};
use gopro::Frame;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyList;
use tracing::info;

use crate::errors::client_err;

/// What a reply becomes for its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum As {
    Frame,
    Heartbeat,
    Login,
}

/// A caller's asyncio future. Held strongly, as a transport holds its
/// protocol's futures: asyncio keeps only weak references to tasks, and a
/// task awaiting a reply must not be collected meanwhile. Forgotten when
/// the client moves to another loop (the futures of a loop that has ended
/// are nobody's), so that an ended loop is not kept alive by them.
pub(super) struct Waiter(Option<Py<PyAny>>);

impl Waiter {
    pub(super) fn new(future: &Bound<'_, PyAny>) -> PyResult<Waiter> {
        Ok(Waiter(Some(future.clone().unbind())))
    }

    /// Whether its caller has stopped waiting (cancelled, or forgotten).
    fn is_done(&self, py: Python<'_>) -> bool {
        let Some(future) = &self.0 else {
            return true;
        };
        future
            .bind(py)
            .call_method0(intern!(py, "done"))
            .and_then(|d| d.is_truthy())
            .unwrap_or(true)
    }

    /// The future, no longer held.
    pub(super) fn take(&mut self) -> Option<Py<PyAny>> {
        self.0.take()
    }

    /// The future, if it is still held.
    pub(super) fn future(&self) -> Option<&Py<PyAny>> {
        self.0.as_ref()
    }

    /// Resolves the future, if its caller still waits.
    fn resolve(&self, py: Python<'_>, make: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>) {
        if self.is_done(py) {
            return;
        }
        let Some(future) = &self.0 else {
            return;
        };
        let future = future.bind(py);
        // A future whose loop has closed cannot take a result; nobody
        // awaits it any more.
        let _ = match make(py) {
            Ok(value) => future.call_method1(intern!(py, "set_result"), (value,)),
            Err(e) => future.call_method1(intern!(py, "set_exception"), (e.value(py),)),
        };
    }

    fn fail(&self, py: Python<'_>, e: ClientError) {
        self.resolve(py, |py| Err(client_err(py, e)));
    }
}

/// The replies of a `request_many`, gathered until the last (or the first
/// error) comes.
pub(super) struct Batch {
    frames: Vec<Frame>,
    left: usize,
    error: Option<ClientError>,
    waiter: Waiter,
}

impl Batch {
    pub(super) fn new(n: usize, waiter: Waiter) -> Batch {
        Batch {
            frames: Vec::with_capacity(n),
            left: n,
            error: None,
            waiter,
        }
    }

    /// Whether its caller has had its outcome (or stopped waiting).
    fn finished(&self, py: Python<'_>) -> bool {
        self.left == 0 || self.error.is_some() || self.waiter.is_done(py)
    }

    /// Takes one result; resolves the caller with the last, or the first error.
    fn add(&mut self, py: Python<'_>, result: Result<Frame, ClientError>) {
        self.left -= 1;
        if self.error.is_some() {
            return;
        }
        match result {
            Ok(frame) => self.frames.push(frame),
            Err(e) => self.error = Some(e),
        }
        if self.left == 0 || self.error.is_some() {
            let frames = std::mem::take(&mut self.frames);
            let error = self.error.as_ref().map(clone_error);
            self.waiter.resolve(py, |py| replies(py, frames, error));
        }
    }
}

/// A batch's replies as Python sees them: a list; or the error, carrying
/// the replies before it as `.replies`.
pub(super) fn replies(
    py: Python<'_>,
    frames: Vec<Frame>,
    error: Option<ClientError>,
) -> PyResult<Py<PyAny>> {
    let list = PyList::new(py, crate::codec::Frame::many_untracked(py, &frames)?)?;
    match error {
        None => Ok(list.into_any().unbind()),
        Some(e) => {
            let err = client_err(py, e);
            err.value(py).setattr("replies", list)?;
            Err(err)
        }
    }
}

/// A batch's state, unless it is held (it never is across a wait).
fn try_lock(batch: &Mutex<Batch>) -> Option<MutexGuard<'_, Batch>> {
    match batch.try_lock() {
        Ok(guard) => Some(guard),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Where the reply to a position goes.
pub(super) enum Dest {
    /// A call awaiting its own reply.
    Call(Waiter, As),
    /// A `send`: the reply goes to `recv`.
    Stream,
    /// One of the requests of a `request_many`.
    Batch(Arc<Mutex<Batch>>),
}

/// A `recv` or `recv_many` waiting for replies of `send`s.
pub(super) struct Recv {
    waiter: Waiter,
    /// Replies wanted; 0 for a single `recv`.
    many: usize,
    frames: Vec<Frame>,
    deadline: Instant,
}

/// A request waiting for room in the client.
struct Pending {
    wire: Bytes,
    dests: Vec<Dest>,
    since: Instant,
    /// Resolved when admitted (a `send` that waited), else `None`.
    admitted: Option<Waiter>,
}

impl Pending {
    /// Whether every caller of it has stopped waiting.
    fn abandoned(&self, py: Python<'_>) -> bool {
        if let Some(waiter) = &self.admitted {
            return waiter.is_done(py);
        }
        self.dests.iter().all(|dest| match dest {
            Dest::Call(waiter, _) => waiter.is_done(py),
            Dest::Batch(batch) => batch
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiter
                .is_done(py),
            Dest::Stream => false,
        })
    }
}

/// A client's counters (see `ClientStats`).
#[derive(Default, Clone, Copy)]
pub(super) struct Stats {
    pub(super) requests: u64,
    pub(super) replies: u64,
    pub(super) reconnects: u64,
    pub(super) resent: u64,
    pub(super) lost: u64,
}

/// The state of one asyncio connection.
pub(super) struct Conn {
    pub(super) settings: ClientSettings,
    pipeline: Pipeline,
    pub(super) socket: Option<Socket>,
    /// The index of the address connected to.
    index: usize,
    dests: VecDeque<(Position, Dest)>,
    /// Per-call deadlines of the calls waiting for their own replies.
    deadlines: VecDeque<(Instant, Position)>,
    /// The deadlines of `request_many` batches, each timed as one.
    batch_deadlines: VecDeque<(Instant, Arc<Mutex<Batch>>)>,
    stream: VecDeque<Result<Frame, ClientError>>,
    /// `send`s whose replies have not come yet.
    stream_expected: usize,
    recvs: VecDeque<Recv>,
    flushes: Vec<(u64, Waiter, Instant)>,
    pending: VecDeque<Pending>,
    /// The error of every call once the client has ended for good.
    pub(super) ended: Option<ClientError>,
    /// `close` was called: calls fail at once.
    pub(super) closed: bool,
    /// The `AsyncClient` is gone: close once nothing waits.
    pub(super) orphaned: bool,
    backoff: Option<Backoff>,
    /// A connection is being opened.
    pub(super) connecting: bool,
    answered: bool,
    pub(super) stats: Stats,
}

impl Conn {
    pub(super) fn new(settings: ClientSettings, socket: Socket, index: usize) -> Conn {
        let mut pipeline = Pipeline::new(settings.pipeline.clone());
        pipeline.start_connection(Instant::now());
        Conn {
            backoff: settings
                .reconnect
                .map(|(first, max)| Backoff::new(first, max)),
            settings,
            pipeline,
            socket: Some(socket),
            index,
            dests: VecDeque::new(),
            deadlines: VecDeque::new(),
            batch_deadlines: VecDeque::new(),
            stream: VecDeque::new(),
            stream_expected: 0,
            recvs: VecDeque::new(),
            flushes: Vec::new(),
            pending: VecDeque::new(),
            ended: None,
            closed: false,
            orphaned: false,
            connecting: false,
            answered: false,
            stats: Stats::default(),
        }
    }

    /// The error for a call made now, if the client has ended.
    pub(super) fn ended_error(&self) -> Option<ClientError> {
        self.ended.as_ref().map(clone_error)
    }

    fn addr(&self) -> &str {
        &self.settings.addrs[self.index]
    }

    /// Whether `requests` more, `bytes` long in all, fit now (a request
    /// alone in the client always fits).
    fn has_room(&self, requests: usize, bytes: usize) -> bool {
        let in_flight = self.pipeline.in_flight();
        let queued = self.pipeline.queued_bytes();
        self.pending.is_empty()
            && (in_flight == 0
                || (in_flight + requests <= self.settings.max_in_flight
                    && queued + bytes <= self.settings.max_queued_bytes))
    }

    /// Queues frames already encoded and checked, their replies going to
    /// `dests` (one per frame, in order); if the client is full they wait
    /// for room, and `admitted` is told when they go.
    pub(super) fn submit(
        &mut self,
        py: Python<'_>,
        wire: Bytes,
        dests: Vec<Dest>,
        admitted: Option<Waiter>,
        now: Instant,
    ) -> bool {
        if !self.has_room(dests.len(), wire.len()) {
            self.pending.push_back(Pending {
                wire,
                dests,
                since: now,
                admitted,
            });
            return false;
        }
        self.queue(py, wire, dests, now);
        if let Some(waiter) = admitted {
            waiter.resolve(py, |py| Ok(py.None()));
        }
        true
    }

    fn queue(&mut self, py: Python<'_>, wire: Bytes, dests: Vec<Dest>, now: Instant) {
        let range = match self.pipeline.submit_encoded(&wire) {
            Ok(range) => range,
            Err(e) => {
                // Checked when encoded: this is a bug, told to the callers.
                for dest in dests {
                    if !matches!(dest, Dest::Stream) {
                        self.give_to(py, dest, Err(clone_error(&e)));
                    }
                }
                return;
            }
        };
        let deadline = now + self.settings.timeout;
        if let Some(Dest::Batch(batch)) = dests.first() {
            // A batch times out as one.
            self.batch_deadlines
                .push_back((deadline, Arc::clone(batch)));
        }
        for (position, dest) in range.zip(dests) {
            let timed = matches!(dest, Dest::Call(..));
            self.track(position, dest, timed.then_some(deadline));
        }
    }

    /// Queues one request: encoded straight into the pipeline if it fits
    /// now (`true`), else to wait for room (`false`), `admitted` (asked for
    /// only then) told when it goes.
    pub(super) fn push_one(
        &mut self,
        py: Python<'_>,
        command: gopro::Command,
        body: &[u8],
        dest: Dest,
        admitted: impl FnOnce() -> PyResult<Option<Waiter>>,
    ) -> PyResult<bool> {
        let now = Instant::now();
        if self.has_room(1, gopro::HEADER_LEN + body.len()) {
            let position = self
                .pipeline
                .submit(command, body)
                .map_err(|e| client_err(py, e))?;
            let timed = matches!(dest, Dest::Call(..));
            self.track(position, dest, timed.then(|| now + self.settings.timeout));
            return Ok(true);
        }
        let admitted = admitted()?;
        let mut wire = bytes::BytesMut::new();
        let encoder = gopro::Encoder::with_max_body(self.settings.pipeline.max_body);
        gopro::client::encode_request(&encoder, command, body, &mut wire)
            .map_err(|e| client_err(py, e))?;
        self.submit(py, wire.freeze(), vec![dest], admitted, now);
        Ok(false)
    }

    /// Where the reply to `position` goes, and until when its caller waits.
    fn track(&mut self, position: Position, dest: Dest, deadline: Option<Instant>) {
        self.stats.requests += 1;
        if let Some(deadline) = deadline {
            self.deadlines.push_back((deadline, position));
        }
        if matches!(dest, Dest::Stream) {
            self.stream_expected += 1;
        }
        self.dests.push_back((position, dest));
    }

    /// The reply a `recv` would get at once, if one is there and no other
    /// `recv` waits before it.
    pub(super) fn try_recv(&mut self) -> Option<Result<Frame, ClientError>> {
        if self.recvs.is_empty() {
            self.stream.pop_front()
        } else {
            None
        }
    }

    /// Requests that waited for room go, in order, while there is room.
    fn admit(&mut self, py: Python<'_>) {
        let now = Instant::now();
        while let Some(first) = self.pending.front() {
            let in_flight = self.pipeline.in_flight();
            let fits = in_flight == 0
                || (in_flight + first.dests.len() <= self.settings.max_in_flight
                    && self.pipeline.queued_bytes() + first.wire.len()
                        <= self.settings.max_queued_bytes);
            if !fits {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            if p.abandoned(py) {
                // Cancelled while it waited: never sent.
                continue;
            }
            self.queue(py, p.wire, p.dests, now);
            if let Some(waiter) = p.admitted {
                waiter.resolve(py, |py| Ok(py.None()));
            }
        }
    }

    /// A `recv` of one reply (`many == 0`) or of `many`; `Err` for at once.
    pub(super) fn recv(
        &mut self,
        py: Python<'_>,
        many: usize,
        waiter: Waiter,
    ) -> Result<(), (ClientError, Vec<Frame>)> {
        self.drop_cancelled_recvs(py);
        let wanted = many.max(1);
        let available = self.stream.len() + self.stream_expected;
        let waiting: usize = self
            .recvs
            .iter()
            .map(|r| r.many.max(1) - r.frames.len())
            .sum();
        if wanted > available.saturating_sub(waiting) {
            if let Some(e) = self.ended_error().filter(|_| available == 0) {
                return Err((e, Vec::new()));
            }
            return Err((
                ClientError::NothingInFlight {
                    wanted,
                    in_flight: available.saturating_sub(waiting),
                },
                Vec::new(),
            ));
        }
        self.recvs.push_back(Recv {
            waiter,
            many,
            frames: Vec::new(),
            deadline: Instant::now() + self.settings.timeout,
        });
        self.feed_recvs(py);
        Ok(())
    }

    /// `recv`s whose callers stopped waiting go; replies a cancelled
    /// `recv_many` had taken go back for the next `recv`.
    fn drop_cancelled_recvs(&mut self, py: Python<'_>) {
        if !self.recvs.iter().any(|r| r.waiter.is_done(py)) {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.recvs.len());
        for recv in std::mem::take(&mut self.recvs) {
            if !recv.waiter.is_done(py) {
                kept.push_back(recv);
                continue;
            }
            for frame in recv.frames.into_iter().rev() {
                self.stream.push_front(Ok(frame));
            }
        }
        self.recvs = kept;
    }

    /// Hands the replies that came to the `recv`s waiting, in order.
    fn feed_recvs(&mut self, py: Python<'_>) {
        while let Some(recv) = self.recvs.front_mut() {
            if recv.waiter.is_done(py) {
                // Cancelled: what it took goes back for the next.
                let frames = std::mem::take(&mut recv.frames);
                for frame in frames.into_iter().rev() {
                    self.stream.push_front(Ok(frame));
                }
                self.recvs.pop_front();
                continue;
            }
            let Some(result) = self.stream.pop_front() else {
                return;
            };
            match result {
                Ok(frame) if recv.many == 0 => {
                    recv.waiter.resolve(py, |py| {
                        Ok(crate::codec::Frame::new_untracked(py, &frame)?.into_any())
                    });
                }
                Err(e) if recv.many == 0 => recv.waiter.fail(py, e),
                Ok(frame) => {
                    recv.frames.push(frame);
                    if recv.frames.len() < recv.many {
                        continue;
                    }
                    let frames = std::mem::take(&mut recv.frames);
                    recv.waiter.resolve(py, |py| replies(py, frames, None));
                }
                Err(e) => {
                    let frames = std::mem::take(&mut recv.frames);
                    recv.waiter.resolve(py, |py| replies(py, frames, Some(e)));
                }
            }
            self.recvs.pop_front();
        }
    }

    /// A `flush`: `None` if nothing is left to write.
    pub(super) fn flush(&mut self, waiter: Waiter) -> Option<Waiter> {
        let tls_waits = self.socket.as_ref().is_some_and(Socket::wants_write);
        if self.pipeline.queued_bytes() == 0 && !tls_waits && self.pending.is_empty() {
            return Some(waiter);
        }
        let mark = self.pipeline.bytes_queued()
            + self
                .pending
                .iter()
                .map(|p| p.wire.len() as u64)
                .sum::<u64>();
        self.flushes
            .push((mark, waiter, Instant::now() + self.settings.timeout));
        None
    }

    /// Hands a result to where the reply to `position` goes.
    fn give(&mut self, py: Python<'_>, position: Position, result: Result<Frame, ClientError>) {
        while let Some(&(front, _)) = self.dests.front() {
            if front > position {
                return;
            }
            let Some((front, dest)) = self.dests.pop_front() else {
                return;
            };
            if front == position {
                self.give_to(py, dest, result);
                return;
            }
        }
    }

    fn give_to(&mut self, py: Python<'_>, dest: Dest, result: Result<Frame, ClientError>) {
        match dest {
            Dest::Call(waiter, kind) => waiter.resolve(py, |py| {
                let value = result.map_err(|e| client_err(py, e))?;
                let out = match kind {
                    As::Frame => gopro::client::reply_result(value)
                        .map(|f| crate::codec::Frame::new_untracked(py, &f).map(|f| f.into_any())),
                    As::Heartbeat => gopro::client::heartbeat_result(value).map(|()| Ok(py.None())),
                    As::Login => gopro::client::login_result(value).map(|()| Ok(py.None())),
                };
                out.map_err(|e| client_err(py, e))?
            }),
            Dest::Stream => {
                self.stream_expected -= 1;
                self.stream
                    .push_back(result.and_then(gopro::client::reply_result));
                self.feed_recvs(py);
            }
            Dest::Batch(batch) => {
                let result = result.and_then(gopro::client::reply_result);
                batch
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(py, result);
            }
        }
    }

    /// Writes what the socket takes now; the connection's end if it failed.
    pub(super) fn write_now(&mut self, py: Python<'_>) -> Option<End> {
        let socket = self.socket.as_mut()?;
        loop {
            let out = self.pipeline.to_write();
            if out.is_empty() {
                break;
            }
            match socket.write(out) {
                // Nothing taken: the same as no room.
                Ok(0) => break,
                Ok(n) => self.pipeline.wrote(n, Instant::now()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some(End::from_io("write", e)),
            }
        }
        if let Err(e) = socket.flush() {
            return Some(End::from_io("write", e));
        }
        if !self.flushes.is_empty() {
            let written = self.pipeline.bytes_written();
            let tls_waits = socket.wants_write();
            let mut i = 0;
            while i < self.flushes.len() {
                if self.flushes[i].0 <= written && !tls_waits {
                    let (_, waiter, _) = self.flushes.swap_remove(i);
                    waiter.resolve(py, |py| Ok(py.None()));
                } else {
                    i += 1;
                }
            }
        }
        None
    }

    /// Reads what the socket has now and hands out what it brought; the
    /// connection's end if it ended.
    pub(super) fn read_now(&mut self, py: Python<'_>) -> Option<End> {
        loop {
            let socket = self.socket.as_mut()?;
            let buf = self.pipeline.read_buf();
            let room = buf.capacity() - buf.len();
            match socket.read_into(buf) {
                Ok(0) => {
                    if let Some(end) = self.events(py) {
                        return Some(end);
                    }
                    return Some(End::end_of_stream(self.pipeline.end_of_stream()));
                }
                Ok(n) => {
                    if let Some(end) = self.events(py) {
                        return Some(end);
                    }
                    if n < room {
                        // The socket held no more: no system call to learn it.
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Some(End::from_io("read", e)),
            }
        }
        self.admit(py);
        self.close_if_orphaned_and_idle()
    }

    fn close_if_orphaned_and_idle(&self) -> Option<End> {
        (self.orphaned && self.is_idle()).then_some(End::Closed)
    }

    /// Takes what the server's bytes mean; the connection's end if it ended.
    fn events(&mut self, py: Python<'_>) -> Option<End> {
        let now = Instant::now();
        while let Some(event) = self.pipeline.poll_event(now) {
            match event {
                Event::Reply { position, frame } => {
                    self.answered = true;
                    self.stats.replies += 1;
                    self.give(py, position, Ok(frame));
                }
                Event::Failed { position, fate } => {
                    let error = End::failed_in_turn(fate);
                    self.count(&error);
                    self.give(py, position, Err(error));
                }
                // LOGIN is sent by `Socket::open`, before the pipeline.
                Event::LoggedIn | Event::LoginRefused(_) => {}
                Event::GoAway { reason } => return Some(End::GoAway(reason)),
                Event::Protocol(e) => return Some(End::Protocol(e)),
                Event::Unsolicited(frame) => return Some(End::unsolicited(&frame)),
            }
        }
        None
    }

    fn count(&mut self, error: &ClientError) {
        if error.may_have_been_handled() {
            self.stats.lost += 1;
        }
    }

    /// The connection ended: its requests get their outcomes, and the
    /// client reconnects (`true`) or ends for good.
    pub(super) fn end(&mut self, py: Python<'_>, end: End) -> bool {
        let end = end.after(self.answered);
        let addr = self.addr().to_string();
        end.log(&addr);
        if let Some(socket) = self.socket.take() {
            socket.close();
        }
        let reconnect = self.backoff.is_some() && !matches!(end, End::Closed) && !self.orphaned;
        if !reconnect {
            // Ended for good: said before any caller hears of it.
            self.ended = Some(end.final_error(&addr));
            // Requests waiting for room count among those left unanswered.
            for p in std::mem::take(&mut self.pending) {
                self.queue(py, p.wire, p.dests, Instant::now());
                if let Some(waiter) = p.admitted {
                    waiter.fail(py, end.final_error(&addr));
                }
            }
        }
        let failed = self.pipeline.end_connection(reconnect);
        let unanswered = failed.len();
        for (position, fate) in failed {
            let error = end.failure(fate, &addr, unanswered);
            self.count(&error);
            self.give(py, position, Err(error));
        }
        for (_, waiter, _) in self.flushes.drain(..) {
            waiter.fail(py, end.final_error(&addr));
        }
        if !reconnect {
            self.finish(py);
        } else {
            // Room made by the requests that failed: those waiting for it
            // go with the next connection.
            self.admit(py);
        }
        reconnect
    }

    /// Every call still waiting fails with the client's end.
    fn finish(&mut self, py: Python<'_>) {
        let error = self
            .ended
            .get_or_insert(ClientError::Closed { unanswered: 0 });
        let error = clone_error(error);
        for (_, dest) in std::mem::take(&mut self.dests) {
            self.give_to(py, dest, Err(clone_error(&error)));
        }
        for recv in std::mem::take(&mut self.recvs) {
            if recv.many == 0 {
                recv.waiter.fail(py, clone_error(&error));
            } else {
                recv.waiter
                    .resolve(py, |py| replies(py, recv.frames, Some(clone_error(&error))));
            }
        }
        self.deadlines.clear();
        self.batch_deadlines.clear();
        self.stream_expected = 0;
    }

    /// An orphaned client without a connection whose callers have all
    /// stopped waiting ends, instead of trying to connect for nobody.
    pub(super) fn give_up_if_orphaned(&mut self, py: Python<'_>) -> bool {
        if !self.orphaned || self.socket.is_some() || self.ended.is_some() {
            return false;
        }
        let nobody = self.dests.iter().all(|(_, dest)| match dest {
            Dest::Call(waiter, _) => waiter.is_done(py),
            Dest::Batch(batch) => batch.lock().unwrap_or_else(|e| e.into_inner()).finished(py),
            // Nobody can `recv` from a client that is gone.
            Dest::Stream => true,
        }) && self.pending.iter().all(|p| p.abandoned(py));
        if nobody {
            self.ended = Some(ClientError::Closed { unanswered: 0 });
            self.pending.clear();
            self.pipeline.end_connection(false);
            self.finish(py);
        }
        nobody
    }

    /// Calls `f` on every caller's future the state holds, each exactly
    /// once (a batch's future once, however many of its requests wait):
    /// the garbage collector counts references so.
    pub(super) fn each_waiter(&mut self, f: &mut dyn FnMut(&mut Waiter)) {
        let mut batches = HashSet::new();
        let mut batch = |b: &Arc<Mutex<Batch>>, f: &mut dyn FnMut(&mut Waiter)| {
            // Not waited for: held only during a resolve, on this thread.
            if batches.insert(Arc::as_ptr(b)) {
                if let Some(mut b) = try_lock(b) {
                    f(&mut b.waiter);
                }
            }
        };
        let dests = self
            .dests
            .iter_mut()
            .map(|(_, dest)| dest)
            .chain(self.pending.iter_mut().flat_map(|p| p.dests.iter_mut()));
        for dest in dests {
            match dest {
                Dest::Call(waiter, _) => f(waiter),
                Dest::Batch(b) => batch(b, f),
                Dest::Stream => {}
            }
        }
        for (_, b) in &self.batch_deadlines {
            batch(b, f);
        }
        for waiter in self.pending.iter_mut().filter_map(|p| p.admitted.as_mut()) {
            f(waiter);
        }
        for recv in &mut self.recvs {
            f(&mut recv.waiter);
        }
        for (_, waiter, _) in &mut self.flushes {
            f(waiter);
        }
    }

    /// Forgets every caller's future: the loop they belong to has ended.
    /// Their requests keep their places; the replies are discarded.
    pub(super) fn forget_waiters(&mut self) {
        self.each_waiter(&mut |waiter| drop(waiter.take()));
        // Replies taken by a `recv_many` of that loop go back.
        for recv in std::mem::take(&mut self.recvs).into_iter().rev() {
            for frame in recv.frames.into_iter().rev() {
                self.stream.push_front(Ok(frame));
            }
        }
        self.flushes.clear();
    }

    /// The wait before the next attempt to connect.
    pub(super) fn next_delay(&mut self) -> Duration {
        self.backoff
            .as_mut()
            .map_or(Duration::ZERO, Backoff::next_delay)
    }

    /// A new connection is open.
    pub(super) fn connected(&mut self, socket: Socket, index: usize) {
        if let Some(backoff) = &mut self.backoff {
            backoff.reset();
        }
        self.socket = Some(socket);
        self.index = index;
        self.answered = false;
        self.stats.reconnects += 1;
        info!(addr = %self.addr(), "gopro client: reconnected");
        let again = self.pipeline.start_connection(Instant::now());
        if again > 0 {
            self.stats.resent += again as u64;
            info!(
                requests = again,
                "gopro client: sending again the requests left unanswered"
            );
        }
    }

    /// Where the next attempt starts: the address after the last one.
    pub(super) fn next_index(&self) -> usize {
        self.index + 1
    }

    /// Calls whose time is up fail; the connection's end if the server
    /// stopped answering.
    pub(super) fn on_timer(&mut self, py: Python<'_>) -> Option<End> {
        let now = Instant::now();
        let timeout = self.settings.timeout;
        let waiting_to = if self.socket.is_some() {
            "get a reply"
        } else {
            "reconnect"
        };
        while let Some(&(at, position)) = self.deadlines.front() {
            if at > now {
                break;
            }
            self.deadlines.pop_front();
            let at = self.dests.partition_point(|(p, _)| *p < position);
            match self.dests.get(at) {
                Some((p, Dest::Call(waiter, _))) if *p == position => {
                    waiter.fail(
                        py,
                        ClientError::Timeout {
                            waiting_to,
                            after: timeout,
                        },
                    );
                }
                _ => {}
            }
        }
        while let Some((at, batch)) = self.batch_deadlines.front() {
            if *at > now {
                break;
            }
            let mut batch = batch.lock().unwrap_or_else(|e| e.into_inner());
            if batch.error.is_none() && batch.left > 0 {
                let error = ClientError::Timeout {
                    waiting_to,
                    after: timeout,
                };
                batch.error = Some(clone_error(&error));
                let frames = std::mem::take(&mut batch.frames);
                batch
                    .waiter
                    .resolve(py, |py| replies(py, frames, Some(error)));
            }
            drop(batch);
            self.batch_deadlines.pop_front();
        }
        let mut timed_out_recv = false;
        while self.recvs.front().is_some_and(|r| r.deadline <= now) {
            if let Some(recv) = self.recvs.pop_front() {
                let error = ClientError::Timeout {
                    waiting_to: "get a reply",
                    after: timeout,
                };
                if recv.many == 0 {
                    recv.waiter.fail(py, error);
                } else {
                    // Replies taken go back, for the next `recv`.
                    for frame in recv.frames.into_iter().rev() {
                        self.stream.push_front(Ok(frame));
                    }
                    recv.waiter.fail(py, error);
                    timed_out_recv = true;
                }
            }
        }
        if timed_out_recv {
            self.feed_recvs(py);
        }
        while self
            .pending
            .front()
            .is_some_and(|p| p.since + timeout <= now)
        {
            if let Some(p) = self.pending.pop_front() {
                let error = ClientError::Timeout {
                    waiting_to: "get room in the client",
                    after: timeout,
                };
                if let Some(waiter) = &p.admitted {
                    waiter.fail(py, clone_error(&error));
                }
                for dest in p.dests {
                    if !matches!(dest, Dest::Stream) {
                        self.give_to(py, dest, Err(clone_error(&error)));
                    }
                }
            }
        }
        self.admit(py);
        let mut i = 0;
        while i < self.flushes.len() {
            if self.flushes[i].2 <= now {
                let (_, waiter, _) = self.flushes.swap_remove(i);
                waiter.fail(
                    py,
                    ClientError::Timeout {
                        waiting_to: "write the requests",
                        after: timeout,
                    },
                );
            } else {
                i += 1;
            }
        }
        if self.socket.is_some() {
            let response = self.settings.response_timeout();
            if self
                .pipeline
                .reply_deadline(response)
                .is_some_and(|at| at <= now)
            {
                return Some(End::Lost(format!(
                    "no reply from the server for {response:?}"
                )));
            }
            if let Some(interval) = self.settings.keep_alive {
                if self
                    .pipeline
                    .keep_alive_due(interval)
                    .is_some_and(|due| due <= now)
                {
                    self.pipeline.keep_alive();
                }
            }
        }
        None
    }

    /// Whether bytes wait for room in the socket (after a write was
    /// tried): the request bytes, or TLS records.
    pub(super) fn wants_write(&self) -> bool {
        self.socket
            .as_ref()
            .is_some_and(|socket| !self.pipeline.to_write().is_empty() || socket.wants_write())
    }

    /// Whether bytes wait to be written.
    pub(super) fn has_output(&self) -> bool {
        self.socket.is_some() && !self.pipeline.to_write().is_empty()
    }

    /// The earliest time the timer must look again.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let mut at = [
            self.deadlines.front().map(|d| d.0),
            self.batch_deadlines.front().map(|d| d.0),
            self.recvs.front().map(|r| r.deadline),
            self.pending
                .front()
                .map(|p| p.since + self.settings.timeout),
            self.flushes.iter().map(|f| f.2).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        if self.socket.is_some() {
            let reply = self
                .pipeline
                .reply_deadline(self.settings.response_timeout());
            let keep_alive = self
                .settings
                .keep_alive
                .and_then(|i| self.pipeline.keep_alive_due(i));
            at = [at, reply, keep_alive].into_iter().flatten().min();
        }
        at
    }

    /// Calls answered drop their deadlines (positions before the oldest
    /// waiting are answered).
    pub(super) fn prune_deadlines(&mut self, py: Python<'_>) {
        while self
            .batch_deadlines
            .front()
            .is_some_and(|(_, b)| b.lock().unwrap_or_else(|e| e.into_inner()).finished(py))
        {
            self.batch_deadlines.pop_front();
        }
        let oldest = self.dests.front().map(|d| d.0);
        while let Some(&(_, position)) = self.deadlines.front() {
            if oldest.is_some_and(|o| position >= o) {
                break;
            }
            self.deadlines.pop_front();
        }
    }

    /// Nothing waits for a reply or for room.
    pub(super) fn is_idle(&self) -> bool {
        self.dests.is_empty() && self.pending.is_empty()
    }
}
