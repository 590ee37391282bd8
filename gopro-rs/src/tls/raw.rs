//! A client's TLS connection as plain `AsyncRead` and `AsyncWrite`, for
//! programs that put their own bytes on the wire.

use std::fmt;

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

forward_async_io!(ClientTlsStream);
