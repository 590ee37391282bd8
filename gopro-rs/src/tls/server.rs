//! The server's side: its certificate (reloadable) and client certificates.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::pem::Source;
use super::{provider, TlsError, VERSIONS};

/// Whether a server with a client CA requires client certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// A client without a certificate chained to the client CA is refused
    /// during the handshake.
    #[default]
    Required,
    /// A client may come without a certificate; one that shows a
    /// certificate must chain to the client CA. The authenticator and
    /// handlers see which it was ([`PeerIdentity`](super::PeerIdentity)).
    Optional,
}

/// A server's TLS settings: its certificate chain and key, and optionally
/// the CAs client certificates must chain to.
///
/// Clones share the certificate: [`reload`](Self::reload) on any clone
/// (the one given to the server, or one kept by the application) changes
/// it for the next handshakes; connections already open are not touched.
#[derive(Clone)]
pub struct ServerTls {
    resolver: Arc<Resolver>,
    client_roots: Option<Arc<RootCertStore>>,
    client_auth: ClientAuth,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.resolver.files)
            .field("client_ca", &self.client_roots.as_ref().map(|r| r.len()))
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

impl ServerTls {
    /// The certificate chain (leaf first) and private key in PEM files.
    /// [`reload`](Self::reload) reads the same files again.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<ServerTls, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let certified = certified_key(Source::File(cert), Source::File(key))?;
        Ok(ServerTls::new(
            certified,
            Some((cert.to_path_buf(), key.to_path_buf())),
        ))
    }

    /// The certificate chain (leaf first) and private key as PEM bytes.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<ServerTls, TlsError> {
        let certified = certified_key(Source::Bytes(cert), Source::Bytes(key))?;
        Ok(ServerTls::new(certified, None))
    }

    fn new(key: CertifiedKey, files: Option<(PathBuf, PathBuf)>) -> ServerTls {
        ServerTls {
            resolver: Arc::new(Resolver {
                key: RwLock::new(Arc::new(key)),
                files,
            }),
            client_roots: None,
            client_auth: ClientAuth::Required,
        }
    }

    /// Asks clients for certificates chained to the CAs in this PEM file;
    /// they are required unless [`client_auth`](Self::client_auth) says
    /// [`ClientAuth::Optional`].
    pub fn client_ca_file(self, path: impl AsRef<Path>) -> Result<ServerTls, TlsError> {
        self.client_ca(Source::File(path.as_ref()))
    }

    /// [`client_ca_file`](Self::client_ca_file) from PEM bytes.
    pub fn client_ca_pem(self, pem: &[u8]) -> Result<ServerTls, TlsError> {
        self.client_ca(Source::Bytes(pem))
    }

    fn client_ca(mut self, source: Source<'_>) -> Result<ServerTls, TlsError> {
        self.client_roots = Some(Arc::new(root_store(source)?));
        Ok(self)
    }

    /// Whether client certificates are required (the default once a client
    /// CA is given) or optional. Without a client CA, none are asked for.
    pub fn client_auth(mut self, mode: ClientAuth) -> ServerTls {
        self.client_auth = mode;
        self
    }

    /// Reads the certificate and key files again and uses them for the
    /// next handshakes. On failure the certificate in use stays, and the
    /// error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some((cert, key)) = &self.resolver.files else {
            return Err(TlsError::Config(
                "this certificate was given as PEM bytes: reload it with reload_pem".to_string(),
            ));
        };
        let certified = certified_key(Source::File(cert), Source::File(key))?;
        self.resolver.set(certified);
        Ok(())
    }

    /// Uses this certificate chain and key for the next handshakes. On
    /// failure the certificate in use stays.
    pub fn reload_pem(&self, cert: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let certified = certified_key(Source::Bytes(cert), Source::Bytes(key))?;
        self.resolver.set(certified);
        Ok(())
    }

    /// The leaf certificate in use (DER), e.g. to check a reload.
    pub fn certificate(&self) -> Vec<u8> {
        let key = self.resolver.current();
        key.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }

    /// The rustls configuration for a server.
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                let verifier = match self.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Config(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        Ok(Arc::new(builder.with_cert_resolver(self.resolver.clone())))
    }
}

/// Hands every handshake the certificate in use now.
struct Resolver {
    key: RwLock<Arc<CertifiedKey>>,
    files: Option<(PathBuf, PathBuf)>,
}

impl Resolver {
    fn current(&self) -> Arc<CertifiedKey> {
        // A poisoned lock still holds a whole Arc: use it.
        self.key.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, key: CertifiedKey) {
        *self.key.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("files", &self.files)
            .finish()
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A certificate chain and its key, checked to belong together.
fn certified_key(cert: Source<'_>, key: Source<'_>) -> Result<CertifiedKey, TlsError> {
    let chain = cert.certificates("certificate")?;
    let key = key.private_key()?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Key {
        reason: e.to_string(),
    })
}

/// The CAs in a PEM source, as trust anchors.
pub(crate) fn root_store(source: Source<'_>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in source.certificates("CA certificate")? {
        roots.add(cert).map_err(|e| TlsError::Ca {
            source_name: source.name(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}
