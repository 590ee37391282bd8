//! The tokio client.
//!
//! ```no_run
//! use gopro::client::Client;
//! use gopro::Command;
//!
//! # async fn run() -> Result<(), gopro::client::ClientError> {
//! let client = Client::connect("127.0.0.1:8888").await?;
//! client.heartbeat().await?;
//! let reply = client.request(Command::MESSAGE, "Hello TCP World!").await?;
//! assert_eq!(reply.body, "Server says: Hello TCP World!");
//!
//! // Pipelining: send many, then read the replies in order.
//! for i in 0..100 {
//!     client.send(Command::MESSAGE, format!("msg-{i}")).await?;
//! }
//! for _ in 0..100 {
//!     let reply = client.recv().await?;
//! }
//! # Ok(())
//! # }
//! ```

mod error;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};

pub use error::ClientError;

use crate::settings::{self, ClientSetting, ConfigError};
use crate::{
    Codec, Command, Decoder, Encoder, Frame, Header, DEFAULT_MAX_BODY, HEADER_LEN, VERSION,
};

/// The default time allowed to connect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time allowed for each call (writing the request and reading its reply).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Buffered requests are written out once this many bytes are waiting.
const SEND_BUFFER: usize = 64 * 1024;
const MIN_READ: usize = 8 * 1024;

/// Configures a [`Client`].
///
/// | setting | default |
/// |---|---|
/// | [`connect_timeout`](Self::connect_timeout) | 10 s |
/// | [`timeout`](Self::timeout) | 30 s for each call |
/// | [`max_body`](Self::max_body) | 10 MiB, for requests and replies |
/// | [`keep_alive`](Self::keep_alive) | off |
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    connect_timeout: Duration,
    timeout: Duration,
    max_body: usize,
    keep_alive: Option<Duration>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        ClientBuilder {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
            keep_alive: None,
        }
    }
}

impl ClientBuilder {
    /// Time allowed to connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for each call. A call that runs out of time closes the
    /// connection, since a late reply would be taken for the next one's.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest body sent or accepted.
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Sends a HEARTBEAT whenever the connection has been quiet for
    /// `interval`; choose it below the server's read timeout. Needs a tokio
    /// runtime that keeps running while the client is idle.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// Checks one setting against its rule (see [`crate::settings`]).
    pub fn check(&self, setting: ClientSetting) -> Result<(), ConfigError> {
        match setting {
            ClientSetting::ConnectTimeout => {
                settings::positive(setting.name(), self.connect_timeout)
            }
            ClientSetting::Timeout => settings::positive(setting.name(), self.timeout),
            ClientSetting::KeepAlive => self.keep_alive.map_or(Ok(()), |interval| {
                settings::positive(setting.name(), interval)
            }),
            _ => Ok(()),
        }
    }

    /// Checks every setting: the rules [`connect`](Self::connect) applies.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ClientSetting::ALL.iter().try_for_each(|&s| self.check(s))
    }

    /// Connects to `addr` (`host:port`). Fails with [`ClientError::Config`]
    /// on an invalid setting.
    pub async fn connect(self, addr: &str) -> Result<Client, ClientError> {
        self.validate()?;
        let stream = match timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => {
                return Err(ClientError::Timeout {
                    waiting_to: "connect",
                    after: self.connect_timeout,
                })
            }
        };
        stream.set_nodelay(true)?;
        let codec = Codec::builder().max_body(self.max_body);
        let conn = Arc::new(Mutex::new(Conn {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            decoder: codec.decoder(),
            encoder: codec.encoder(),
            in_flight: 0,
            keepalive_pending: 0,
            state: State::Open,
            eof: false,
            last_sent: Instant::now(),
        }));
        let keep_alive = self
            .keep_alive
            .map(|interval| tokio::spawn(keep_alive(Arc::downgrade(&conn), interval)));
        Ok(Client {
            conn,
            timeout: self.timeout,
            keep_alive,
        })
    }
}

/// A connection to a GoPro server. Calls take `&self` and are serialized:
/// a request's reply is never handed to another caller.
pub struct Client {
    conn: Arc<Mutex<Conn>>,
    timeout: Duration,
    keep_alive: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = &self.keep_alive {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects with the defaults.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        ClientBuilder::default().connect(addr).await
    }

    /// A builder for other settings.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The time allowed for each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends one request and waits for its reply. An ERROR reply is
    /// [`ClientError::Server`], a GOAWAY [`ClientError::GoAway`].
    pub async fn request(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
    ) -> Result<Frame, ClientError> {
        let command = command.into();
        let body = body.into();
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        conn.queue(command, &body)?;
        let result = timeout(self.timeout, conn.flush_and_recv()).await;
        conn.settle(result, self.timeout)
    }

