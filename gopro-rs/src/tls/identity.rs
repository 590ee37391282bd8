//! Who a client certificate names.

use std::net::IpAddr;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The identity in a peer's certificate (verified against the configured
/// CA during the handshake): what an authenticator or handler uses to tell
/// devices apart without a password.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerIdentity {
    /// The subject's distinguished name, e.g. `CN=device-42, O=Acme`.
    pub subject: String,
    /// The subject's common name (CN), if it has one.
    pub common_name: Option<String>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// URIs among the subject alternative names.
    pub uris: Vec<String>,
    /// E-mail addresses among the subject alternative names.
    pub emails: Vec<String>,
}

impl PeerIdentity {
    /// The identity in a DER certificate; `None` if it cannot be parsed
    /// (rustls has verified it, so that does not happen with a CA set).
    pub fn from_der(der: &[u8]) -> Option<PeerIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = cert.subject();
        let mut identity = PeerIdentity {
            subject: subject.to_string(),
            common_name: subject
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            ..PeerIdentity::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => identity.dns_names.push(n.to_string()),
                    GeneralName::URI(u) => identity.uris.push(u.to_string()),
                    GeneralName::RFC822Name(e) => identity.emails.push(e.to_string()),
                    GeneralName::IPAddress(ip) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                            identity.ip_addresses.push(IpAddr::from(v4));
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                            identity.ip_addresses.push(IpAddr::from(v6));
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(identity)
    }
}
