//! TLS for the server and the client, with rustls and its ring provider.
//!
//! - [`ServerTls`]: the server's certificate and key (reloadable while the
//!   server runs), and optionally the CAs that client certificates must
//!   chain to;
//! - [`ClientTls`]: the roots a client trusts (the system's, or a CA file),
//!   an optional client certificate, and the name checked in the server's
//!   certificate;
//! - [`ClientTlsStream`]: a client connection encrypted with a
//!   [`ClientTls`], for programs that write their own bytes;
//! - [`PeerIdentity`]: who a client certificate names, as the server's
//!   authenticator and handlers see it.
//!
//! Certificates and keys are read from PEM (files or bytes) when a setting
//! is made, so that a bad file fails there, naming the file, and never at
//! the first connection. TLS 1.2 and 1.3 are offered.
//!
//! ```no_run
//! use gopro::tls::{ClientTls, ServerTls};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = ServerTls::from_pem_files("server.pem", "server.key")?;
//! let server = gopro::server::Server::builder().tls(tls).bind().await?;
//! # let addr = server.local_addr().to_string();
//! # tokio::spawn(server.run());
//! let client = gopro::client::Client::builder()
//!     .tls(ClientTls::ca_file("ca.pem")?.server_name("localhost")?)
//!     .connect(&addr)
//!     .await?;
//! # Ok(())
//! # }
//! ```

/// `AsyncRead` and `AsyncWrite` for a wrapper of one field, each call
/// passed on to the field. Vectored writes are left to their defaults,
/// which write the first buffer alone (see `NoSigPipe` in handshake.rs).
macro_rules! forward_async_io {
    ($wrapper:ty) => {
        impl tokio::io::AsyncRead for $wrapper {
            fn poll_read(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }

        impl tokio::io::AsyncWrite for $wrapper {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.0).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
            }
        }
    };
}

mod client;
mod error;
mod handshake;
mod identity;
mod pem;
mod raw;
mod server;

pub use client::ClientTls;
pub use error::TlsError;
pub use identity::PeerIdentity;
pub use raw::ClientTlsStream;
pub use server::{ClientAuth, ServerTls};

pub(crate) use handshake::{accept, client_stream, FirstByte};

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// The crypto provider of every TLS configuration: ring, chosen
/// explicitly so that no process-wide default has to be installed.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// TLS 1.2 and 1.3.
pub(crate) const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
