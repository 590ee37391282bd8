//! The client's side of one GoPro connection, with no IO: the state machine
//! that every client (tokio, asyncio, C, blocking) drives.
//!
//! Requests are submitted and get a [`Position`], a number that grows by one
//! per request for the life of the client, across connections. The driver
//! writes [`to_write`](Pipeline::to_write), says how much went with
//! [`wrote`](Pipeline::wrote), appends what it reads to
//! [`read_buf`](Pipeline::read_buf) and takes [`Event`]s from
//! [`poll_event`](Pipeline::poll_event): the reply to a position, or the
//! server going away, or bytes that are not GoPro. Replies come in the
//! order of the requests (SPEC §4), so no id is needed on the wire.
//!
//! When a connection ends, [`end_connection`](Pipeline::end_connection)
//! says what became of each request still unanswered: after a GOAWAY none
//! of them was handled (SPEC §6); otherwise those fully written may have
//! been. A pipeline that keeps its requests' bytes (made with
//! `resend: true`) can then [`start_connection`](Pipeline::start_connection)
//! again and write the ones that are safe to send again, after a LOGIN if it
//! has credentials. The caller owns the clock: every call that depends on
//! time takes `now`.
//!
//! ```
//! use std::time::Instant;
//! use gopro::client::pipeline::{Event, Pipeline, PipelineConfig};
//! use gopro::{Command, Frame};
//!
//! let mut p = Pipeline::new(PipelineConfig::default());
//! p.start_connection(Instant::now());
//! let a = p.submit(Command::MESSAGE, b"a").unwrap();
//! let b = p.submit(Command::MESSAGE, b"b").unwrap();
//! let n = p.to_write().len();
//! p.wrote(n, Instant::now());
//! // The server's two replies arrive in one read.
//! for reply in [Frame::new(Command::MESSAGE, "A"), Frame::new(Command::MESSAGE, "B")] {
//!     p.read_buf().extend_from_slice(&reply.to_bytes());
//! }
//! assert!(matches!(p.poll_event(Instant::now()), Some(Event::Reply { position, .. }) if position == a));
//! assert!(matches!(p.poll_event(Instant::now()), Some(Event::Reply { position, .. }) if position == b));
//! assert!(p.poll_event(Instant::now()).is_none());
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::{encode_request, ClientError};
use crate::{Command, Decoder, Encoder, Frame, Header, DEFAULT_MAX_BODY, HEADER_LEN};

/// A request's number: the first request of a client is 0, the next 1, and
/// so on across reconnections.
pub type Position = u64;

/// What a [`Pipeline`] is made with.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    /// The largest body sent or accepted.
    pub max_body: usize,
    /// Keep every request's bytes until it is answered, so that it can be
    /// written again on a new connection.
    pub resend: bool,
    /// Credentials sent as LOGIN first on every connection.
    pub login: Option<Bytes>,
    /// Commands safe to send again after a connection was lost with them
    /// unanswered (HEARTBEAT always is).
    pub repeatable: CommandSet,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_body: DEFAULT_MAX_BODY,
            resend: false,
            login: None,
            repeatable: CommandSet::default(),
        }
    }
}

/// A set of commands; HEARTBEAT is in every set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandSet([u64; 4]);

impl Default for CommandSet {
    fn default() -> Self {
        CommandSet([1, 0, 0, 0]) // HEARTBEAT is command 0.
    }
}

impl CommandSet {
    /// Adds `command`.
    pub fn insert(&mut self, command: Command) {
        self.0[usize::from(command.0 >> 6)] |= 1 << (command.0 & 63);
    }

    /// Whether `command` is in the set.
    pub fn contains(&self, command: Command) -> bool {
        self.0[usize::from(command.0 >> 6)] & (1 << (command.0 & 63)) != 0
    }
}