    /// A HEARTBEAT round trip; the reply must echo it.
    pub async fn heartbeat(&self) -> Result<(), ClientError> {
        let reply = self.request(Command::HEARTBEAT, Bytes::new()).await?;
        if reply.command != Command::HEARTBEAT || !reply.body.is_empty() {
            return Err(unexpected(Command::HEARTBEAT, reply));
        }
        Ok(())
    }

    /// Logs in; the server must answer LOGIN `OK`.
    pub async fn login(&self, credentials: impl Into<Bytes>) -> Result<(), ClientError> {
        let reply = self.request(Command::LOGIN, credentials).await?;
        if reply.command != Command::LOGIN || reply.body != "OK" {
            return Err(unexpected(Command::LOGIN, reply));
        }
        Ok(())
    }

    /// Queues a request without waiting for its reply (pipelining). Requests
    /// are written when 64 KiB are waiting, on [`flush`](Self::flush), and
    /// before [`recv`](Self::recv) waits.
    pub async fn send(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let body = body.into();
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        conn.queue(command.into(), &body)?;
        if conn.wbuf.len() >= SEND_BUFFER {
            let result = timeout(self.timeout, conn.flush()).await;
            conn.settle(result.map(|r| r.map_err(Into::into)), self.timeout)?;
        }
        Ok(())
    }

    /// [`send`](Self::send) if it is done at once: no other call is using
    /// the connection, and the request, queued, leaves less than 64 KiB
    /// waiting to be written. `None` if it would have to wait: then nothing
    /// was queued. For callers that pay for a future (a language binding).
    pub fn try_send(
        &self,
        command: impl Into<Command>,
        body: &[u8],
    ) -> Option<Result<(), ClientError>> {
        let mut conn = self.conn.try_lock().ok()?;
        if let Err(e) = conn.check_open() {
            return Some(Err(e));
        }
        if conn.wbuf.len() + HEADER_LEN + body.len() >= SEND_BUFFER {
            return None;
        }
        Some(conn.queue(command.into(), body))
    }

    /// [`recv`](Self::recv) if it is done at once: no other call is using
    /// the connection, nothing is waiting to be written, and the reply has
    /// already been received. `None` otherwise: then [`recv`](Self::recv)
    /// does the rest.
    pub fn try_recv(&self) -> Option<Result<Frame, ClientError>> {
        let mut conn = self.conn.try_lock().ok()?;
        if conn.check_open().is_err() || conn.in_flight == 0 {
            return None;
        }
        let result = conn.reply_now()?;
        Some(conn.settle_now(result))
    }

    /// Writes every queued request.
    pub async fn flush(&self) -> Result<(), ClientError> {
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        let result = timeout(self.timeout, conn.flush()).await;
        conn.settle(result.map(|r| r.map_err(Into::into)), self.timeout)
    }

    /// The reply to the oldest request not yet answered.
    pub async fn recv(&self) -> Result<Frame, ClientError> {
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        if conn.in_flight == 0 {
            return Err(ClientError::NothingInFlight {
                wanted: 1,
                in_flight: 0,
            });
        }
        // A reply to be had at once is taken without arming a timer.
        let result = match conn.reply_now() {
            Some(result) => Ok(result),
            None => timeout(self.timeout, conn.flush_and_recv()).await,
        };
        conn.settle(result, self.timeout)
    }

    /// Queues many requests and writes them all: [`send`](Self::send) and
    /// [`flush`](Self::flush) for a batch, taking the connection once.
    pub async fn send_many<C, B>(
        &self,
        requests: impl IntoIterator<Item = (C, B)>,
    ) -> Result<(), ClientError>
    where
        C: Into<Command>,
        B: Into<Bytes>,
    {
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        for (command, body) in requests {
            conn.queue(command.into(), &body.into())?;
            if conn.wbuf.len() >= SEND_BUFFER {
                let result = timeout(self.timeout, conn.flush()).await;
                conn.settle(result.map(|r| r.map_err(Into::into)), self.timeout)?;
            }
        }
        let result = timeout(self.timeout, conn.flush()).await;
        conn.settle(result.map(|r| r.map_err(Into::into)), self.timeout)
    }

    /// The replies to the `n` oldest requests in flight, appended to `out`
    /// in order, each within the timeout: [`recv`](Self::recv) for a batch,
    /// taking the connection once. Stops at the first error (an ERROR or
    /// GOAWAY reply among them), with the replies before it in `out`.
    pub async fn recv_many(&self, n: usize, out: &mut Vec<Frame>) -> Result<(), ClientError> {
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        if n > conn.in_flight {
            return Err(ClientError::NothingInFlight {
                wanted: n,
                in_flight: conn.in_flight,
            });
        }
        out.reserve(n);
        conn.flush_or_settle(self.timeout).await?;
        for _ in 0..n {
            // Replies already received are taken without arming a timer.
            let result = match conn.buffered_reply() {
                Some(result) => Ok(result),
                None => timeout(self.timeout, conn.recv_reply()).await,
            };
            match result {
                Ok(Ok(frame)) => out.push(frame),
                failed => return conn.settle(failed, self.timeout).map(drop),
            }
        }
        Ok(())
    }

