//! Handshakes, done by tokio-rustls, whose result becomes a [`Stream`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::stream::Stream;

/// What the first byte of a connection says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstByte {
    /// `0x16`: a TLS handshake record.
    Tls,
    /// `0x47`, the first byte of the magic: a plaintext GoPro frame.
    GoPro,
    /// Anything else.
    Other(u8),
    /// The peer closed before sending anything.
    Closed,
}

impl FirstByte {
    pub(crate) fn of(byte: u8) -> FirstByte {
        match byte {
            0x16 => FirstByte::Tls,
            b if b == crate::MAGIC.to_be_bytes()[0] => FirstByte::GoPro,
            b => FirstByte::Other(b),
        }
    }

    /// Waits for the first byte and looks at it, leaving it in the socket.
    pub(crate) async fn peek(tcp: &TcpStream) -> io::Result<FirstByte> {
        let mut byte = [0u8; 1];
        Ok(match tcp.peek(&mut byte).await? {
            0 => FirstByte::Closed,
            _ => FirstByte::of(byte[0]),
        })
    }
}

/// The server's side of a handshake.
pub(crate) async fn accept(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> io::Result<Stream> {
    let tls = tokio_rustls::TlsAcceptor::from(config)
        .accept(NoSigPipe(tcp))
        .await?;
    let (io, conn) = tls.into_inner();
    Ok(Stream::tls(io.0, conn))
}

/// The client's side of a handshake.
pub(crate) async fn connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<Stream> {
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, NoSigPipe(tcp))
        .await?;
    let (io, conn) = tls.into_inner();
    Ok(Stream::tls(io.0, conn))
}

/// The socket as tokio-rustls sees it during the handshake, writing one
/// buffer at a time: a vectored write on a socket is `writev`, which
/// raises SIGPIPE when the peer has gone, killing a host program that has
/// not ignored the signal (a C program; Rust and Python ignore it), while
/// a single buffer goes through `send` with `MSG_NOSIGNAL`.
struct NoSigPipe(TcpStream);

impl AsyncRead for NoSigPipe {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NoSigPipe {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
