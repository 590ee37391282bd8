//! A TLS port's side of a new connection: look at the first byte, then
//! the handshake, within the handshake deadline.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::config::Config;
use crate::stream::Stream;
use crate::tls::{self, FirstByte};
use crate::Frame;

/// The connection's stream once its handshake is done; `None` when it was
/// closed (plaintext, garbage, a failed or late handshake, shutdown).
pub(super) async fn handshake(tcp: TcpStream, peer: SocketAddr, config: &Config) -> Option<Stream> {
    let rustls = config.tls_config.clone()?;
    let limit = config.tls_handshake_timeout;
    let work = async {
        match FirstByte::peek(&tcp).await? {
            FirstByte::Tls => tls::accept(tcp, rustls).await.map(Some),
            FirstByte::GoPro => {
                // rustls alone would only say "corrupt message": tell the
                // client (in the one language it speaks) and the log.
                warn!(%peer, "plaintext GoPro client on a TLS port: closing");
                let _ = tcp.try_write(&Frame::error("this port requires TLS").to_bytes());
                Ok(None)
            }
            FirstByte::Other(byte) => {
                warn!(%peer, first_byte = format_args!("{byte:#04x}"), "not a TLS handshake on a TLS port: closing");
                Ok(None)
            }
            FirstByte::Closed => Ok(None),
        }
    };
    let counters = &config.shared.counters;
    let outcome = tokio::select! {
        outcome = timeout(limit, work) => outcome,
        () = config.shutdown.cancelled() => {
            debug!(%peer, "shutting down: TLS handshake abandoned");
            return None;
        }
    };
    match outcome {
        Ok(Ok(Some(stream))) => {
            counters.tls_handshakes.fetch_add(1, Ordering::Relaxed);
            Some(stream)
        }
        Ok(Ok(None)) => {
            counters.tls.fetch_add(1, Ordering::Relaxed);
            None
        }
        Ok(Err(e)) => {
            warn!(%peer, "TLS handshake failed: {e}");
            counters.tls.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            warn!(%peer, timeout = ?limit, "TLS handshake not finished in time: closing");
            counters.tls.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
