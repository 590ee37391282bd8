//! The tokio client: one connection shared by any number of tasks.
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
//! // Many tasks share one connection: their requests are written together,
//! // and each gets its own reply.
//! let calls = (0..64).map(|i| {
//!     let client = client.clone();
//!     tokio::spawn(async move { client.request(Command::MESSAGE, format!("msg-{i}")).await })
//! });
//! for call in calls {
//!     call.await.unwrap()?;
//! }
//!
//! // Or pipelining by hand: send many, then read the replies in order.
//! for i in 0..100 {
//!     client.send(Command::MESSAGE, format!("msg-{i}")).await?;
//! }
//! for _ in 0..100 {
//!     let reply = client.recv().await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A [`Client`] is a handle on a connection task that owns the
//! socket and the sans-IO [`Pipeline`]; calls queue their requests and wait
//! for their own replies, holding no lock meanwhile. Dropping a call's
//! future (a timeout, `select!`) leaves the connection as it is: the reply
//! is discarded when it comes.

mod builder;
mod connect;
pub use connect::Backoff;
mod driver;
pub mod end;
mod error;
mod gathered;
mod limits;
mod outbox;
pub mod pipeline;
mod reply;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

pub use builder::{
    ClientBuilder, ClientSettings, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_QUEUED_BYTES, DEFAULT_RECONNECT_DELAY, DEFAULT_RECONNECT_MAX_DELAY,
    DEFAULT_TIMEOUT,
};
pub use error::ClientError;
pub use gathered::Gathered;
pub use pipeline::Pipeline;
pub use reply::Callback;

use driver::{Msg, State};
use limits::{Limits, Permit};
use outbox::Outbox;
use reply::{BatchResult, Reply, ReplyStream, To};

use crate::{Command, Encoder, Frame, HEADER_LEN, VERSION};

/// A client's counters, from its start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// Requests queued.
    pub requests: u64,
    /// Replies received (ERROR replies included).
    pub replies: u64,
    /// Connections made again after one was lost.
    pub reconnects: u64,
    /// Requests written again on a new connection.
    pub resent: u64,
    /// Requests that failed with [`ClientError::Lost`]: they may have been handled.
    pub lost: u64,
}

/// What the handles of one connection share.
struct Shared {
    tx: mpsc::UnboundedSender<Msg>,
    limits: Arc<Limits>,
    state: Arc<State>,
    timeout: Duration,
    max_body: usize,
}

/// A connection to a GoPro server, shared by every clone: `Clone + Send +
/// Sync`, and every call takes `&self`. Concurrent requests are written in
/// the order they are made and each caller gets its own reply.
///
/// Each handle has its own [`send`](Self::send)/[`recv`](Self::recv)
/// pipeline: `recv` returns the replies to this handle's `send`s, in order.
pub struct Client {
    shared: Arc<Shared>,
    stream: Arc<ReplyStream>,
    /// This handle's `send`s not yet handed to the connection task.
    outbox: Outbox,
}

impl Clone for Client {
    /// Another handle on the same connection, with a pipeline of its own.
    fn clone(&self) -> Self {
        Client {
            shared: Arc::clone(&self.shared),
            stream: Arc::default(),
            outbox: Outbox::default(),
        }
    }
}

