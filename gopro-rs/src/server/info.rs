//! What handlers and the authenticator may learn of the connection they
//! serve: the peer's address and, over TLS, its certificate's identity.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::tls::PeerIdentity;

/// A connection, as its handlers and authenticator see it; read it with
/// [`ConnectionInfo::current`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The client's address (behind a balancer speaking the PROXY
    /// protocol, the one its header gave).
    pub peer: SocketAddr,
    /// The address the client connected to (behind a balancer, the one
    /// the header gave).
    pub local: Option<SocketAddr>,
    /// The TLS session, on a TLS port.
    pub tls: Option<TlsInfo>,
}

/// A connection's TLS session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: &'static str,
    /// The server name the client asked for (SNI), if it sent one.
    pub server_name: Option<String>,
    /// The client certificate's identity, when the client showed one
    /// (verified against the server's client CA).
    pub client: Option<PeerIdentity>,
}

tokio::task_local! {
    static CURRENT: Arc<ConnectionInfo>;
}

impl ConnectionInfo {
    /// The connection whose frame is being handled: `Some` inside a
    /// [`Handler`](super::Handler) or an [`Authenticator`](super::Authenticator)
    /// (in the call and while its future runs on the connection's task),
    /// `None` anywhere else. A handler that spawns work clones it first.
    pub fn current() -> Option<Arc<ConnectionInfo>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    pub(crate) fn of(
        local: Option<SocketAddr>,
        tls: Option<&rustls::ServerConnection>,
        peer: SocketAddr,
    ) -> ConnectionInfo {
        let tls = tls.map(|conn| TlsInfo {
            version: match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "TLS",
            },
            server_name: conn.server_name().map(str::to_string),
            client: conn
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| PeerIdentity::from_der(leaf)),
        });
        ConnectionInfo { peer, local, tls }
    }

    /// Runs a connection's future with `self` as [`current`](Self::current).
    pub(crate) fn scope<F: Future>(self: Arc<Self>, f: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, f)
    }
}
