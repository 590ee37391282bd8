//! The client's side: the roots it trusts, its own certificate, the name
//! it checks.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::RootCertStore;

use tokio::net::TcpStream;

use super::handshake::{self, ClientHandshake};
use super::pem::Source;
use super::server::root_store;
use super::{provider, ClientTlsStream, TlsError, VERSIONS};
use crate::client::ClientError;

/// A client certificate chain and its key.
type Identity = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    Arc<rustls::pki_types::PrivateKeyDer<'static>>,
);

/// A client's TLS settings. The server's certificate must chain to the
/// trusted roots and name the server: by default the host of the address
/// connected to (a DNS name or an IP address), or the name given with
/// [`server_name`](Self::server_name), which is also sent as SNI.
#[derive(Clone)]
pub struct ClientTls {
    roots: Arc<RootCertStore>,
    identity: Option<Identity>,
    server_name: Option<ServerName<'static>>,
    resumption: bool,
    config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// Trusts the system's root certificates (`SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` are honoured).
    pub fn system_roots() -> Result<ClientTls, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            let reason = found
                .errors
                .first()
                .map_or("none found".to_string(), |e| e.to_string());
            return Err(TlsError::NoSystemRoots { reason });
        }
        ClientTls::with_roots(roots)
    }

    /// Trusts only the CA certificates in this PEM file.
    pub fn ca_file(path: impl AsRef<Path>) -> Result<ClientTls, TlsError> {
        ClientTls::with_roots(root_store(Source::File(path.as_ref()))?)
    }

    /// Trusts only the CA certificates in these PEM bytes.
    pub fn ca_pem(pem: &[u8]) -> Result<ClientTls, TlsError> {
        ClientTls::with_roots(root_store(Source::Bytes(pem))?)
    }

    fn with_roots(roots: RootCertStore) -> Result<ClientTls, TlsError> {
        let roots = Arc::new(roots);
        let config = build(&roots, None, true)?;
        Ok(ClientTls {
            roots,
            identity: None,
            server_name: None,
            resumption: true,
            config,
        })
    }

    /// Shows this certificate chain (leaf first) and key to servers that
    /// ask for one (mutual TLS).
    pub fn identity_files(
        self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<ClientTls, TlsError> {
        self.identity(Source::File(cert.as_ref()), Source::File(key.as_ref()))
    }

    /// [`identity_files`](Self::identity_files) from PEM bytes.
    pub fn identity_pem(self, cert: &[u8], key: &[u8]) -> Result<ClientTls, TlsError> {
        self.identity(Source::Bytes(cert), Source::Bytes(key))
    }

    fn identity(mut self, cert: Source<'_>, key: Source<'_>) -> Result<ClientTls, TlsError> {
        let identity = (
            cert.certificates("certificate")?,
            Arc::new(key.private_key()?),
        );
        self.config = build(&self.roots, Some(&identity), self.resumption)?;
        self.identity = Some(identity);
        Ok(self)
    }

    /// The name the server's certificate must carry, and the SNI sent,
    /// whatever address is connected to.
    pub fn server_name(mut self, name: &str) -> Result<ClientTls, TlsError> {
        self.server_name = Some(parse_name(name)?);
        Ok(self)
    }

    /// Whether reconnections resume the TLS session (on by default: an
    /// abbreviated handshake costs both sides less). Off, every connection
    /// makes a full handshake, e.g. to measure what one costs a server.
    pub fn resumption(mut self, on: bool) -> Result<ClientTls, TlsError> {
        self.resumption = on;
        self.config = build(&self.roots, self.identity.as_ref(), on)?;
        Ok(self)
    }

    /// Checks a name as [`server_name`](Self::server_name) would, for a
    /// binding that takes the name before it has the roots to build a
    /// `ClientTls` with.
    pub fn check_server_name(name: &str) -> Result<(), TlsError> {
        parse_name(name).map(|_| ())
    }

    /// Makes the TLS handshake over `tcp`, a connection made to `addr`
    /// (`host:port`), and returns the encrypted stream. The server's
    /// certificate is checked as [`Client`](crate::client::Client) checks
    /// it: against the trusted roots, for the host of `addr` or the
    /// [`server_name`](Self::server_name). For programs that write their
    /// own bytes (`gopro check` sends what no well-behaved client would);
    /// the `Client` does this by itself.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: &str,
    ) -> Result<ClientTlsStream, ClientError> {
        self.handshake(tcp, addr).await.map(ClientTlsStream::new)
    }

    /// The handshake of [`connect`](Self::connect), for the `Client` too.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        addr: &str,
    ) -> Result<ClientHandshake, ClientError> {
        let error = |reason: String| ClientError::Tls {
            addr: addr.into(),
            reason: reason.into(),
        };
        let name = self.name_for(addr).map_err(|e| error(e.to_string()))?;
        handshake::connect(tcp, self.config.clone(), name)
            .await
            .map_err(|e| error(e.to_string()))
    }

    /// The name to check for a connection to `addr` (`host:port`).
    fn name_for(&self, addr: &str) -> Result<ServerName<'static>, TlsError> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        parse_name(host_of(addr))
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => addr,
    }
}

fn parse_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string()).map_err(|e| TlsError::ServerName {
        name: name.to_string(),
        reason: e.to_string(),
    })
}

fn build(
    roots: &Arc<RootCertStore>,
    identity: Option<&Identity>,
    resumption: bool,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots.clone());
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError::Key {
                reason: e.to_string(),
            })?,
    };
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn the_host_is_taken_from_every_form_of_address() {
        assert_eq!(host_of("localhost:8888"), "localhost");
        assert_eq!(host_of("127.0.0.1:8888"), "127.0.0.1");
        assert_eq!(host_of("[::1]:8888"), "::1");
        assert_eq!(host_of("example.com"), "example.com");
        assert_eq!(host_of("::1"), "::1");
    }
}