impl Drop for Client {
    /// Requests this handle gathered still go out.
    fn drop(&mut self) {
        let _ = self.post_outbox();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.shared.timeout)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    fn new(shared: Shared) -> Client {
        Client {
            shared: Arc::new(shared),
            stream: Arc::default(),
            outbox: Outbox::default(),
        }
    }

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
        self.shared.timeout
    }

    /// The largest body sent or accepted: what [`check_body`] checks a
    /// binding's arguments against.
    pub fn max_body(&self) -> usize {
        self.shared.max_body
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        self.shared.state.stats()
    }

    /// Whether the connection has ended for good (closed, or lost without
    /// reconnecting): every call now fails.
    pub fn is_closed(&self) -> bool {
        self.shared.state.ended().is_some()
    }

    /// Closes the connection now, for every handle: requests unanswered
    /// fail with [`ClientError::Closed`], and so do later calls.
    pub fn close(&self) {
        self.shared.state.close();
        let _ = self.shared.tx.send(Msg::Close);
    }

    /// Waits until the connection is closed for good (after
    /// [`close`](Self::close), or once it ended without reconnecting): its
    /// socket is closed and every request made has had its outcome.
    pub async fn closed(&self) {
        self.shared.state.finished().await;
    }

    fn ended_error(&self) -> ClientError {
        self.shared
            .state
            .ended()
            .unwrap_or(ClientError::Closed { unanswered: 0 })
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match self.shared.state.ended() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Within the call's time, or [`ClientError::Timeout`].
    async fn in_time<T>(
        &self,
        waiting_to: &'static str,
        call: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        match timeout(self.shared.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout {
                waiting_to,
                after: self.shared.timeout,
            }),
        }
    }

    /// Puts a message on the connection's queue; if the connection is gone,
    /// the message's requests are not counted as sent.
    fn post(&self, msg: Msg) -> Result<(), ClientError> {
        // This handle's gathered `send`s go first: the wire keeps the order
        // of the calls.
        self.post_outbox()?;
        self.shared.state.post(&self.shared.tx, msg)
    }

    /// Hands this handle's gathered `send`s to the connection task.
    fn post_outbox(&self) -> Result<(), ClientError> {
        self.outbox.post(|(wire, n, permit)| {
            let reply = Reply::new(To::Stream(Arc::clone(&self.stream)), n, permit);
            self.shared
                .state
                .post(&self.shared.tx, Msg::Encoded { wire, reply })
                .inspect_err(|_| self.stream.unexpect(n))
        })
    }

    async fn permit(&self, requests: usize, bytes: usize) -> Permit {
        // Room held by gathered requests comes back only once they are
        // answered: they go before this caller waits. (A failure is the
        // ended connection, which the call reports next.)
        let _ = self.post_outbox();
        self.shared.limits.acquire(requests, bytes).await
    }

    /// Sends one request and waits for its reply, while any number of
    /// other calls do the same on the connection. An ERROR reply is
    /// [`ClientError::Server`], a GOAWAY [`ClientError::GoAway`]; past the
    /// timeout, [`ClientError::Timeout`], with the connection left open.
    pub async fn request(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
    ) -> Result<Frame, ClientError> {
        let (command, body) = (command.into(), body.into());
        check_body(self.shared.max_body, body.len())?;
        self.check_open()?;
        let cost = HEADER_LEN + body.len();
        let permit = match self.shared.limits.try_acquire(1, cost) {
            Some(permit) => permit,
            None => {
                self.in_time("queue a request", async { Ok(self.permit(1, cost).await) })
                    .await?
            }
        };
        // The connection task times the call out (no timer per call here).
        let (tx, rx) = oneshot::channel();
        let reply = Reply::new(To::One(Some(tx)), 1, permit);
        self.post(Msg::Request {
            command,
            body,
            reply,
        })?;
        rx.await.unwrap_or_else(|_| Err(self.ended_error()))
    }

    /// Queues a request whose outcome goes to `done`, called once, on the
    /// connection's task (keep it short). Waits while the client is full;
    /// on an error nothing was queued and `done` is not called.
    pub async fn submit(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
        done: Callback,
    ) -> Result<(), ClientError> {
        let (command, body) = (command.into(), body.into());
        check_body(self.shared.max_body, body.len())?;
        self.check_open()?;
        let permit = self
            .in_time("queue a request", async {
                Ok(self.permit(1, HEADER_LEN + body.len()).await)
            })
            .await?;
        self.post(Msg::Request {
            command,
            body,
            reply: Reply::new(To::Callback(Some(done)), 1, permit),
        })
    }

    /// [`submit`](Self::submit) if there is room now; gives `done` back if not.
    pub fn try_submit(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
        done: Callback,
    ) -> Result<Option<Callback>, ClientError> {
        let (command, body) = (command.into(), body.into());
        check_body(self.shared.max_body, body.len())?;
        self.check_open()?;
        let Some(permit) = self.shared.limits.try_acquire(1, HEADER_LEN + body.len()) else {
            return Ok(Some(done));
        };
        self.post(Msg::Request {
            command,
            body,
            reply: Reply::new(To::Callback(Some(done)), 1, permit),
        })?;
        Ok(None)
    }

    /// A HEARTBEAT round trip; the reply must echo it.
    pub async fn heartbeat(&self) -> Result<(), ClientError> {
        heartbeat_result(self.request(Command::HEARTBEAT, Bytes::new()).await?)
    }

    /// Logs in; the server must answer LOGIN `OK`. (To log in on every
    /// connection, reconnections included, use [`ClientBuilder::login`].)
    pub async fn login(&self, credentials: impl Into<Bytes>) -> Result<(), ClientError> {
        login_result(self.request(Command::LOGIN, credentials).await?)
    }

    /// Queues a request on this handle's pipeline without waiting for its
    /// reply; [`recv`](Self::recv) returns the replies in order. Waits only
    /// while the client is full. Requests sent one after another are
    /// gathered and handed to the connection together: on
    /// [`flush`](Self::flush), when `recv` has to wait, before any other
    /// call of this handle, or once 16 requests or 64 KiB are gathered.
    pub async fn send(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let (command, body) = (command.into(), body.into());
        // While there is room: no timer.
        if let Some(sent) = self.try_send(command, &body) {
            return sent;
        }
        let permit = self
            .in_time("queue a request", async {
                Ok(self.permit(1, HEADER_LEN + body.len()).await)
            })
            .await?;
        self.send_with(command, &body, permit)
    }

    /// Gathers the request in this handle's outbox (see [`outbox`]).
    fn send_with(&self, command: Command, body: &[u8], permit: Permit) -> Result<(), ClientError> {
        let encoder = Encoder::with_max_body(self.shared.max_body);
        let full = self
            .outbox
            .push(|wire| encode_request(&encoder, command, body, wire), permit)?;
        self.stream.expect(1);
        // A `recv` of this handle waiting on another thread waits for this
        // request, maybe: it goes now.
        if full || self.stream.is_waited_on() {
            self.post_outbox()?;
        }
        Ok(())
    }

    /// [`send`](Self::send) if it is done at once: there is room in the
    /// client. `None` if it would have to wait: then nothing was queued
    /// (and the requests gathered before it were handed over, so that room
    /// comes back as they are answered). For callers that pay for a future
    /// (a language binding, the blocking client).
    pub fn try_send(
        &self,
        command: impl Into<Command>,
        body: &[u8],
    ) -> Option<Result<(), ClientError>> {
        if let Err(e) = check_body(self.shared.max_body, body.len()).and(self.check_open()) {
            return Some(Err(e));
        }
        let Some(permit) = self.shared.limits.try_acquire(1, HEADER_LEN + body.len()) else {
            if let Err(e) = self.post_outbox() {
                return Some(Err(e));
            }
            return None;
        };
        Some(self.send_with(command.into(), body, permit))
    }

    /// [`recv`](Self::recv) if the reply has already come; `None` otherwise
    /// (and the requests gathered were handed over, so that it comes).
    pub fn try_recv(&self) -> Option<Result<Frame, ClientError>> {
        self.stream
            .try_take()
            .or_else(|| self.post_outbox().err().map(Err))
    }

    /// Waits until every request this handle queued has been written.
    pub async fn flush(&self) -> Result<(), ClientError> {
        self.check_open()?;
        let (tx, rx) = oneshot::channel();
        self.post(Msg::Flush(tx))?;
        self.in_time("write the requests", async {
            rx.await.map_err(|_| self.ended_error())
        })
        .await
    }

    /// The reply to the oldest request this handle sent and did not yet
    /// receive. Past the timeout, [`ClientError::Timeout`]: the reply is
    /// kept for the next `recv`.
    pub async fn recv(&self) -> Result<Frame, ClientError> {
        if let Some(result) = self.stream.try_take() {
            return result;
        }
        // Counted as waiting before what was gathered goes: a `send` on
        // another thread either is among it or sees this caller waiting.
        let waiting = self.stream.wait();
        self.post_outbox()?;
        if self.stream.expected() == 0 {
            // Nothing sent: an ended connection says why first.
            self.check_open()?;
        }
        self.in_time("get a reply", self.stream.take(&waiting))
            .await
    }

    /// Queues many requests on this handle's pipeline at once.
    pub async fn send_many<C, B>(
        &self,
        requests: impl IntoIterator<Item = (C, B)>,
    ) -> Result<(), ClientError>
    where
        C: Into<Command>,
        B: Into<Bytes>,
    {
        let encoder = Encoder::with_max_body(self.shared.max_body);
        let mut wire = BytesMut::new();
        let mut n = 0;
        for (command, body) in requests {
            encode_request(&encoder, command.into(), &body.into(), &mut wire)?;
            n += 1;
        }
        self.send_checked(wire.freeze(), n).await
    }

    async fn send_checked(&self, wire: Bytes, n: usize) -> Result<(), ClientError> {
        self.check_open()?;
        if n == 0 {
            return Ok(());
        }
        let permit = self
            .in_time("queue a request", async {
                Ok(self.permit(n, wire.len()).await)
            })
            .await?;
        self.stream.expect(n);
        let reply = Reply::new(To::Stream(Arc::clone(&self.stream)), n, permit);
        self.post(Msg::Encoded { wire, reply })
            .inspect_err(|_| self.stream.unexpect(n))
    }

    /// The replies to the `n` oldest requests this handle sent, appended to
    /// `out` in order, each within the timeout. Stops at the first error
    /// (an ERROR reply among them), with the replies before it in `out`
    /// and the ones after it left for later.
    pub async fn recv_many(&self, n: usize, out: &mut Vec<Frame>) -> Result<(), ClientError> {
        let in_flight = self.stream.expected();
        if n > in_flight {
            return Err(ClientError::NothingInFlight {
                wanted: n,
                in_flight,
            });
        }
        out.reserve(n);
        for _ in 0..n {
            out.push(self.recv().await?);
        }
        Ok(())
    }

    /// Queues frames already encoded back to back (as
    /// [`Encoder::encode`](crate::Encoder::encode) writes them) on this
    /// handle's pipeline; returns how many there were. The bytes are
    /// checked frame by frame first: anything but whole frames within the
    /// body limit is refused and nothing is sent.
    pub async fn send_encoded(&self, wire: &[u8]) -> Result<usize, ClientError> {
        let n = pipeline::check_encoded(self.shared.max_body, wire)?;
        self.send_checked(Bytes::copy_from_slice(wire), n).await?;
        Ok(n)
    }

    /// Sends frames already encoded back to back and waits for all their
    /// replies, appended to `out` in order: a batch of its own, whatever
    /// other calls do meanwhile. Stops at the first error (an ERROR reply,
    /// the connection lost), with the replies before it in `out`; the
    /// replies after it are discarded.
    pub async fn request_encoded(
        &self,
        wire: impl Into<Bytes>,
        out: &mut Vec<Frame>,
    ) -> Result<(), ClientError> {
        let wire = wire.into();
        let n = pipeline::check_encoded(self.shared.max_body, &wire)?;
        self.check_open()?;
        if n == 0 {
            return Ok(());
        }
        let (frames, error) = self
            .in_time("get a reply", async {
                let permit = self.permit(n, wire.len()).await;
                let (tx, rx) = oneshot::channel::<BatchResult>();
                let to = To::Batch {
                    tx: Some(tx),
                    frames: Vec::with_capacity(n),
                };
                self.post(Msg::Encoded {
                    wire,
                    reply: Reply::new(to, n, permit),
                })?;
                rx.await.map_err(|_| self.ended_error())
            })
            .await?;
        if out.is_empty() {
            *out = frames;
        } else {
            out.extend(frames);
        }
        error.map_or(Ok(()), Err)
    }

    /// Requests this handle sent whose replies it has not yet received.
    pub async fn in_flight(&self) -> usize {
        self.stream.expected()
    }
}

/// What a reply means for its caller: an ERROR frame is [`ClientError::Server`].
pub fn reply_result(frame: Frame) -> Result<Frame, ClientError> {
    if frame.command == Command::ERROR {
        return Err(ClientError::Server {
            reason: frame.body_text().into_owned(),
        });
    }
    Ok(frame)
}

/// What a LOGIN's reply means: `OK`, or why not.
pub fn login_result(frame: Frame) -> Result<(), ClientError> {
    let reply = reply_result(frame)?;
    if reply.command != Command::LOGIN || reply.body != "OK" {
        return Err(unexpected(Command::LOGIN, reply));
    }
    Ok(())
}

/// What a HEARTBEAT's reply means: the echo of an empty HEARTBEAT, or why not.
pub fn heartbeat_result(frame: Frame) -> Result<(), ClientError> {
    let reply = reply_result(frame)?;
    if reply.command != Command::HEARTBEAT || !reply.body.is_empty() {
        return Err(unexpected(Command::HEARTBEAT, reply));
    }
    Ok(())
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
