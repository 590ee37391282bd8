//! The command line of `gopro check`, and what it says the server does.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Address of the server to check (HOST:PORT).
    pub(super) addr: String,
    /// Time allowed for each case: connecting, sending and every reply.
    #[arg(long, value_parser = crate::duration, default_value = "5s")]
    pub(super) timeout: Duration,
    /// Credentials the server accepts in LOGIN. Runs the pre-login cases
    /// (skipped without), and logs in first in every other case.
    #[arg(long, value_name = "CREDENTIALS")]
    pub(super) auth: Option<String>,
    /// The server's read timeout. Runs the idle, slow-drip and keep-alive
    /// cases, which take about this long (skipped without).
    #[arg(long, value_parser = crate::duration, value_name = "DURATION")]
    pub(super) read_timeout: Option<Duration>,
    /// The server's write timeout. Runs the case where a client that never
    /// reads its replies must be closed (skipped without).
    #[arg(long, value_parser = crate::duration, value_name = "DURATION")]
    pub(super) write_timeout: Option<Duration>,
    /// The server's body limit, in bytes.
    #[arg(long, default_value_t = gopro::DEFAULT_MAX_BODY)]
    pub(super) max_body: usize,
    /// The server's body limit before LOGIN (with --auth), in bytes.
    #[arg(long, default_value_t = gopro::server::DEFAULT_PRELOGIN_MAX_BODY)]
    pub(super) prelogin_max_body: usize,
    /// Failed LOGINs in a row after which the server closes (with --auth).
    #[arg(long, default_value_t = gopro::server::DEFAULT_MAX_LOGIN_FAILURES)]
    pub(super) max_login_failures: u32,
    /// Run the core cases only; the extension cases are reported as SKIP.
    #[arg(long)]
    pub(super) core_only: bool,
    /// Exit with success when only extension cases fail (for servers, such
    /// as the article's, that do not implement the SPEC's extensions).
    #[arg(long)]
    pub(super) allow_ext_failures: bool,
    /// Every case's connection makes its TLS handshake first.
    #[command(flatten)]
    pub(super) tls: crate::tls::ClientTlsArgs,
}

/// What the server is expected to do, from the command line.
pub(super) struct Ctx {
    pub(super) addr: SocketAddr,
    /// The address as given, whose host the server's certificate must name.
    pub(super) host: String,
    /// `None` for plaintext.
    pub(super) tls: Option<gopro::tls::ClientTls>,
    pub(super) timeout: Duration,
    pub(super) auth: Option<String>,
    pub(super) read_timeout: Option<Duration>,
    pub(super) write_timeout: Option<Duration>,
    pub(super) max_body: usize,
    /// The limit before LOGIN: the tighter of the two.
    pub(super) prelogin_max_body: usize,
    pub(super) max_login_failures: u32,
}
