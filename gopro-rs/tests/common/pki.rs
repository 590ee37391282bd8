//! Certificates made by the tests: a CA, server and client certificates,
//! an expired one, one for another host, and a second, unrelated CA.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use time::{Duration, OffsetDateTime};

/// A certificate and its key, as PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A CA that signs certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn sign(&self, params: CertificateParams) -> Pem {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Pem {
        self.server_for(&["localhost", "127.0.0.1"])
    }

    /// A server certificate for these names (DNS names or IP addresses).
    pub fn server_for(&self, names: &[&str]) -> Pem {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "gopro test server");
        self.sign(params)
    }

    /// A server certificate for localhost that expired yesterday.
    pub fn expired_server(&self) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(30);
        params.not_after = now - Duration::days(1);
        self.sign(params)
    }

    /// A client certificate: CN `name`, a DNS name and a URI.
    pub fn client(&self, name: &str) -> Pem {
        let mut params = CertificateParams::new(vec![format!("{name}.example")]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Acme");
        params.subject_alt_names.push(SanType::URI(
            format!("spiffe://gopro.test/{name}").try_into().unwrap(),
        ));
        self.sign(params)
    }
}

/// Writes PEM text to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// A fresh directory under the test target's scratch space.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("tls")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
