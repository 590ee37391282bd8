//! Handshakes, done by tokio-rustls, whose result becomes a [`Stream`].

use std::io;
use std::sync::Arc;

use rustls::pki_types::ServerName;
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
    /// What the first bytes that arrived (one or two) say.
    pub(crate) fn of(bytes: &[u8]) -> FirstByte {
        let magic = crate::MAGIC.to_be_bytes();
        match bytes {
            [] => FirstByte::Closed,
            [0x16, ..] => FirstByte::Tls,
            // Two bytes of the magic, or the first when only it has come
            // (an HTTP `GET` also starts with 0x47).
            [first] if *first == magic[0] => FirstByte::GoPro,
            [first, second, ..] if [*first, *second] == magic => FirstByte::GoPro,
            [first, ..] => FirstByte::Other(*first),
        }
    }

    /// Waits for the first bytes and looks at them, leaving them in the socket.
    pub(crate) async fn peek(tcp: &TcpStream) -> io::Result<FirstByte> {
        let mut bytes = [0u8; 2];
        let n = tcp.peek(&mut bytes).await?;
        Ok(FirstByte::of(&bytes[..n]))
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

/// The client's side of a handshake, as tokio-rustls finishes it.
pub(crate) type ClientHandshake = tokio_rustls::client::TlsStream<NoSigPipe>;

/// The client's side of a handshake.
pub(crate) async fn connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<ClientHandshake> {
    tokio_rustls::TlsConnector::from(config)
        .connect(name, NoSigPipe(tcp))
        .await
}

/// A finished client handshake as the client's readiness-driven stream.
pub(crate) fn client_stream(tls: ClientHandshake) -> Stream {
    let (io, conn) = tls.into_inner();
    Stream::tls(io.0, conn)
}

/// The socket as tokio-rustls sees it during the handshake, writing one
/// buffer at a time: a vectored write on a socket is `writev`, which
/// raises SIGPIPE when the peer has gone, killing a host program that has
/// not ignored the signal (a C program; Rust and Python ignore it), while
/// a single buffer goes through `send` with `MSG_NOSIGNAL`.
pub(crate) struct NoSigPipe(TcpStream);

forward_async_io!(NoSigPipe);
