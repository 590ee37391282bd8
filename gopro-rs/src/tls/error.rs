//! What setting up TLS can fail with.

/// Why a TLS setting was refused. Every variant says which file or
/// setting to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA could not be read or parsed.
    #[error("cannot load the {what} from {source_name}: {reason}")]
    Pem {
        /// What was being read: `certificate`, `private key` or `CA certificate`.
        what: &'static str,
        /// The file's path, or `PEM bytes` for bytes given in memory.
        source_name: String,
        /// Why it failed.
        reason: String,
    },
    /// The private key does not belong to the certificate, or is of a kind
    /// the ring provider cannot sign with.
    #[error("the private key does not fit the certificate: {reason}")]
    Key {
        /// Why.
        reason: String,
    },
    /// A CA certificate was read but cannot be used as a trust anchor.
    #[error("the CA certificate from {source_name} cannot be trusted: {reason}")]
    Ca {
        /// The file's path, or `PEM bytes`.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// The system's trusted roots could not be loaded.
    #[error("no system root certificates could be loaded ({reason}); give a CA file instead")]
    NoSystemRoots {
        /// Why.
        reason: String,
    },
    /// The server name to check is not a DNS name or an IP address.
    #[error("invalid TLS server name {name:?}: {reason}")]
    ServerName {
        /// The name given.
        name: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(String),
}
