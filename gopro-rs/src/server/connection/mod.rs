//! One connection: read what has arrived, handle every whole frame in order,
//! write all the replies at once, repeat.
//!
//! The built-in commands are handled synchronously, straight from the read
//! buffer into the write buffer; only application handlers and logins with
//! an authenticator await, in boxed futures. That keeps the per-frame path
//! free of allocation and reference counting, and the future every
//! connection carries (idle or not) small.
//!
//! One [`Connection`], its methods in one file per idea:
//!
//! - this file: the connection's state and its event loop ([`Connection::run`]);
//! - [`process`]: the synchronous path, from one read to one write;
//! - [`slow`]: what has to wait (handlers, logins, the socket, the budget);
//! - [`read`]: the read buffer;
//! - [`reply`]: the reply buffer, replies encoded into it;
//! - [`write`](mod@write): writing the replies out;
//! - [`memory`]: the connection's share of the memory budget;
//! - [`close`]: protocol errors, the read deadline and shutdown.

mod close;
mod memory;
mod process;
mod read;
mod reply;
mod slow;
mod write;

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::{sleep_until, Instant};
use tracing::{debug, info};

use super::config::Config;
use super::stats::{Class, Counters};
use crate::stream::Transport;
use crate::{Codec, Decoder};
use memory::Held;
use slow::Slow;

/// The prefix of the default MESSAGE reply, as the reference server writes it.
const MESSAGE_PREFIX: &[u8] = b"Server says: ";

/// What woke an idle connection.
enum Event {
    Shutdown,
    Timer,
    Readable(io::Result<()>),
}

/// What a synchronous step leaves to do.
enum Step {
    Continue,
    Close,
    Slow(BytesMut, Slow),
}

/// What to do after a step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Who is on the other end, for the log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A client (directly, or through a balancer's PROXY header).
    Client,
    /// A balancer speaking for itself (a PROXY LOCAL header): its health
    /// checks, every few seconds, which say nothing about clients.
    HealthCheck,
}

/// A connection's opening and closing: info for clients, debug for health
/// checks, which would otherwise flood the log.
macro_rules! lifecycle {
    ($kind:expr, $($arg:tt)+) => {
        match $kind {
            Kind::Client => info!($($arg)+),
            Kind::HealthCheck => debug!($($arg)+),
        }
    };
}

/// The peer's address, looked up only when a log line is written.
struct Peer<'a, T>(&'a T);

impl<T: Transport> fmt::Display for Peer<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.peer_addr() {
            Ok(addr) => addr.fmt(f),
            Err(_) => f.write_str("(disconnected)"),
        }
    }
}

/// One connection over its stream: the bare socket for plaintext, a
/// [`Stream`](crate::stream::Stream) for TLS.
pub(crate) struct Connection<T> {
    stream: T,
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
    kind: Kind,
    login_failures: u32,
    /// What this connection holds of the memory budget; boxed, as only
    /// connections that move large frames ever hold any.
    held: Option<Box<Held>>,
}

impl<T: Transport> Connection<T> {
    pub(crate) fn new(
        stream: T,
        peer: SocketAddr,
        config: Arc<Config>,
        kind: Kind,
    ) -> Connection<T> {
        // Replies are batched by hand: one write per batch, so Nagle only adds latency.
        let _ = stream.tcp().set_nodelay(true);
        lifecycle!(kind, %peer, "connection opened");
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
            kind,
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
        lifecycle!(self.kind, peer = %Peer(&self.stream), "connection closed");
    }

    /// End of the time allowed for the next whole frame.
    fn deadline(&self) -> Instant {
        self.config.epoch + Duration::from_nanos(self.deadline)
    }

    /// Counts a frame sent on the slow path, which sends its replies one
    /// by one; the synchronous path counts its replies once per batch.
    fn sent(&self, class: Class) {
        Counters::add_one(&self.config.shared.counters.frames_out, class);
    }

    fn count_error(&self, which: impl FnOnce(&Counters) -> &AtomicU64) {
        which(&self.config.shared.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// The read deadline from now, in nanoseconds from the server's epoch.
#[inline]
fn deadline_after(config: &Config) -> u64 {
    let at = Instant::now()
        .saturating_duration_since(config.epoch)
        .saturating_add(config.read_timeout);
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection is this future plus the socket: keep it small
    /// (the target is at most 1.5 KiB of memory per idle connection).
    #[tokio::test]
    async fn the_connection_future_is_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (stream, peer) = accepted.unwrap();
        let config = Arc::new(crate::server::ServerBuilder::new().into_config());
        let future = Connection::new(stream, peer, config, Kind::Client).run();
        let size = std::mem::size_of_val(&future);
        drop(client);
        eprintln!("connection future: {size} bytes");
        // Past 472 bytes the task takes the next 128-byte size class.
        assert!(size <= 472, "connection future is {size} bytes");
    }
}