    /// Queues frames already encoded back to back (as
    /// [`Encoder::encode`](crate::Encoder::encode) writes them) and writes
    /// them all; returns how many there were. The bytes are checked frame
    /// by frame first: anything but whole frames within the body limit is
    /// refused and nothing is sent.
    pub async fn send_encoded(&self, wire: &[u8]) -> Result<usize, ClientError> {
        let mut conn = self.conn.lock().await;
        conn.check_open()?;
        let mut checker = crate::Codec::builder()
            .max_body(conn.encoder.max_body())
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
        conn.wbuf.extend_from_slice(wire);
        conn.in_flight += frames;
        conn.flush_or_settle(self.timeout).await?;
        Ok(frames)
    }

    /// Requests sent (or queued) that have no reply yet.
    pub async fn in_flight(&self) -> usize {
        self.conn.lock().await.in_flight
    }
}

/// Checks a request body of `length` bytes against a client's `max_body`:
/// the check every send makes first. A binding that must report a bad
/// argument before anything else (a closed client, a wrong thread) calls it
/// on the arguments alone.
#[inline]
pub fn check_body(max_body: usize, length: usize) -> Result<(), ClientError> {
    Encoder::with_max_body(max_body)
        .check_len(length)
        .map_err(request_error)
}

/// Appends one request to `dst` as a client sends it, checked against the
/// encoder's limit; nothing is written on error. For a binding that encodes
/// a batch before handing it to [`Client::send_encoded`].
#[inline]
pub fn encode_request(
    encoder: &Encoder,
    command: Command,
    body: &[u8],
    dst: &mut BytesMut,
) -> Result<(), ClientError> {
    dst.reserve(HEADER_LEN + body.len());
    encoder
        .encode_parts(VERSION, command, &[body], dst)
        .map(drop)
        .map_err(request_error)
}

/// A codec error about a request's own body, as a client error.
fn request_error(e: crate::Error) -> ClientError {
    match e {
        crate::Error::BodyTooLarge { length, limit } => ClientError::BodyTooLarge { length, limit },
        other => ClientError::Protocol(other),
    }
}

fn unexpected(request: Command, reply: Frame) -> ClientError {
    ClientError::UnexpectedReply {
        request,
        reply: Box::new(reply),
    }
}

#[derive(Debug)]
enum State {
    Open,
    Closed,
    GoneAway(String),
}

struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    encoder: Encoder,
    /// Requests queued or sent without a reply yet.
    in_flight: usize,
    /// Keep-alive HEARTBEATs whose replies come before any request's.
    keepalive_pending: usize,
    state: State,
    /// The server closed its side; what is buffered can still be read.
    eof: bool,
    last_sent: Instant,
}

impl Conn {
    fn check_open(&self) -> Result<(), ClientError> {
        match &self.state {
            State::Open => Ok(()),
            State::Closed => Err(ClientError::Closed {
                unanswered: self.in_flight,
            }),
            State::GoneAway(reason) => Err(ClientError::GoAway {
                reason: reason.clone(),
                unanswered: self.in_flight,
            }),
        }
    }

    /// Closes the connection after a failure that leaves its replies out
    /// of step (anything but an ERROR or GOAWAY reply), including a timeout.
    fn settle<T>(
        &mut self,
        result: Result<Result<T, ClientError>, tokio::time::error::Elapsed>,
        limit: Duration,
    ) -> Result<T, ClientError> {
        self.settle_now(result.unwrap_or(Err(ClientError::Timeout {
            waiting_to: "get a reply",
            after: limit,
        })))
    }

    /// [`settle`](Self::settle) for a result that did not wait.
    fn settle_now<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        match result {
            Err(ClientError::Server { .. } | ClientError::GoAway { .. }) | Ok(_) => result,
            Err(ClientError::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                self.close();
                Err(ClientError::Closed {
                    unanswered: self.in_flight,
                })
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    /// Refuses further calls and ends the stream now, so that the server
    /// lets go of the connection without waiting for the client to be dropped.
    fn close(&mut self) {
        self.state = State::Closed;
        // Only the writing side: a TCP stream does that at once (no waiting
        // on the peer), and the socket itself is freed when the client is
        // dropped.
        let mut cx = Context::from_waker(Waker::noop());
        let _ = Pin::new(&mut self.stream).poll_shutdown(&mut cx);
    }

    /// Writes what is queued within `limit`, closing on a failure.
    async fn flush_or_settle(&mut self, limit: Duration) -> Result<(), ClientError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let result = timeout(limit, self.flush()).await;
        self.settle(result.map(|r| r.map_err(Into::into)), limit)
    }

    /// The next reply if it can be had at once: already received, with
    /// nothing queued to be written before it.
    fn reply_now(&mut self) -> Option<Result<Frame, ClientError>> {
        if !self.wbuf.is_empty() {
            return None;
        }
        self.buffered_reply()
    }

    /// The next reply if it is already in the buffer, without waiting.
    fn buffered_reply(&mut self) -> Option<Result<Frame, ClientError>> {
        loop {
            let frame = match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => return None,
                Err(e) => return Some(Err(e.into())),
            };
            if let Some(result) = self.accept(frame) {
                return Some(result);
            }
        }
    }

