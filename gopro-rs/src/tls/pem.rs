//! Reading certificates and keys from PEM files or bytes, with errors that
//! name the file.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Where PEM comes from: a file, or bytes given in memory.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

impl Source<'_> {
    pub(crate) fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Bytes(_) => "PEM bytes".to_string(),
        }
    }

    fn error(&self, what: &'static str, reason: impl ToString) -> TlsError {
        TlsError::Pem {
            what,
            source_name: self.name(),
            reason: reason.to_string(),
        }
    }

    /// Every certificate, in order; at least one.
    pub(crate) fn certificates(
        &self,
        what: &'static str,
    ) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs: Result<Vec<_>, _> = match self {
            Source::File(path) => CertificateDer::pem_file_iter(path)
                .map_err(|e| self.error(what, e))?
                .collect(),
            Source::Bytes(bytes) => CertificateDer::pem_slice_iter(bytes).collect(),
        };
        let certs = certs.map_err(|e| self.error(what, e))?;
        if certs.is_empty() {
            return Err(self.error(what, "no CERTIFICATE section found"));
        }
        Ok(certs)
    }

    /// The first private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        const WHAT: &str = "private key";
        match self {
            Source::File(path) => PrivateKeyDer::from_pem_file(path),
            Source::Bytes(bytes) => PrivateKeyDer::from_pem_slice(bytes),
        }
        .map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                self.error(WHAT, "no PRIVATE KEY section found")
            }
            e => self.error(WHAT, e),
        })
    }
}
