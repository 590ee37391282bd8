//! A client's TLS connection as plain `AsyncRead` and `AsyncWrite`, for
//! programs that put their own bytes on the wire.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::handshake::ClientHandshake;

/// A TLS connection made by [`ClientTls::connect`](super::ClientTls::connect):
/// plaintext in and out, encrypted on the socket.
///
/// Writes are buffered by TLS: [`flush`](tokio::io::AsyncWriteExt::flush)
/// after the last write of a request, or its end may not be sent.
pub struct ClientTlsStream(ClientHandshake);

impl ClientTlsStream {
    pub(super) fn new(tls: ClientHandshake) -> ClientTlsStream {
        ClientTlsStream(tls)
    }
}

impl fmt::Debug for ClientTlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, conn) = self.0.get_ref();
        f.debug_struct("ClientTlsStream")
            .field("protocol_version", &conn.protocol_version())
            .finish()
    }
}

impl AsyncRead for ClientTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientTlsStream {
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
