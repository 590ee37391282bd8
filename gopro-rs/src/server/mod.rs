//! The tokio server: one task per connection over the sans-IO codec.
//!
//! ```no_run
//! use gopro::server::Server;
//!
//! # async fn run() -> Result<(), gopro::server::ServerError> {
//! let server = Server::builder().listen("127.0.0.1:8888").bind().await?;
//! let _handle = server.shutdown_handle(); // handle.shutdown() stops it from anywhere
//! server.run_until_signal().await; // until SIGINT or SIGTERM, then a graceful shutdown
//! # Ok(())
//! # }
//! ```
//!
//! Each connection reads whatever bytes have arrived, handles every complete
//! frame in order, and writes all their replies in one write before reading
//! again (SPEC §4). A connection holds no buffer while it waits for bytes.

mod accept;
mod accept_errors;
mod budget;
mod config;
mod connection;
mod handler;
mod info;
mod listen;
mod metrics;
mod pool;
mod proxy;
mod stats;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::{fmt, io};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::{
    ServerBuilder, DEFAULT_GRACE, DEFAULT_LISTEN, DEFAULT_MAX_BUFFERED_REPLIES,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_LOGIN_FAILURES, DEFAULT_MEMORY_BUDGET,
    DEFAULT_METRICS_HEADER_TIMEOUT, DEFAULT_METRICS_MAX_SCRAPERS, DEFAULT_PRELOGIN_MAX_BODY,
    DEFAULT_RAISE_NOFILE_LIMIT, DEFAULT_READ_TIMEOUT, DEFAULT_REUSE_PORT,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT, DEFAULT_WRITE_TIMEOUT,
};
pub use handler::{Authenticator, BoxFuture, Handler, Inline, Reply};
pub use info::{ConnectionInfo, TlsInfo};
pub use metrics::METRICS_PATH;
pub use stats::{
    ByCommand, ErrorCounts, HandlerLatency, Stats, StatsHandle, LATENCY_BOUNDS, LATENCY_BUCKETS,
};

