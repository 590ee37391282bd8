//! The TLS options of the commands: the server's (`serve`) and the
//! clients' (`send`, `ping`, `bench`, `check`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use gopro::tls::{ClientAuth, ClientTls, ServerTls, TlsError};

#[derive(Args, Clone, Debug, Default)]
pub(crate) struct ClientTlsArgs {
    /// Speak TLS, trusting the system's root certificates (or --tls-ca).
    #[arg(long)]
    tls: bool,
    /// Trust only the CA certificates in this PEM file; implies --tls.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) for servers that ask for one; implies --tls.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry (and the SNI sent)
    /// [default: the host of the server's address]; implies --tls.
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Make a full TLS handshake on every connection (no session resumption).
    #[arg(long)]
    tls_no_resumption: bool,
}

impl ClientTlsArgs {
    /// The client's TLS settings; `None` for plaintext.
    pub(crate) fn settings(&self) -> Result<Option<ClientTls>, TlsError> {
        if !self.tls
            && self.tls_ca.is_none()
            && self.tls_cert.is_none()
            && self.tls_server_name.is_none()
        {
            return Ok(None);
        }
        let mut tls = match &self.tls_ca {
            Some(ca) => ClientTls::ca_file(ca)?,
            None => ClientTls::system_roots()?,
        };
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            tls = tls.identity_files(cert, key)?;
        }
        if let Some(name) = &self.tls_server_name {
            tls = tls.server_name(name)?;
        }
        if self.tls_no_resumption {
            tls = tls.resumption(false)?;
        }
        Ok(Some(tls))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ClientAuthArg {
    Required,
    Optional,
}

#[derive(Args, Debug)]
pub(crate) struct ServerTlsArgs {
    /// Speak TLS with this certificate chain (PEM, leaf first); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); reloaded on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Ask clients for certificates chained to the CAs in this PEM file.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: whether a client certificate is required.
    #[arg(
        long,
        value_enum,
        default_value = "required",
        requires = "tls_client_ca"
    )]
    tls_client_auth: ClientAuthArg,
    /// Time a client has to finish its TLS handshake.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    pub(crate) tls_handshake_timeout: Duration,
}

impl ServerTlsArgs {
    /// The server's TLS settings; `None` for plaintext.
    pub(crate) fn settings(&self) -> Result<Option<ServerTls>, TlsError> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let mut tls = ServerTls::from_pem_files(cert, key)?;
        if let Some(ca) = &self.tls_client_ca {
            tls = tls
                .client_ca_file(ca)?
                .client_auth(match self.tls_client_auth {
                    ClientAuthArg::Required => ClientAuth::Required,
                    ClientAuthArg::Optional => ClientAuth::Optional,
                });
        }
        Ok(Some(tls))
    }
}
