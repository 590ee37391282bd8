//! The server's settings and their defaults.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::handler::{Authenticator, Handler};
use super::stats::Shared;
use super::{Server, ServerError};
use crate::settings::{self, ConfigError, ServerSetting};
use crate::tls::ServerTls;
use crate::{Command, DEFAULT_MAX_BODY, HEADER_LEN};

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8888";
/// The default read timeout: a whole frame must arrive within it (SPEC §5).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The default write timeout: a batch of replies must be taken within it.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default shutdown grace period (SPEC §6).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The default body limit before a successful LOGIN, when an authenticator is set (SPEC §3).
pub const DEFAULT_PRELOGIN_MAX_BODY: usize = 16 * 1024;
/// The default number of failed LOGINs in a row before the connection is closed.
pub const DEFAULT_MAX_LOGIN_FAILURES: u32 = 3;
/// The default number of reply bytes a connection buffers before it stops
/// handling requests and writes them out.
pub const DEFAULT_MAX_BUFFERED_REPLIES: usize = 1024 * 1024;
/// The default memory budget: bytes held for frames and replies across all
/// connections, beyond each connection's pooled buffer.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 * 1024 * 1024;

/// The default time a TLS client has to finish its handshake.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default number of scrapes the metrics port serves at once.
pub const DEFAULT_METRICS_MAX_SCRAPERS: usize = 64;
/// The default time a metrics scraper has to send its request's headers.
pub const DEFAULT_METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether bind raises the open-files soft limit to the hard limit, by default.
pub const DEFAULT_RAISE_NOFILE_LIMIT: bool = true;

/// Whether the listen address is bound with SO_REUSEPORT, by default.
pub const DEFAULT_REUSE_PORT: bool = false;

/// See [`ServerBuilder::batch_scope`].
pub(crate) type BatchScope = Arc<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

/// Settings shared by every connection of a server.
#[derive(Clone)]
pub(crate) struct Config {
    pub listen: String,
    /// How the listening socket is made.
    pub listener: super::listen::Source,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_body: usize,
    pub max_connections: usize,
    pub grace: Duration,
    pub prelogin_max_body: usize,
    pub max_login_failures: u32,
    pub max_buffered_replies: usize,
    pub memory_budget: usize,
    pub raise_nofile_limit: bool,
    pub authenticator: Option<Arc<dyn Authenticator>>,
    /// TLS, when the server speaks it: the settings (kept for reloads) and
    /// the rustls configuration made from them by bind.
    pub tls: Option<ServerTls>,
    pub tls_config: Option<Arc<rustls::ServerConfig>>,
    pub tls_handshake_timeout: Duration,
    /// The trusted proxies, as given, when connections start with a PROXY
    /// header; their networks, parsed by bind.
    pub proxy_protocol: Option<Vec<String>>,
    pub trusted_proxies: Option<Arc<[ipnet::IpNet]>>,
    /// Where to serve the Prometheus metrics, if anywhere.
    pub metrics_listen: Option<String>,
    pub metrics_limits: super::metrics::Limits,
    pub handlers: Vec<Option<Arc<dyn Handler>>>,
    pub batch_scope: Option<BatchScope>,
    /// The first handler refused by [`ServerBuilder::handler`], reported by
    /// [`ServerBuilder::validate`].
    pub invalid: Option<ConfigError>,
    /// Asks every connection to finish gracefully (SPEC §6). Made anew by
    /// each bind, so servers built from clones of one builder stop apart.
    pub shutdown: CancellationToken,
    /// Closes whatever is still open once the grace period is over.
    pub force: CancellationToken,
    /// Counters and the memory budget; made anew by each bind too.
    pub shared: Arc<Shared>,
    /// What connections count their read deadlines from.
    pub epoch: tokio::time::Instant,
}

impl Config {
    /// Whether connections carry a [`ConnectionInfo`](super::ConnectionInfo):
    /// only code the application plugs in reads it.
    pub(crate) fn tells_connections(&self) -> bool {
        self.authenticator.is_some() || self.handlers.iter().any(Option::is_some)
    }

    /// Whether a connection can be served on the bare socket, as it is
    /// accepted: no TLS, no PROXY header, nobody asking who it is.
    pub(crate) fn bare(&self) -> bool {
        self.tls_config.is_none() && self.trusted_proxies.is_none() && !self.tells_connections()
    }
}

