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
    let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await?;
    let (tcp, conn) = tls.into_inner();
    Ok(Stream::tls(tcp, conn))
}

/// The client's side of a handshake.
pub(crate) async fn connect(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
) -> io::Result<Stream> {
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let (tcp, conn) = tls.into_inner();
    Ok(Stream::tls(tcp, conn))
}
