//! A raw connection: requests are written as bytes (many cases send what no
//! well-behaved client would), replies are read with the crate's decoder,
//! and every wait has the case's deadline.

use std::time::Duration;

use bytes::BytesMut;
use gopro::{Codec, Command, Decoder, Frame};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::args::Ctx;

/// What came from the server.
pub(super) enum Got {
    Frame(Frame),
    /// The server closed ("closed") or reset ("reset") the connection.
    Closed(String),
    /// Nothing before the deadline.
    Silent,
}

/// A connection's bytes: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

pub(super) struct Conn {
    stream: Box<dyn Io>,
    buf: BytesMut,
    decoder: Decoder,
    max_body: usize,
    /// When waiting gives up.
    deadline: Instant,
    /// Set once the server has closed the connection.
    closed: Option<String>,
}

/// Read buffer room asked for before each read.
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    /// A new connection; the case's time starts now.
    pub(super) async fn open(cx: &Ctx) -> Result<Conn, String> {
        Conn::open_with(cx, None).await
    }

    /// A new connection, logged in with `--auth` if it was given.
    pub(super) async fn ready(cx: &Ctx) -> Result<Conn, String> {
        let mut conn = Conn::open(cx).await?;
        if let Some(credentials) = &cx.auth {
            conn.login(credentials).await?;
        }
        Ok(conn)
    }

    /// With small socket buffers, so that a client that does not read is
    /// noticed by the server after little data.
    pub(super) async fn open_with(cx: &Ctx, socket_buffers: Option<u32>) -> Result<Conn, String> {
        let deadline = Instant::now() + cx.timeout;
        let socket = if cx.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(size) = socket_buffers {
            let _ = socket.set_recv_buffer_size(size);
            let _ = socket.set_send_buffer_size(size);
        }
        let tcp = match timeout_at(deadline, socket.connect(cx.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Err(_) => return Err(format!("connect: no answer within {:?}", cx.timeout)),
        };
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Io> = match &cx.tls {
            None => Box::new(tcp),
            Some(tls) => match timeout_at(deadline, tls.connect(tcp, &cx.host)).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err(format!("TLS handshake: no answer within {:?}", cx.timeout)),
            },
        };
        // A little over the limit, so that a reply over it is read and
        // reported as such rather than as garbage.
        let decoder = Codec::builder()
            .max_body(cx.max_body.saturating_add(READ_CHUNK))
            .decoder();
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            decoder,
            max_body: cx.max_body,
            deadline,
            closed: None,
        })
    }

    /// Gives the rest of the case `limit` from now.
    pub(super) fn wait_at_most(&mut self, limit: Duration) {
        self.deadline = Instant::now() + limit;
    }

    pub(super) async fn login(&mut self, credentials: &str) -> Result<(), String> {
        self.send_frames(&[Frame::new(Command::LOGIN, credentials.to_owned())])
            .await?;
        self.expect(&Frame::new(Command::LOGIN, "OK"))
            .await
            .map_err(|e| format!("LOGIN with the --auth credentials: {e}"))
    }

    pub(super) async fn send_frames(&mut self, frames: &[Frame]) -> Result<(), String> {
        self.send(&wire(frames)).await
    }

    /// Writes all of `bytes`, reading what the server sends meanwhile so that
    /// neither side blocks the other.
    pub(super) async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Conn {
            stream,
            buf,
            deadline,
            closed,
            ..
        } = self;
        let (mut reader, mut writer) = tokio::io::split(stream);
        let write = async {
            writer.write_all(bytes).await?;
            writer.flush().await
        };
        tokio::pin!(write);
        loop {
            buf.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                written = &mut write => {
                    return written.map_err(|e| match closed {
                        Some(how) => format!("the server {how} the connection before all requests were sent ({e})"),
                        None => format!("write failed: {e}"),
                    });
                }
                read = reader.read_buf(buf), if closed.is_none() => match read {
                    Ok(0) => *closed = Some("closed".into()),
                    Ok(_) => {}
                    Err(e) => *closed = Some(closed_how(&e)),
                },
                () = sleep_until(*deadline) => {
                    return Err(format!("could not send {} bytes in time: the server is not reading", bytes.len()));
                }
            }
        }
    }

    /// Writes all of `bytes` now, without reading meanwhile (flushed: over
    /// TLS the end of a write may wait in the TLS buffer otherwise).
    pub(super) async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// The next frame, or the end of the connection, or nothing in time.
    pub(super) async fn recv(&mut self) -> Result<Got, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if frame.body.len() > self.max_body {
                        return Err(format!(
                            "the server sent {} over the {}-byte body limit",
                            describe(&frame),
                            self.max_body
                        ));
                    }
                    return Ok(Got::Frame(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("the server sent bytes that are not a frame: {e}")),
            }
            if let Some(how) = &self.closed {
                if self.decoder.is_mid_frame(&self.buf) {
                    return Err(format!(
                        "connection {how} in the middle of a frame from the server"
                    ));
                }
                return Ok(Got::Closed(how.clone()));
            }
            self.buf.reserve(READ_CHUNK);
            match timeout_at(self.deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(Got::Silent),
                Ok(Ok(0)) => self.closed = Some("closed".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.closed = Some(closed_how(&e)),
            }
        }
    }

    /// Expects exactly `want` next.
    pub(super) async fn expect(&mut self, want: &Frame) -> Result<(), String> {
        match self.recv().await? {
            Got::Frame(frame) if frame == *want => Ok(()),
            Got::Frame(frame) => Err(format!(
                "expected {}, got {}",
                describe(want),
                describe(&frame)
            )),
            Got::Closed(how) => Err(format!("connection {how} instead of {}", describe(want))),
            Got::Silent => Err(format!("no {} within the time allowed", describe(want))),
        }
    }

    /// Expects an ERROR frame next, with this reason if one is given;
    /// returns the reason.
    pub(super) async fn expect_error(&mut self, reason: Option<&str>) -> Result<String, String> {
        match self.recv().await? {
            Got::Frame(frame) if frame.command == Command::ERROR && frame.version == 1 => {
                let text = std::str::from_utf8(&frame.body)
                    .map_err(|_| format!("the reason of {} is not UTF-8", describe(&frame)))?
                    .to_owned();
                match reason {
                    Some(want) if text != want => {
                        Err(format!("expected ERROR {want:?}, got ERROR {text:?}"))
                    }
                    _ => Ok(text),
                }
            }
            Got::Frame(frame) => Err(format!(
                "expected ERROR{}, got {}",
                reason.map(|r| format!(" {r:?}")).unwrap_or_default(),
                describe(&frame)
            )),
            Got::Closed(how) => Err(format!("connection {how} without an ERROR frame")),
            Got::Silent => Err("no ERROR frame within the time allowed".into()),
        }
    }

    /// Expects the server to close the connection next, after an ERROR
    /// frame if `error_allowed`.
    pub(super) async fn expect_closed(&mut self, error_allowed: bool) -> Result<(), String> {
        let started = Instant::now();
        loop {
            match self.recv().await? {
                Got::Closed(_) => return Ok(()),
                Got::Frame(frame) if error_allowed && frame.command == Command::ERROR => {}
                Got::Frame(frame) => {
                    return Err(format!(
                        "expected the connection to be closed, got {}",
                        describe(&frame)
                    ))
                }
                Got::Silent => {
                    return Err(format!(
                        "the connection is still open after {:?}",
                        started.elapsed()
                    ))
                }
            }
        }
    }
}

fn closed_how(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
            "reset".into()
        }
        _ => format!("failed ({e})"),
    }
}

/// The wire bytes of `frames`, back to back.
pub(super) fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.iter().map(Frame::encoded_len).sum());
    for frame in frames {
        out.extend_from_slice(&frame.to_bytes());
    }
    out
}

/// A frame for a FAIL line: command, the start of the body, its size.
pub(super) fn describe(frame: &Frame) -> String {
    const SHOWN: usize = 32;
    let shown = &frame.body[..frame.body.len().min(SHOWN)];
    let more = if frame.body.len() > SHOWN { "..." } else { "" };
    let version = if frame.version == gopro::VERSION {
        String::new()
    } else {
        format!(" version {}", frame.version)
    };
    format!(
        "{}{version} \"{}{more}\" ({} bytes)",
        frame.command,
        shown.escape_ascii(),
        frame.body.len()
    )
}