/// Builds a [`Server`]. Every setting has a default:
///
/// | setting | default |
/// |---|---|
/// | [`listen`](Self::listen) | `127.0.0.1:8888` |
/// | [`reuse_port`](Self::reuse_port) | off: a port in use fails bind |
/// | [`read_timeout`](Self::read_timeout) | 60 s for a whole frame, counted from the end of the previous one |
/// | [`write_timeout`](Self::write_timeout) | 10 s for the peer to take a batch of replies |
/// | [`max_body`](Self::max_body) | 10 MiB, for requests and replies |
/// | [`max_connections`](Self::max_connections) | 10,000; more get ERROR `server busy` |
/// | [`grace`](Self::grace) | 10 s to finish in-flight frames on shutdown |
/// | [`prelogin_max_body`](Self::prelogin_max_body) | 16 KiB before LOGIN, with an authenticator |
/// | [`max_login_failures`](Self::max_login_failures) | 3 failed LOGINs in a row, then close |
/// | [`max_buffered_replies`](Self::max_buffered_replies) | 1 MiB of replies before they are written out |
/// | [`memory_budget`](Self::memory_budget) | 256 MiB for frames and replies, all connections together |
/// | [`raise_nofile_limit`](Self::raise_nofile_limit) | on: the open-files soft limit is raised to the hard limit |
/// | [`metrics_listen`](Self::metrics_listen) | none: no metrics endpoint |
/// | [`metrics_max_scrapers`](Self::metrics_max_scrapers) | 64 scrapes at once; more are closed |
/// | [`metrics_header_timeout`](Self::metrics_header_timeout) | 10 s for a scraper to send its request's headers |
///
/// A builder can be cloned to start several servers with the same settings
/// and handlers; each bound server has its own shutdown.
///
/// HEARTBEAT is echoed and MESSAGE answered `"Server says: "` + body unless
/// handlers are registered for them; LOGIN succeeds unless an
/// [`authenticator`](Self::authenticator) is set.
#[derive(Clone)]
pub struct ServerBuilder {
    config: Config,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        ServerBuilder::new()
    }
}

impl ServerBuilder {
    /// The defaults.
    pub fn new() -> ServerBuilder {
        ServerBuilder {
            config: Config {
                listen: DEFAULT_LISTEN.to_string(),
                listener: super::listen::Source::Bind {
                    reuse_port: DEFAULT_REUSE_PORT,
                },
                read_timeout: DEFAULT_READ_TIMEOUT,
                write_timeout: DEFAULT_WRITE_TIMEOUT,
                max_body: DEFAULT_MAX_BODY,
                max_connections: DEFAULT_MAX_CONNECTIONS,
                grace: DEFAULT_GRACE,
                prelogin_max_body: DEFAULT_PRELOGIN_MAX_BODY,
                max_login_failures: DEFAULT_MAX_LOGIN_FAILURES,
                max_buffered_replies: DEFAULT_MAX_BUFFERED_REPLIES,
                memory_budget: DEFAULT_MEMORY_BUDGET,
                raise_nofile_limit: DEFAULT_RAISE_NOFILE_LIMIT,
                authenticator: None,
                tls: None,
                tls_config: None,
                tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
                proxy_protocol: None,
                trusted_proxies: None,
                metrics_listen: None,
                metrics_limits: super::metrics::Limits {
                    max_scrapers: DEFAULT_METRICS_MAX_SCRAPERS,
                    header_timeout: DEFAULT_METRICS_HEADER_TIMEOUT,
                },
                handlers: vec![None; 256],
                batch_scope: None,
                invalid: None,
                shutdown: CancellationToken::new(),
                force: CancellationToken::new(),
                shared: Shared::new(0),
                epoch: tokio::time::Instant::now(),
            },
        }
    }