    async fn flush_and_recv(&mut self) -> Result<Frame, ClientError> {
        self.flush().await?;
        self.recv_reply().await
    }

    fn queue(&mut self, command: Command, body: &[u8]) -> Result<(), ClientError> {
        encode_request(&self.encoder, command, body, &mut self.wbuf)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Writes the queued bytes; while the socket is full, reads replies into
    /// the buffer so that a long pipeline cannot deadlock with the server.
    async fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.wbuf.len() {
            match self.stream.try_write(&self.wbuf[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::select! {
                        ready = self.stream.writable() => ready?,
                        ready = self.stream.readable(), if !self.eof => {
                            ready?;
                            self.read_some()?;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.wbuf.clear();
                    return Err(e);
                }
            }
        }
        if written > 0 {
            self.last_sent = Instant::now();
        }
        self.wbuf.clear();
        Ok(())
    }

    fn reserve_read(&mut self) {
        let want = self
            .decoder
            .bytes_needed(&self.rbuf)
            .clamp(MIN_READ, 1 << 20);
        if self.rbuf.capacity() - self.rbuf.len() < want {
            self.rbuf.reserve(want);
        }
    }

    /// Reads what is there without waiting.
    fn read_some(&mut self) -> io::Result<()> {
        self.reserve_read();
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => self.eof = true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The next frame from the server, `None` once it has closed.
    async fn recv_frame(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.rbuf)? {
                return Ok(Some(frame));
            }
            if self.eof {
                return Ok(self.decoder.decode_eof(&mut self.rbuf)?);
            }
            self.reserve_read();
            self.stream.readable().await?;
            self.read_some()?;
        }
    }

    /// The reply to the oldest request in flight.
    async fn recv_reply(&mut self) -> Result<Frame, ClientError> {
        loop {
            let Some(frame) = self.recv_frame().await? else {
                self.state = State::Closed;
                return Err(ClientError::Closed {
                    unanswered: self.in_flight,
                });
            };
            if let Some(result) = self.accept(frame) {
                return result;
            }
        }
    }

    /// What a frame from the server means for the oldest request: its
    /// reply, an error, or (`None`) nothing, for a keep-alive's reply.
    fn accept(&mut self, frame: Frame) -> Option<Result<Frame, ClientError>> {
        if frame.command == Command::GOAWAY {
            let reason = frame.body_text().into_owned();
            self.state = State::GoneAway(reason.clone());
            return Some(Err(ClientError::GoAway {
                reason,
                unanswered: self.in_flight,
            }));
        }
        if self.keepalive_pending > 0 {
            // Keep-alives were sent with nothing in flight, so their
            // replies come first.
            self.keepalive_pending -= 1;
            return None;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if frame.command == Command::ERROR {
            return Some(Err(ClientError::Server {
                reason: frame.body_text().into_owned(),
            }));
        }
        Some(Ok(frame))
    }
}

/// Sends a HEARTBEAT whenever the connection has been quiet for `interval`.
async fn keep_alive(conn: std::sync::Weak<Mutex<Conn>>, interval: Duration) {
    let mut next = Instant::now() + interval;
    loop {
        tokio::time::sleep_until(next).await;
        let Some(conn) = conn.upgrade() else { return };
        let mut conn = conn.lock().await;
        if !matches!(conn.state, State::Open) {
            return;
        }
        let quiet_since = conn.last_sent;
        if quiet_since.elapsed() >= interval && conn.in_flight == 0 && conn.wbuf.is_empty() {
            conn.wbuf
                .put_slice(&Header::new(Command::HEARTBEAT, 0).to_bytes());
            conn.keepalive_pending += 1;
            if timeout(interval, conn.flush()).await.is_err() {
                conn.close();
                return;
            }
            next = Instant::now() + interval;
        } else {
            // Quiet but busy (requests in flight or queued; a HEARTBEAT's
            // reply must come before theirs): look again a little later,
            // not at once.
            next = (conn.last_sent + interval).max(Instant::now() + interval / 4);
        }
    }
}
