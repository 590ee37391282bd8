//! A connection's byte stream: plain TCP, or TLS over TCP.
//!
//! The server and the client drive their sockets by readiness (wait until
//! readable, then read what is there without waiting; write what the
//! socket takes now), which keeps a plaintext connection free of buffers
//! and futures while it waits. TLS keeps that shape: rustls is sans-IO, so
//! a TLS stream is the same socket plus a `rustls::Connection` that the
//! read and write calls feed and drain. The handshake itself is done by
//! tokio-rustls ([`crate::tls`]), which hands the socket and the
//! connection over when it is finished.

use std::io::{self, BufRead as _, Write as _};
use std::task::{Context, Poll};

use bytes::{BufMut, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// A connection's socket, with TLS when the connection has it.
pub(crate) struct Stream {
    tcp: TcpStream,
    /// The client's address when a PROXY header gave it (the socket's
    /// peer is then the balancer).
    peer: Option<std::net::SocketAddr>,
    /// Boxed: a rustls connection is large, and plaintext connections
    /// should not carry its size.
    tls: Option<Box<Tls>>,
}

struct Tls {
    conn: rustls::Connection,
    /// Decrypted bytes rustls holds, not handed out yet: while there are
    /// any the stream is readable whatever the socket says.
    plaintext: usize,
    /// A TLS error met after some bytes were handed out: reported by the
    /// next read, to which the stream is readable at once.
    failed: Option<rustls::Error>,
    /// The peer's close_notify has arrived: the next read gives the end at
    /// once (the socket's readiness may have been cleared by the read that
    /// brought it, and a peer may wait for our close_notify before closing).
    closed: bool,
}

/// The socket as `std::io` traits for rustls, without waiting: a socket
/// with nothing to give or no room says `WouldBlock`, and tokio clears
/// its readiness.
struct Raw<'a> {
    tcp: &'a TcpStream,
    /// A read filled less than the room rustls gave it: the socket held no
    /// more, and its readiness is cleared ([`read_once`]).
    drained: bool,
}

impl<'a> Raw<'a> {
    fn new(tcp: &'a TcpStream) -> Raw<'a> {
        Raw {
            tcp,
            drained: false,
        }
    }
}

impl io::Read for Raw<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let tcp = self.tcp;
        let (len, drained) = read_once(tcp, buf.len(), || tcp.try_read(buf))?;
        self.drained |= drained;
        Ok(len)
    }
}

