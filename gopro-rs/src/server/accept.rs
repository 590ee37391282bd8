//! What happens to a connection between accept and its first frame, when
//! anything does: the PROXY header, the TLS handshake, and the connection
//! information handlers may ask for. The bare plaintext path skips it all
//! (see `Server::run`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::config::Config;
use super::connection::{Connection, Kind};
use super::info::ConnectionInfo;
use super::proxy::{self, Proxied};
use super::tls;
use crate::stream::Stream;

/// Serves one accepted connection that needs more than the bare socket.
pub(super) async fn serve(mut tcp: TcpStream, mut peer: SocketAddr, config: Arc<Config>) {
    let mut local = tcp.local_addr().ok();
    let mut proxied = false;
    let mut kind = Kind::Client;
    if let Some(trusted) = config.trusted_proxies.clone() {
        match proxy_header(&mut tcp, peer, &trusted, &config).await {
            Some(Proxied::Address {
                source,
                destination,
            }) => {
                debug!(balancer = %peer, client = %source, "PROXY header");
                (peer, local, proxied) = (source, Some(destination), true);
            }
            Some(Proxied::Local) => kind = Kind::HealthCheck,
            None => return,
        }
    }
    if config.tls_config.is_some() {
        let Some(mut stream) = tls::handshake(tcp, peer, &config).await else {
            return;
        };
        if proxied {
            stream = stream.with_peer(peer);
        }
        let info = ConnectionInfo::of(local, stream.server_tls(), peer);
        let connection = Connection::new(stream, peer, config, kind);
        Arc::new(info).scope(connection.run()).await;
    } else if proxied {
        let info = ConnectionInfo::of(local, None, peer);
        let stream = Stream::plain(tcp).with_peer(peer);
        let connection = Connection::new(stream, peer, config, kind);
        Arc::new(info).scope(connection.run()).await;
    } else {
        let info = ConnectionInfo::of(local, None, peer);
        let connection = Connection::new(tcp, peer, config, kind);
        Arc::new(info).scope(connection.run()).await;
    }
}

/// The PROXY header of a connection from a trusted proxy; `None` (the
/// connection refused, logged and counted) for anybody else, a missing or
/// invalid header, one not complete within the read timeout, or shutdown.
async fn proxy_header(
    tcp: &mut TcpStream,
    peer: SocketAddr,
    trusted: &[ipnet::IpNet],
    config: &Config,
) -> Option<Proxied> {
    let counters = &config.shared.counters;
    if !proxy::is_trusted(trusted, peer.ip()) {
        warn!(%peer, "not a trusted proxy: connection refused (the PROXY protocol is on)");
        counters.proxy_refused.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    let outcome = tokio::select! {
        outcome = timeout(config.read_timeout, proxy::read_header(tcp)) => outcome,
        () = config.shutdown.cancelled() => return None,
    };
    match outcome {
        Ok(Ok(proxied)) => {
            counters.proxy_ok.fetch_add(1, Ordering::Relaxed);
            Some(proxied)
        }
        Ok(Err(reason)) => {
            warn!(%peer, "PROXY header refused: {reason}");
            counters.proxy_refused.fetch_add(1, Ordering::Relaxed);
            None
        }
        Err(_) => {
            warn!(%peer, timeout = ?config.read_timeout, "no PROXY header in time: closing");
            counters.proxy_refused.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}