    /// The address to listen on, `host:port`; port 0 picks a free port.
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.config.listen = addr.into();
        self
    }

    /// Binds the listen address with SO_REUSEPORT, so that several
    /// processes can listen on one port and Linux spreads new connections
    /// among them (e.g. to start a new version before stopping the old).
    /// Off by default. Ignored with a [`listener`](Self::listener) given.
    pub fn reuse_port(mut self, on: bool) -> Self {
        if let super::listen::Source::Bind { reuse_port } = &mut self.config.listener {
            *reuse_port = on;
        }
        self
    }

    /// Serves on a socket bound and listening already (systemd socket
    /// activation, an inherited descriptor) instead of binding `listen`.
    pub fn listener(mut self, socket: std::net::TcpListener) -> Self {
        self.config.listener = super::listen::Source::Given(Arc::new(socket));
        self
    }

    /// How long a whole frame may take to arrive, counted from the end of the
    /// previous frame (or from accept). Idle and slow-drip connections are
    /// closed when it passes.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.config.read_timeout = timeout;
        self
    }

    /// How long the peer may take to accept a batch of replies before the
    /// connection is closed.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.config.write_timeout = timeout;
        self
    }

    /// The largest body accepted in a request and sent in a reply.
    pub fn max_body(mut self, max_body: usize) -> Self {
        self.config.max_body = max_body;
        self
    }

    /// Connections served at once; more are answered ERROR `server busy` and closed.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.config.max_connections = max;
        self
    }

    /// How long shutdown waits for connections to finish before closing them.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// The body limit before a successful LOGIN (only with an authenticator).
    pub fn prelogin_max_body(mut self, max_body: usize) -> Self {
        self.config.prelogin_max_body = max_body;
        self
    }

    /// Failed LOGINs in a row after which the connection is closed.
    pub fn max_login_failures(mut self, max: u32) -> Self {
        self.config.max_login_failures = max;
        self
    }

    /// Reply bytes a connection buffers before writing them out; while they
    /// are written no further request is handled. A single larger reply is
    /// written on its own.
    pub fn max_buffered_replies(mut self, max: usize) -> Self {
        self.config.max_buffered_replies = max;
        self
    }

    /// Bytes the server may hold for frames and replies, all connections
    /// together, beyond the one pooled buffer (8 KiB) each active
    /// connection reads into. A frame too large for that buffer is claimed
    /// whole from the budget before more of it is read; while the budget
    /// cannot cover it, its connection is not read from (the peer is held
    /// back by TCP), and claims are granted in order. Must be at least
    /// `max_body` + 8, so that any frame can be received.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.config.memory_budget = bytes;
        self
    }

    /// Whether to raise the open-files soft limit to the hard limit on bind.
    pub fn raise_nofile_limit(mut self, raise: bool) -> Self {
        self.config.raise_nofile_limit = raise;
        self
    }

    /// Requires a successful LOGIN, checked by `authenticator`, before any
    /// command but HEARTBEAT and LOGIN (SPEC §3).
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.config.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Speaks TLS on every connection: a client must start with a TLS
    /// handshake, finished within
    /// [`tls_handshake_timeout`](Self::tls_handshake_timeout). A plaintext
    /// GoPro client is told so in an ERROR frame and closed. Keep a clone
    /// of `tls` to [`reload`](ServerTls::reload) its certificate.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// How long a TLS client has to finish its handshake (10 s by default);
    /// one that trickles its ClientHello is closed at the deadline.
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.tls_handshake_timeout = timeout;
        self
    }

    /// Runs behind a balancer that speaks the PROXY protocol (v1 or v2, as
    /// HAProxy's `send-proxy-v2` and nginx's `proxy_protocol on`): only
    /// `trusted` addresses or networks (`10.0.0.0/8`, `127.0.0.1`) may
    /// connect, and each of their connections must start with a PROXY
    /// header within the read timeout, before TLS and frames. The client's
    /// address it gives replaces the balancer's in the log and in
    /// [`ConnectionInfo`](super::ConnectionInfo); a v2 LOCAL header (a
    /// health check) keeps the balancer's. Anybody else is refused, so
    /// that nobody can claim an address.
    pub fn proxy_protocol<S: Into<String>>(mut self, trusted: impl IntoIterator<Item = S>) -> Self {
        self.config.proxy_protocol = Some(trusted.into_iter().map(Into::into).collect());
        self
    }

    /// Serves the server's counters in the Prometheus text format at
    /// `http://ADDR/metrics` (`host:port`; port 0 picks a free port, see
    /// [`Server::metrics_addr`]), on a port of its own, from bind until
    /// the server has stopped. Off by default.
    pub fn metrics_listen(mut self, addr: impl Into<String>) -> Self {
        self.config.metrics_listen = Some(addr.into());
        self
    }

    /// How many scrapes the metrics port serves at once (64 by default, at
    /// least 1): a connection beyond them is closed at once, so that a
    /// flood of them costs the server nothing but the accept.
    pub fn metrics_max_scrapers(mut self, n: usize) -> Self {
        self.config.metrics_limits.max_scrapers = n;
        self
    }

    /// How long a metrics scraper has to send a request's headers, from
    /// its connection (or its previous response) on (10 s by default);
    /// then its connection is closed.
    pub fn metrics_header_timeout(mut self, timeout: Duration) -> Self {
        self.config.metrics_limits.header_timeout = timeout;
        self
    }

    /// Routes frames with command `code` to `handler`. Codes 16–255 are the
    /// application's; HEARTBEAT and MESSAGE may be overridden. LOGIN goes to
    /// the authenticator, and ERROR, GOAWAY and the reserved codes 5–15
    /// cannot be handled: registering them makes [`bind`](Self::bind) fail.
    pub fn handler(mut self, code: impl Into<Command>, handler: impl Handler) -> Self {
        let command = code.into();
        match settings::check_handler_command(command) {
            Ok(()) => self.config.handlers[command.0 as usize] = Some(Arc::new(handler)),
            Err(e) => {
                self.config.invalid.get_or_insert(e);
            }
        }
        self
    }

    /// Runs each batch of frames a connection handles without waiting
    /// (all the whole frames of one read, with the handlers that finish at
    /// once) inside `scope`, which must call the function it is given
    /// exactly once. A language binding uses it to take its interpreter
    /// lock once per batch instead of once per handler call. The scope is
    /// left before anything is awaited; it must not block.
    pub fn batch_scope(mut self, scope: impl Fn(&mut dyn FnMut()) + Send + Sync + 'static) -> Self {
        self.config.batch_scope = Some(Arc::new(scope));
        self
    }

    #[cfg(test)]
    pub(crate) fn into_config(self) -> Config {
        self.config
    }

    /// Checks one setting against its rule: what a binding calls after
    /// changing that setting alone, to refuse a bad value at once. A rule
    /// that ties two settings together belongs to the later one in
    /// [`ServerSetting::ALL`] (`memory_budget` >= `max_body` + 8 is
    /// `memory_budget`'s).
    pub fn check(&self, setting: ServerSetting) -> Result<(), ConfigError> {
        let c = &self.config;
        match setting {
            ServerSetting::ReadTimeout => settings::positive(setting.name(), c.read_timeout),
            ServerSetting::WriteTimeout => settings::positive(setting.name(), c.write_timeout),
            ServerSetting::TlsHandshakeTimeout => {
                settings::positive(setting.name(), c.tls_handshake_timeout)
            }
            ServerSetting::MetricsHeaderTimeout => {
                settings::positive(setting.name(), c.metrics_limits.header_timeout)
            }
            ServerSetting::MetricsMaxScrapers => {
                settings::at_least(setting.name(), c.metrics_limits.max_scrapers as u64, 1)
            }
            ServerSetting::MaxConnections => {
                settings::at_least(setting.name(), c.max_connections as u64, 1)
            }
            ServerSetting::MemoryBudget => {
                let needed = c.max_body.saturating_add(HEADER_LEN);
                if c.memory_budget < needed {
                    return Err(ConfigError::MemoryBudgetTooSmall {
                        budget: c.memory_budget,
                        needed,
                    });
                }
                Ok(())
            }
            ServerSetting::Handler => c.invalid.clone().map_or(Ok(()), Err),
            ServerSetting::ProxyProtocol => match &c.proxy_protocol {
                Some(trusted) => super::proxy::parse_trusted(trusted).map(|_| ()),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Checks every setting: the rules [`bind`](Self::bind) applies, for a
    /// binding that wants to report a bad value before it starts anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ServerSetting::ALL.iter().try_for_each(|&s| self.check(s))
    }

    /// Binds the listener. Fails on an invalid setting ([`validate`](Self::validate))
    /// or if the address cannot be bound.
    pub async fn bind(mut self) -> Result<Server, ServerError> {
        self.validate()?;
        if let Some(tls) = &self.config.tls {
            self.config.tls_config = Some(tls.server_config()?);
        }
        if let Some(trusted) = &self.config.proxy_protocol {
            self.config.trusted_proxies = Some(super::proxy::parse_trusted(trusted)?.into());
        }
        Server::bind(self.config).await
    }
}