/// What the server's bytes meant.
#[derive(Debug)]
pub enum Event {
    /// The reply to the request at `position` (an ERROR frame included,
    /// which the client turns into [`ClientError::Server`]).
    Reply {
        /// The request answered.
        position: Position,
        /// Its reply.
        frame: Frame,
    },
    /// The LOGIN sent first on this connection was accepted.
    LoggedIn,
    /// The LOGIN sent first on this connection was refused; the requests
    /// after it get the server's answers (`not authenticated`, most likely).
    LoginRefused(ClientError),
    /// The server is going away (GOAWAY): nothing more is written on this
    /// connection, and nothing unanswered was handled.
    GoAway {
        /// The server's reason, maybe empty.
        reason: String,
    },
    /// The server's bytes are not valid GoPro frames: the connection
    /// cannot be trusted any more.
    Protocol(crate::Error),
    /// The server sent a frame with no request waiting for it (nor a
    /// GOAWAY): the connection cannot be trusted any more.
    Unsolicited(Frame),
    /// The request at `position` will get no reply: its connection ended
    /// (see [`Pipeline::end_connection`]). Given in order of position, after
    /// the replies to the requests before it.
    Failed {
        /// The request.
        position: Position,
        /// Whether it may have been handled.
        fate: Fate,
    },
}

/// What became of a request still unanswered when its connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Fully written and not known to be unhandled: it may have been
    /// handled. Never written again.
    MayHaveBeenHandled,
    /// Not handled (not fully written, or the server said GOAWAY).
    NotHandled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Caller(Position),
    Login,
    KeepAlive,
    /// A request whose connection ended, after one kept to be written
    /// again: its failure waits for that one's reply, to keep the order.
    Failed(Position, Fate),
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    command: Command,
    /// The frame's length on the wire.
    len: usize,
    /// The frame's bytes, kept to be written again (`resend` only).
    bytes: Option<Bytes>,
}

/// One connection's requests and replies, with no IO. See the module docs.
#[derive(Debug)]
pub struct Pipeline {
    config: PipelineConfig,
    encoder: Encoder,
    decoder: Decoder,
    /// Bytes not yet written, in the order of `entries`' unwritten part.
    out: BytesMut,
    rbuf: BytesMut,
    /// Requests without a reply, oldest first.
    entries: VecDeque<Entry>,
    /// How many of `entries` (from the front) are fully written.
    written: usize,
    /// Bytes of the next entry already written.
    partial: usize,
    next: Position,
    gone_away: bool,
    /// Since when the oldest written request has waited for its reply.
    waiting_since: Instant,
    last_write: Instant,
    callers: usize,
    /// Bytes written since the pipeline was made.
    sent: u64,
}

impl Pipeline {
    /// A pipeline with no connection yet: requests may be submitted, and
    /// are written once [`start_connection`](Self::start_connection) is called.
    pub fn new(config: PipelineConfig) -> Pipeline {
        let now = Instant::now();
        let codec = crate::Codec::builder().max_body(config.max_body);
        Pipeline {
            encoder: codec.encoder(),
            decoder: codec.decoder(),
            config,
            out: BytesMut::new(),
            rbuf: BytesMut::new(),
            entries: VecDeque::new(),
            written: 0,
            partial: 0,
            next: 0,
            gone_away: false,
            waiting_since: now,
            last_write: now,
            callers: 0,
            sent: 0,
        }
    }

    /// The settings it was made with.
    pub fn config(&self) -> &PipelineConfig {
        &self.config
    }

    /// Queues a request; fails, queueing nothing, if the body is over the limit.
    pub fn submit(&mut self, command: Command, body: &[u8]) -> Result<Position, ClientError> {
        let position = self.next;
        self.push(Kind::Caller(position), command, body)?;
        self.next += 1;
        Ok(position)
    }

    /// Queues frames already encoded back to back, checked first (see
    /// [`check_encoded`]); returns their positions.
    pub fn submit_encoded(
        &mut self,
        wire: &Bytes,
    ) -> Result<std::ops::Range<Position>, ClientError> {
        check_encoded(self.encoder.max_body(), wire)?;
        let first = self.next;
        let mut at = 0;
        while let Some(head) = wire[at..].first_chunk::<HEADER_LEN>() {
            let header = Header::parse(head).map_err(ClientError::Protocol)?;
            let len = HEADER_LEN + header.length as usize;
            let bytes = self.config.resend.then(|| wire.slice(at..at + len));
            self.entries.push_back(Entry {
                kind: Kind::Caller(self.next),
                command: header.command,
                len,
                bytes,
            });
            self.next += 1;
            self.callers += 1;
            at += len;
        }
        self.out.extend_from_slice(wire);
        Ok(first..self.next)
    }