impl io::Write for Raw<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    /// All the records rustls holds in one `sendmsg`, with `MSG_NOSIGNAL`:
    /// `writev` (the default for a socket) would raise SIGPIPE when the
    /// peer has gone, killing a host program that has not ignored the
    /// signal (a C program).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let socket = socket2::SockRef::from(self.tcp);
        self.tcp.try_io(Interest::WRITABLE, || {
            socket.send_vectored_with_flags(bufs, libc::MSG_NOSIGNAL)
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Stream {
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream {
            tcp,
            peer: None,
            tls: None,
        }
    }

    /// The stream, with `peer` as the client's address.
    pub(crate) fn with_peer(mut self, peer: std::net::SocketAddr) -> Stream {
        self.peer = Some(peer);
        self
    }

    /// The client's address: the PROXY header's, else the socket's peer.
    pub(crate) fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.peer.map_or_else(|| self.tcp.peer_addr(), Ok)
    }

    pub(crate) fn tls(tcp: TcpStream, conn: impl Into<rustls::Connection>) -> Stream {
        let mut conn = conn.into();
        // The handshake may have left application data decrypted, or the
        // peer's close_notify (an error here comes back at the first read).
        let (plaintext, closed) = conn.process_new_packets().map_or((0, false), |state| {
            (state.plaintext_bytes_to_read(), state.peer_has_closed())
        });
        Stream {
            tcp,
            peer: None,
            tls: Some(Box::new(Tls {
                conn,
                plaintext,
                failed: None,
                closed,
            })),
        }
    }

    /// The socket as a std socket (left non-blocking), and the client side
    /// of its TLS session, for a client driven by an event loop that is not
    /// tokio's. Called inside the runtime, which lets the socket go.
    pub(crate) fn into_client_parts(
        self,
    ) -> io::Result<(std::net::TcpStream, Option<rustls::ClientConnection>)> {
        let tcp = self.tcp.into_std()?;
        let tls = match self.tls.map(|t| t.conn) {
            None => None,
            Some(rustls::Connection::Client(conn)) => Some(conn),
            Some(rustls::Connection::Server(_)) => {
                return Err(io::Error::other("a server's TLS session is not a client's"))
            }
        };
        Ok((tcp, tls))
    }

    /// The TCP socket under the stream.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// The server side of the TLS session, when the stream has one.
    pub(crate) fn server_tls(&self) -> Option<&rustls::ServerConnection> {
        match self.tls.as_deref().map(|t| &t.conn) {
            Some(rustls::Connection::Server(conn)) => Some(conn),
            _ => None,
        }
    }

    /// Ready when a read may bring something (or fail).
    #[inline]
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.tls {
            Some(tls) if tls.plaintext > 0 || tls.failed.is_some() || tls.closed => {
                Poll::Ready(Ok(()))
            }
            _ => self.tcp.poll_read_ready(cx),
        }
    }

    /// Waits until a read may bring something.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Waits until the socket takes more bytes.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Reads at most `limit` bytes into `buf` without waiting: `Ok(0)` at
    /// the end of the stream, `WouldBlock` when nothing is there now.
    ///
    /// A plain read that fills less than the room it was given drained the
    /// socket (as tokio's `poll_read` takes it): its readiness is cleared
    /// then, so the next read waits for the next wake-up instead of making
    /// one more system call to learn EAGAIN.
    #[inline]
    pub(crate) fn read_buf(&mut self, buf: &mut BytesMut, limit: usize) -> io::Result<usize> {
        match &mut self.tls {
            None => read_plain(&self.tcp, buf, limit),
            Some(tls) => tls.read(&self.tcp, buf, limit),
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes nothing.
    /// Over TLS, bytes taken may still wait in rustls: see
    /// [`wants_flush`](Self::wants_flush).
    #[inline]
    pub(crate) fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.try_write(data),
            Some(tls) => tls.write(&self.tcp, data),
        }
    }

    /// Whether encrypted bytes are waiting for room in the socket.
    #[inline]
    pub(crate) fn wants_flush(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Writes encrypted bytes waiting in rustls, as far as the socket takes
    /// them now; `true` when none are left.
    pub(crate) fn flush_now(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            None => Ok(true),
            Some(tls) => tls.flush(&self.tcp),
        }
    }

    /// Writes all of `data` and whatever TLS holds, waiting for room.
    pub(crate) async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        loop {
            if !data.is_empty() {
                match self.try_write(data) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => data = &data[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            } else if !self.flush_now()? {
                self.writable().await?;
            } else {
                return Ok(());
            }
        }
    }

    /// Says the stream ends (TLS close_notify), then half-closes the socket.
    pub(crate) async fn shutdown(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.conn.send_close_notify();
            self.write_all(&[]).await?;
        }
        tokio::io::AsyncWriteExt::shutdown(&mut self.tcp).await
    }
}

/// A plain read; see [`Stream::read_buf`].
#[inline]
fn read_plain(tcp: &TcpStream, buf: &mut BytesMut, limit: usize) -> io::Result<usize> {
    let room = limit.min(buf.capacity() - buf.len());
    read_once(tcp, room, || {
        tcp.try_read_buf(&mut (&mut *buf).limit(limit))
    })
    .map(|(len, _)| len)
}

/// One read of `tcp` by `read`, into `room` bytes. A read that fills less
/// than the room (the socket held no more) clears the socket's readiness,
/// so that the reader stops without one more system call to learn EAGAIN;
/// the bytes read, and whether the readiness was cleared. (`read` runs
/// inside `try_io`: both clear the readiness only as of the event they
/// saw, so neither can lose a newer one.)
#[inline]
fn read_once(
    tcp: &TcpStream,
    room: usize,
    mut read: impl FnMut() -> io::Result<usize>,
) -> io::Result<(usize, bool)> {
    let mut len = 0;
    let result = tcp.try_io(Interest::READABLE, || {
        len = read()?;
        if len > 0 && len < room {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match result {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && len > 0 => Ok((len, true)),
        Err(e) => Err(e),
        Ok(()) => Ok((len, false)),
    }
}

/// What a server connection needs of its stream. The server's plaintext
/// connections use the bare socket, so that they carry nothing for TLS
/// (an idle connection's task stays in its allocation size class); TLS
/// connections use a [`Stream`].
pub(crate) trait Transport: Send + Sync + 'static {
    /// The socket under the stream.
    fn tcp(&self) -> &TcpStream;
    /// The client's address, for the log.
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr>;
    /// See [`Stream::poll_read_ready`].
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    /// See [`Stream::read_buf`].
    fn read_buf(&mut self, buf: &mut BytesMut, limit: usize) -> io::Result<usize>;
    /// See [`Stream::try_write`].
    fn try_write(&mut self, data: &[u8]) -> io::Result<usize>;
    /// See [`Stream::flush_now`].
    fn flush_now(&mut self) -> io::Result<bool>;
    /// See [`Stream::write_all`].
    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + 'a;
    /// See [`Stream::shutdown`].
    fn shutdown(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        TcpStream::peer_addr(self)
    }

    #[inline]
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    #[inline]
    fn read_buf(&mut self, buf: &mut BytesMut, limit: usize) -> io::Result<usize> {
        read_plain(self, buf, limit)
    }

    #[inline]
    fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, data)
    }

    #[inline]
    fn flush_now(&mut self) -> io::Result<bool> {
        Ok(true)
    }

    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + 'a {
        tokio::io::AsyncWriteExt::write_all(self, data)
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        tokio::io::AsyncWriteExt::shutdown(self)
    }
}