use crate::Frame;
use config::Config;
use connection::{Connection, Kind};
use stats::Shared;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is invalid.
    #[error("invalid server setting: {0}")]
    Config(#[from] crate::settings::ConfigError),
    /// The TLS settings were refused.
    #[error("invalid TLS setting: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A blocking call ([`crate::blocking::Server::start`]) was made from
    /// inside an async runtime, where it would block the runtime's thread.
    #[error("a blocking call was made from inside an async runtime; use Server::bind there")]
    BlockingInRuntime,
    /// The runtime that would run the server could not be started.
    #[error("cannot start a runtime for the server: {0}")]
    Runtime(io::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
}

/// Stops a running [`Server`] gracefully (SPEC §6). Cheap to clone; usable
/// from any thread or task.
#[derive(Clone)]
pub struct ShutdownHandle {
    token: CancellationToken,
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Stops accepting, lets connections finish the frames they have
    /// received, sends GOAWAY and closes them. Returns at once.
    pub fn shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        self.token.cancel();
    }

    /// Whether shutdown was asked for.
    pub fn is_shutdown(&self) -> bool {
        self.shared.shutting_down.load(Ordering::Acquire)
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

/// A bound GoPro server; [`run`](Server::run) serves it.
pub struct Server {
    listener: TcpListener,
    config: Arc<Config>,
    local_addr: SocketAddr,
    /// The metrics listener and its address, with `metrics_listen`.
    metrics: Option<(TcpListener, SocketAddr)>,
}

impl Server {
    /// A builder with the defaults; see [`ServerBuilder`].
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    async fn bind(mut config: Config) -> Result<Server, ServerError> {
        config.shutdown = CancellationToken::new();
        config.force = CancellationToken::new();
        config.shared = stats::Shared::new(config.memory_budget);
        if config.raise_nofile_limit {
            raise_nofile_limit();
        }
        let bind_err = |source| ServerError::Bind {
            addr: config.listen.clone(),
            source,
        };
        let listener = config
            .listener
            .listener(&config.listen)
            .await
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let metrics = match &config.metrics_listen {
            Some(addr) => {
                let bind_err = |source| ServerError::Bind {
                    addr: addr.clone(),
                    source,
                };
                let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
                let bound = listener.local_addr().map_err(bind_err)?;
                Some((listener, bound))
            }
            None => None,
        };
        info!("listening on {local_addr}");
        if let Some((_, addr)) = &metrics {
            info!("metrics on {}", metrics::url(*addr));
        }
        Ok(Server {
            listener,
            config: Arc::new(config),
            local_addr,
            metrics,
        })
    }

    /// The address the server listens on (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the metrics are served on (`http://ADDR/metrics`), with
    /// [`ServerBuilder::metrics_listen`]; useful after binding port 0.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// A handle that stops the server gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            token: self.config.shutdown.clone(),
            shared: self.config.shared.clone(),
        }
    }

    /// Reads the server's counters, now or while it runs.
    pub fn stats(&self) -> StatsHandle {
        StatsHandle(self.config.shared.clone())
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        let handle = self.shutdown_handle();
        let run = self.run();
        tokio::pin!(run);
        tokio::select! {
            () = &mut run => return,
            () = signal => handle.shutdown(),
        }
        run.await
    }

    /// Serves until SIGINT or SIGTERM (or a [`ShutdownHandle`]), then shuts
    /// down gracefully.
    pub async fn run_until_signal(self) {
        self.run_until(termination_signal()).await
    }

    /// Serves until a [`ShutdownHandle`] asks it to stop, then stops
    /// accepting, lets every connection finish (SPEC §6) and returns;
    /// connections still busy after the grace period are closed. The
    /// metrics, if any, are served until it returns.
    pub async fn run(self) {
        let Server {
            listener,
            config,
            metrics,
            ..
        } = self;
        // Stopped when run returns, or aborted if it is dropped.
        let metrics = metrics.map(|(listener, _)| {
            let registry = metrics::registry(StatsHandle(config.shared.clone()));
            AbortOnDrop(tokio::spawn(metrics::serve(
                listener,
                registry,
                config.metrics_limits,
            )))
        });
        let shutdown = config.shutdown.clone();
        let tracker = TaskTracker::new();
        let counters = &config.shared.counters;
        let mut accept_errors = accept_errors::AcceptErrors::new("");
        loop {
            let accepted = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => {
                    accept_errors.succeeded();
                    accepted
                }
                Err(e) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    let wait = accept_errors.failed(&e);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            if counters.open.load(Ordering::Relaxed) >= config.max_connections {
                counters.busy.fetch_add(1, Ordering::Relaxed);
                reject_busy(stream, peer, config.max_connections);
                continue;
            }
            counters.open.fetch_add(1, Ordering::Relaxed);
            counters.accepted.fetch_add(1, Ordering::Relaxed);
            let guard = ActiveGuard(config.shared.clone());
            if config.bare() {
                // The plain echo server: nothing but the connection's own
                // future in the task.
                let connection = Connection::new(stream, peer, config.clone(), Kind::Client);
                tracker.spawn(async move {
                    let _guard = guard;
                    connection.run().await;
                });
            } else {
                let config = config.clone();
                tracker.spawn(async move {
                    let _guard = guard;
                    accept::serve(stream, peer, config).await;
                });
            }
        }
        drop(listener);
        tracker.close();
        let open = counters.open.load(Ordering::Relaxed);
        info!(open, grace = ?config.grace, "stopped accepting; finishing connections");
        if tokio::time::timeout(config.grace, tracker.wait())
            .await
            .is_err()
        {
            warn!(
                open = counters.open.load(Ordering::Relaxed),
                "grace period over: closing the connections still open"
            );
            config.force.cancel();
            tracker.wait().await;
        }
        if let Some(mut metrics) = metrics {
            // Waited for, so that the port is closed once run returns.
            metrics.0.abort();
            let _ = (&mut metrics.0).await;
        }
        info!("server stopped");
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Completes at the first SIGINT or SIGTERM (logged), the signals a
/// service manager stops a server with.
///
/// The signals are caught from the call on, not from the first poll: a
/// server that says it is ready after this call cannot be killed by a
/// SIGTERM sent the moment it says so. Call it within a tokio runtime.
pub fn termination_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = int.recv() => info!("SIGINT: shutting down"),
                _ = term.recv() => info!("SIGTERM: shutting down"),
            },
            (Err(e), _) | (_, Err(e)) => {
                warn!("cannot listen for SIGTERM and SIGINT: {e}");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Counts a connection as open until dropped.
struct ActiveGuard(Arc<stats::Shared>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.counters.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Tells a connection over the limit why it is closed, without waiting on it.
fn reject_busy(stream: TcpStream, peer: SocketAddr, max: usize) {
    warn!(%peer, max, "connection limit reached: refusing connection");
    let _ = stream.try_write(&Frame::error("server busy").to_bytes());
    if let Ok(std) = stream.into_std() {
        let _ = std.shutdown(std::net::Shutdown::Write);
    }
}

/// Raises the open-files soft limit to the hard limit, so that many
/// connections do not fail with "too many open files".
fn raise_nofile_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            warn!(
                "cannot read the open-files limit: {}",
                io::Error::last_os_error()
            );
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            } else {
                warn!(
                    "cannot raise the open-files limit: {}",
                    io::Error::last_os_error()
                );
            }
        }
    }
    info!(open_files = limit.rlim_cur, "open-files limit");
}