    fn push(&mut self, kind: Kind, command: Command, body: &[u8]) -> Result<(), ClientError> {
        let before = self.out.len();
        encode_request(&self.encoder, command, body, &mut self.out)?;
        let len = self.out.len() - before;
        let bytes = self
            .config
            .resend
            .then(|| Bytes::copy_from_slice(&self.out[before..]));
        self.entries.push_back(Entry {
            kind,
            command,
            len,
            bytes,
        });
        if matches!(kind, Kind::Caller(_)) {
            self.callers += 1;
        }
        Ok(())
    }

    /// Requests submitted and not yet answered (keep-alives and LOGIN not counted).
    pub fn in_flight(&self) -> usize {
        self.callers
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// Where [`bytes_written`](Self::bytes_written) will be once what is
    /// queued now is written.
    pub fn bytes_queued(&self) -> u64 {
        self.sent + self.out.len() as u64
    }

    /// Bytes written since the pipeline was made.
    pub fn bytes_written(&self) -> u64 {
        self.sent
    }

    /// The position the next request will get.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The bytes to write next; none after a GOAWAY.
    pub fn to_write(&self) -> &[u8] {
        if self.gone_away {
            return &[];
        }
        &self.out
    }

    /// `n` bytes of [`to_write`](Self::to_write) were written at `now`.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        if self.written == 0 {
            // Nothing was waiting for a reply: the wait starts now.
            self.waiting_since = now;
        }
        self.out.advance(n);
        self.sent += n as u64;
        self.last_write = now;
        let mut left = self.partial + n;
        while let Some(entry) = self.entries.get(self.written) {
            if left < entry.len {
                break;
            }
            left -= entry.len;
            self.written += 1;
        }
        self.partial = left;
    }

    /// Where bytes read from the connection go; room is reserved for what
    /// the frame being read still needs.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        let want = self
            .decoder
            .bytes_needed(&self.rbuf)
            .clamp(8 * 1024, 1 << 20);
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
        }
        &mut self.rbuf
    }

    /// The next event in the bytes read so far, `None` when more are needed.
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        loop {
            if let Some(&Entry {
                kind: Kind::Failed(position, fate),
                ..
            }) = self.entries.front()
            {
                self.entries.pop_front();
                self.written = self.written.saturating_sub(1);
                self.callers -= 1;
                return Some(Event::Failed { position, fate });
            }
            let frame = match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => return Some(Event::Protocol(e)),
            };
            if frame.command == Command::GOAWAY {
                self.gone_away = true;
                return Some(Event::GoAway {
                    reason: frame.body_text().into_owned(),
                });
            }
            if self.written == 0 {
                return Some(Event::Unsolicited(frame));
            }
            let entry = self.entries.pop_front()?;
            self.written -= 1;
            self.waiting_since = now;
            match entry.kind {
                Kind::Caller(position) => {
                    self.callers -= 1;
                    return Some(Event::Reply { position, frame });
                }
                Kind::Login => {
                    return Some(match super::login_result(frame) {
                        Ok(()) => Event::LoggedIn,
                        Err(e) => Event::LoginRefused(e),
                    })
                }
                // A keep-alive's reply is nobody's.
                Kind::KeepAlive => {}
                Kind::Failed(..) => unreachable!("failures are taken first"),
            }
        }
    }

    /// The server ended the stream: an error if it stopped inside a frame.
    pub fn end_of_stream(&self) -> Option<crate::Error> {
        self.decoder.end_of_stream(&self.rbuf)
    }

    /// When the connection is to be given up for want of a reply: `timeout`
    /// after the oldest written request started waiting (since it was
    /// written, or since the reply before it came).
    pub fn reply_deadline(&self, timeout: Duration) -> Option<Instant> {
        (self.written > 0 && !self.gone_away).then(|| self.waiting_since + timeout)
    }

    /// When a keep-alive HEARTBEAT is due: `interval` after the last write,
    /// while nothing is unanswered or queued.
    pub fn keep_alive_due(&self, interval: Duration) -> Option<Instant> {
        (self.entries.is_empty() && !self.gone_away).then(|| self.last_write + interval)
    }

    /// Queues a keep-alive HEARTBEAT, whose reply is nobody's.
    pub fn keep_alive(&mut self) {
        // An empty body is never over the limit.
        let _ = self.push(Kind::KeepAlive, Command::HEARTBEAT, b"");
    }

    /// The connection ended (GOAWAY, end of stream, reset, no reply in
    /// time, a protocol error). Returns, in order, the requests that will
    /// get no reply, with their [`Fate`], and forgets them. With `keep`
    /// (and `resend`), the requests that were not handled, or whose command
    /// is repeatable, are kept to be written again on the next connection;
    /// the failures after the first of those are not returned but given by
    /// [`poll_event`](Self::poll_event) in their turn.
    pub fn end_connection(&mut self, keep: bool) -> Vec<(Position, Fate)> {
        let keep = keep && self.config.resend;
        let mut ended = Vec::new();
        let mut kept: VecDeque<Entry> = VecDeque::new();
        for (i, mut entry) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            let (position, fate) = match entry.kind {
                Kind::Caller(position) if i < self.written && !self.gone_away => {
                    (position, Fate::MayHaveBeenHandled)
                }
                Kind::Caller(position) => (position, Fate::NotHandled),
                Kind::Failed(position, fate) => (position, fate),
                Kind::Login | Kind::KeepAlive => continue,
            };
            let repeat = matches!(entry.kind, Kind::Caller(_))
                && (fate == Fate::NotHandled || self.config.repeatable.contains(entry.command));
            if keep && repeat {
                kept.push_back(entry);
            } else if !kept.is_empty() {
                entry.kind = Kind::Failed(position, fate);
                entry.len = 0;
                entry.bytes = None;
                kept.push_back(entry);
            } else {
                self.callers -= 1;
                ended.push((position, fate));
            }
        }
        self.entries = kept;
        self.out.clear();
        self.rbuf.clear();
        self.written = 0;
        self.partial = 0;
        ended
    }

    /// A new connection is open at `now`: the LOGIN goes first, then every
    /// request kept, in order. Returns how many requests are written again.
    pub fn start_connection(&mut self, now: Instant) -> usize {
        self.decoder = crate::Codec::builder()
            .max_body(self.encoder.max_body())
            .decoder();
        self.gone_away = false;
        self.written = 0;
        self.partial = 0;
        self.waiting_since = now;
        self.last_write = now;
        self.out.clear();
        self.rbuf.clear();
        let again = self
            .entries
            .iter()
            .filter(|e| matches!(e.kind, Kind::Caller(_)))
            .count();
        let kept = std::mem::take(&mut self.entries);
        if let Some(login) = self.config.login.clone() {
            // Credentials within the limit were checked when the client was made.
            let _ = self.push(Kind::Login, Command::LOGIN, &login);
        }
        for entry in kept {
            if let Some(bytes) = &entry.bytes {
                self.out.extend_from_slice(bytes);
            }
            self.entries.push_back(entry);
        }
        again
    }
}

/// Checks frames encoded back to back (as [`Encoder::encode`] writes them)
/// for a client to send: whole frames of the current version within
/// `max_body`. Returns how many there are.
pub fn check_encoded(max_body: usize, wire: &[u8]) -> Result<usize, ClientError> {
    let mut checker = crate::Codec::builder()
        .max_body(max_body)
        .require_current_version()
        .decoder();
    let (mut at, mut frames) = (0, 0);
    while at < wire.len() {
        let start = at;
        let invalid = |source| ClientError::InvalidEncoded {
            index: frames,
            offset: start,
            source: Box::new(source),
        };
        match checker.decode_slice(wire, &mut at) {
            Ok(Some(_)) => frames += 1,
            Ok(None) => {
                let received = wire.len() - start;
                return Err(invalid(crate::Error::UnexpectedEof {
                    received: received as u64,
                    expected: (received + checker.bytes_needed(&wire[start..])) as u64,
                }));
            }
            Err(e) => return Err(invalid(e)),
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests;