impl Transport for Stream {
    fn tcp(&self) -> &TcpStream {
        Stream::tcp(self)
    }

    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        Stream::peer_addr(self)
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Stream::poll_read_ready(self, cx)
    }

    fn read_buf(&mut self, buf: &mut BytesMut, limit: usize) -> io::Result<usize> {
        Stream::read_buf(self, buf, limit)
    }

    fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        Stream::try_write(self, data)
    }

    fn flush_now(&mut self) -> io::Result<bool> {
        Stream::flush_now(self)
    }

    fn write_all<'a>(
        &'a mut self,
        data: &'a [u8],
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + 'a {
        Stream::write_all(self, data)
    }

    fn shutdown(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send + '_ {
        Stream::shutdown(self)
    }
}

impl Tls {
    /// Hands out decrypted bytes, reading and decrypting more while there
    /// is room, until the socket has no more: one call drains the socket
    /// as a plain read does, so that a batch of frames is handled at once.
    fn read(&mut self, tcp: &TcpStream, buf: &mut BytesMut, limit: usize) -> io::Result<usize> {
        let room = limit.min(buf.capacity() - buf.len());
        if room == 0 {
            // As a plain socket does: no room reads nothing.
            return Ok(0);
        }
        if let Some(e) = self.failed.take() {
            return Err(self.fail(tcp, e));
        }
        let mut total = 0;
        let mut raw = Raw::new(tcp);
        loop {
            if self.plaintext > 0 {
                // Copied from rustls' buffer straight into the spare room:
                // no zeroing of the room first, as a `&mut [u8]` would need.
                let mut reader = self.conn.reader();
                while self.plaintext > 0 && total < room {
                    let chunk = match reader.fill_buf() {
                        Ok(chunk) if !chunk.is_empty() => chunk,
                        Ok(_) => break,
                        // Seen again by the next call, once `total` is
                        // handed out.
                        Err(_) if total > 0 => return Ok(total),
                        Err(e) => return Err(e),
                    };
                    let n = chunk.len().min(room - total);
                    buf.extend_from_slice(&chunk[..n]);
                    reader.consume(n);
                    total += n;
                    self.plaintext -= n;
                }
                if total == room {
                    return Ok(total);
                }
            }
            if raw.drained {
                // The socket held no more (and its readiness is cleared).
                return if total > 0 {
                    Ok(total)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            // Whatever ends the reading now (nothing more, the end, an
            // error) is seen again by the next call once `total` is handed out.
            match self.conn.read_tls(&mut raw) {
                Ok(0) => return Ok(total),
                Ok(_) => {
                    let state = match self.conn.process_new_packets() {
                        Ok(state) => state,
                        Err(e) if total > 0 => {
                            self.failed = Some(e);
                            return Ok(total);
                        }
                        Err(e) => return Err(self.fail(tcp, e)),
                    };
                    self.plaintext = state.plaintext_bytes_to_read();
                    // Key updates and session tickets have replies to send.
                    if self.conn.wants_write() {
                        let _ = self.flush(tcp);
                    }
                    self.closed = state.peer_has_closed();
                    if self.closed && self.plaintext == 0 {
                        // close_notify: the end, once `total` is handed out.
                        return Ok(total);
                    }
                }
                Err(_) if total > 0 => return Ok(total),
                Err(e) => return Err(e),
            }
        }
    }

    /// The TLS session failed: tells the peer why (the alert rustls
    /// queued), and gives the error to the reader.
    fn fail(&mut self, tcp: &TcpStream, e: rustls::Error) -> io::Error {
        let _ = self.flush(tcp);
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    /// Encrypts what rustls takes of `data` and writes what the socket
    /// takes. Refuses more while earlier bytes wait for the socket, so that
    /// rustls never holds more than one write's worth.
    fn write(&mut self, tcp: &TcpStream, data: &[u8]) -> io::Result<usize> {
        if !self.flush(tcp)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write(data)?;
        match self.flush(tcp) {
            Ok(_) => Ok(n),
            // The bytes are rustls' now: the caller learns of the failure
            // at its next write or read.
            Err(e) if n == 0 => Err(e),
            Err(_) => Ok(n),
        }
    }

    fn flush(&mut self, tcp: &TcpStream) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Raw::new(tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}
