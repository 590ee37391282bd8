//! One connection: read what has arrived, handle every whole frame in order,
//! write all the replies at once, repeat.

use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::Config;
use super::handler::{BoxFuture, Reply};
use super::pool;
use crate::{Codec, Command, Decoder, Encoder, Error, Frame, Header, HEADER_LEN};

/// The prefix of the default MESSAGE reply, as the reference server writes it.
const MESSAGE_PREFIX: &[u8] = b"Server says: ";
/// Reads ask for at least this much room, and at most this much at once.
const MIN_READ: usize = 4 * 1024;
const MAX_READ: usize = 256 * 1024;
/// How long a closing connection keeps reading (and discarding) so that the
/// last frames it wrote are not destroyed by a reset.
const LINGER: Duration = Duration::from_millis(500);

/// What woke an idle connection.
enum Event {
    Shutdown,
    Timer,
    Readable(io::Result<()>),
}

/// What to do after a step.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

pub(crate) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<Config>,
    decoder: Decoder,
    encoder: Encoder,
    /// The read buffer, held only while a frame is partly received.
    rbuf: Option<BytesMut>,
    /// Replies not yet written; taken from the pool when the first is added.
    wbuf: BytesMut,
    /// End of the time allowed for the next whole frame.
    deadline: Instant,
    logged_in: bool,
    login_failures: u32,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, config: Arc<Config>) -> Connection {
        // Replies are batched by hand: one write per batch, so Nagle only adds latency.
        let _ = stream.set_nodelay(true);
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
            peer,
            encoder: Encoder::with_max_body(config.max_body),
            deadline: Instant::now() + config.read_timeout,
            logged_in: config.authenticator.is_none(),
            config,
            decoder,
            rbuf: None,
            wbuf: BytesMut::new(),
            login_failures: 0,
        }
    }

    #[allow(clippy::manual_async_fn)] // on purpose, see below
    pub(crate) fn run(
        mut self,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send {
        // An async block, not an async fn: an async fn would keep a second
        // copy of `self` in its state for the whole life of the connection.
        async move { self.serve(shutdown).await }
    }

    async fn serve(&mut self, shutdown: CancellationToken) {
        let peer = self.peer;
        info!(%peer, "connection opened");
        // Pinned once, so that waiting costs no registration per batch; the
        // timer is moved to the deadline only when it fires early.
        let mut cancelled = pin!(shutdown.cancelled_owned());
        let mut timer = pin!(sleep_until(self.deadline));
        loop {
            // The select only says what happened; acting on it outside lets
            // the compiler overlap the waiting and the handling states.
            let event = tokio::select! {
                biased;
                () = &mut cancelled => Event::Shutdown,
                () = &mut timer => Event::Timer,
                ready = self.stream.readable() => Event::Readable(ready),
            };
            match event {
                Event::Shutdown => {
                    Box::pin(self.shut_down()).await;
                    break;
                }
                Event::Timer => {
                    if Instant::now() < self.deadline {
                        timer.as_mut().reset(self.deadline);
                        continue;
                    }
                    Box::pin(self.timed_out()).await;
                    break;
                }
                Event::Readable(Err(e)) => {
                    debug!(%peer, "connection failed: {e}");
                    break;
                }
                Event::Readable(Ok(())) => {
                    if self.read_and_handle().await == Flow::Close {
                        break;
                    }
                }
            }
        }
        info!(%peer, "connection closed");
    }

    /// Reads what has arrived, handles the whole frames, writes the replies.
    async fn read_and_handle(&mut self) -> Flow {
        let mut buf = self.rbuf.take().unwrap_or_else(pool::take);
        let want = self.decoder.bytes_needed(&buf).clamp(MIN_READ, MAX_READ);
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        let flow = match self.stream.try_read_buf(&mut buf) {
            Ok(0) => {
                if self.decoder.is_mid_frame(&buf) {
                    let err = self.decoder.decode_eof(&mut buf).err();
                    info!(peer = %self.peer, "peer closed mid-frame: {}", err.map_or_else(String::new, |e| e.to_string()));
                }
                buf.clear();
                Flow::Close
            }
            Ok(_) => self.handle_buffered(&mut buf).await,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Flow::Continue,
            Err(e) => {
                debug!(peer = %self.peer, "read failed: {e}");
                buf.clear();
                Flow::Close
            }
        };
        self.keep_or_return(buf);
        flow
    }

    /// Keeps the read buffer only while it holds part of a frame.
    fn keep_or_return(&mut self, buf: BytesMut) {
        if buf.is_empty() {
            pool::give(buf);
        } else {
            self.rbuf = Some(buf);
        }
    }

    /// Handles every whole frame in `buf`, in order, then writes the replies.
    async fn handle_buffered(&mut self, buf: &mut BytesMut) -> Flow {
        let mut handled = false;
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(frame)) => {
                    handled = true;
                    if self.handle(frame).await == Flow::Close {
                        buf.clear();
                        return Box::pin(self.close_after_flush()).await;
                    }
                    if self.wbuf.len() >= self.config.max_buffered_replies
                        && self.flush().await == Flow::Close
                    {
                        buf.clear();
                        return Flow::Close;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    buf.clear();
                    return Box::pin(self.protocol_error(e)).await;
                }
            }
        }
        if handled {
            self.deadline = Instant::now() + self.config.read_timeout;
        }
        self.flush().await
    }

    /// Handles one frame, adding its reply (if any) to the write buffer.
    async fn handle(&mut self, frame: Frame) -> Flow {
        let command = frame.command;
        debug!(peer = %self.peer, %command, length = frame.body.len(), "frame");
        // Handlers and logins are boxed: their futures would otherwise make
        // every connection's future larger, idle or not.
        if command == Command::LOGIN {
            return Box::pin(self.login(frame.body)).await;
        }
        if !self.logged_in && command != Command::HEARTBEAT {
            self.push_error("not authenticated");
            return Flow::Continue;
        }
        if let Some(handler) = &self.config.handlers[command.0 as usize] {
            let handler = handler.clone();
            let reply = Box::pin(guarded(command, || handler.call(frame))).await;
            match reply {
                Ok(reply) => self.push_reply(command, reply),
                Err(reason) => self.push_error(&reason),
            }
            return Flow::Continue;
        }
        match command {
            Command::HEARTBEAT => self.push_parts(command, &[], &frame.body),
            Command::MESSAGE => self.push_parts(command, MESSAGE_PREFIX, &frame.body),
            _ => self.push_error(&format!("unknown command: {}", command.0)),
        }
        Flow::Continue
    }

    async fn login(&mut self, credentials: Bytes) -> Flow {
        let Some(authenticator) = self.config.authenticator.clone() else {
            self.push_parts(Command::LOGIN, b"OK", &[]);
            return Flow::Continue;
        };
        match guarded(Command::LOGIN, || authenticator.authenticate(credentials)).await {
            Ok(()) => {
                self.logged_in = true;
                self.login_failures = 0;
                self.decoder.set_max_body(self.config.max_body);
                info!(peer = %self.peer, "logged in");
                self.push_parts(Command::LOGIN, b"OK", &[]);
                Flow::Continue
            }
            Err(reason) => {
                self.login_failures += 1;
                let max = self.config.max_login_failures;
                warn!(peer = %self.peer, failures = self.login_failures, "login failed: {reason}");
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

    /// Adds a reply made of `prefix` and `body`, without building a frame;
    /// replies over the body limit become ERROR (SPEC §2).
    fn push_parts(&mut self, command: Command, prefix: &[u8], body: &[u8]) {
        let length = prefix.len() + body.len();
        if let Err(e) = self.encoder.check_len(length) {
            return self.push_error(&format!("reply not sent: {e}"));
        }
        let out = self.out();
        out.reserve(HEADER_LEN + length);
        out.put_slice(&Header::new(command, length as u32).to_bytes());
        out.put_slice(prefix);
        out.put_slice(body);
    }

    fn push_reply(&mut self, command: Command, reply: Reply) {
        match reply {
            Reply::None => {}
            Reply::Body(body) => self.push_parts(command, &[], &body),
            Reply::Frame(frame) => {
                let encoder = self.encoder;
                if let Err(e) = encoder.encode(&frame, self.out()) {
                    self.push_error(&format!("reply not sent: {e}"));
                }
            }
        }
    }

    fn push_error(&mut self, reason: &str) {
        debug!(peer = %self.peer, "ERROR {reason}");
        // Reasons are short; cut one that is not, on a character boundary.
        let mut end = reason.len().min(self.encoder.max_body()).min(4096);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.push_parts(Command::ERROR, &[], &reason.as_bytes()[..end]);
    }

    /// Writes every buffered reply in one go, within the write timeout.
    async fn flush(&mut self) -> Flow {
        if self.wbuf.is_empty() {
            return Flow::Continue;
        }
        // Usually the socket takes the whole batch at once; only a peer that
        // is slow to read needs the timed path (boxed, to keep the
        // connection's future small).
        let mut written = 0;
        let result = loop {
            match self.stream.try_write(&self.wbuf[written..]) {
                Ok(n) => {
                    written += n;
                    if written == self.wbuf.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    break Box::pin(self.write_rest(written)).await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let mut buf = std::mem::take(&mut self.wbuf);
        buf.clear();
        pool::give(buf);
        match result {
            Ok(()) => Flow::Continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                warn!(peer = %self.peer, timeout = ?self.config.write_timeout, "peer is not reading its replies: closing");
                Flow::Close
            }
            Err(e) => {
                debug!(peer = %self.peer, "write failed: {e}");
                Flow::Close
            }
        }
    }

    /// Writes the rest of the batch within the write timeout.
    async fn write_rest(&mut self, from: usize) -> io::Result<()> {
        let rest = &self.wbuf[from..];
        match timeout(self.config.write_timeout, self.stream.write_all(rest)).await {
            Ok(result) => result,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// The stream cannot be trusted: say why, then close (SPEC §2).
    async fn protocol_error(&mut self, error: Error) -> Flow {
        warn!(peer = %self.peer, "protocol error: {error}");
        self.push_error(&error.to_string());
        self.close_after_flush().await
    }

    /// Writes what is buffered, then closes without destroying it.
    async fn close_after_flush(&mut self) -> Flow {
        if self.flush().await == Flow::Continue {
            Box::pin(self.linger()).await;
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
        let mid_frame = self
            .rbuf
            .as_deref()
            .is_some_and(|b| self.decoder.is_mid_frame(b))
            || self.decoder.pending_header().is_some();
        if mid_frame {
            info!(peer = %self.peer, timeout = ?self.config.read_timeout, "read timeout mid-frame: closing");
            self.push_error(&format!(
                "read timeout: no whole frame within {:?}",
                self.config.read_timeout
            ));
            let _ = self.close_after_flush().await;
        } else {
            debug!(peer = %self.peer, "idle past the read timeout: closing");
        }
        if let Some(mut buf) = self.rbuf.take() {
            buf.clear();
            pool::give(buf);
        }
    }

    /// Shutdown (SPEC §6): handle the frames already received, reply, then GOAWAY.
    async fn shut_down(&mut self) {
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
        let mut flow = Flow::Continue;
        while flow == Flow::Continue {
            match self.decoder.decode(&mut buf) {
                Ok(Some(frame)) => flow = self.handle(frame).await,
                Ok(None) => break,
                Err(e) => {
                    self.push_error(&e.to_string());
                    break;
                }
            }
        }
        buf.clear();
        pool::give(buf);
        if flow == Flow::Continue {
            self.push_parts(Command::GOAWAY, b"server shutting down", &[]);
        }
        let _ = self.close_after_flush().await;
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
        let future = Connection::new(stream, peer, config).run(CancellationToken::new());
        let size = std::mem::size_of_val(&future);
        drop(client);
        assert!(size <= 800, "connection future is {size} bytes");
    }
}
