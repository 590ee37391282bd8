//! `gopro serve`.

use std::time::Duration;

use clap::Args;
use gopro::server::{
    Server, StatsHandle, DEFAULT_LISTEN, DEFAULT_MAX_BUFFERED_REPLIES, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MEMORY_BUDGET, DEFAULT_METRICS_MAX_SCRAPERS,
};
use tracing::{info, warn};

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
    /// Time allowed for a whole frame to arrive, from the end of the previous one.
    #[arg(long, value_parser = crate::duration, default_value = "60s")]
    read_timeout: Duration,
    /// Time allowed for the client to take a batch of replies.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    write_timeout: Duration,
    /// Largest body accepted in a request and sent in a reply, in bytes.
    #[arg(long, default_value_t = gopro::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Connections served at once; more get ERROR "server busy".
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Time connections get to finish on shutdown before they are closed.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    grace: Duration,
    /// Reply bytes buffered per connection before they are written out.
    #[arg(long, default_value_t = DEFAULT_MAX_BUFFERED_REPLIES)]
    max_buffered_replies: usize,
    /// Require a LOGIN with exactly these credentials before any command but
    /// HEARTBEAT (SPEC §3); without it every LOGIN succeeds.
    #[arg(long, value_name = "CREDENTIALS")]
    auth: Option<String>,
    /// Bytes held for frames and replies, all connections together; a large
    /// frame waits, unread, until the budget can hold it.
    #[arg(long, default_value_t = DEFAULT_MEMORY_BUDGET)]
    memory_budget: usize,
    /// Also log the counters (connections, frames, bytes buffered, errors)
    /// this often; they are always logged on SIGUSR1.
    #[arg(long, value_parser = crate::duration)]
    stats_every: Option<Duration>,
    /// Serve Prometheus metrics at http://ADDR/metrics (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Scrapes the metrics port serves at once; one more is closed at once.
    #[arg(long, default_value_t = DEFAULT_METRICS_MAX_SCRAPERS)]
    metrics_max_scrapers: usize,
    /// Time a metrics scraper has to send its request's headers.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    metrics_header_timeout: Duration,
    /// Worker threads [default: the CPUs this process may use; 1 runs on the current thread].
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    tls: crate::tls::ServerTlsArgs,
    /// Connections come through a balancer that sends a PROXY header (v1
    /// or v2) first; only --trusted-proxies may connect.
    #[arg(long, requires = "trusted_proxies")]
    proxy_protocol: bool,
    /// The balancers' addresses or networks, e.g. 10.0.0.0/8,127.0.0.1.
    #[arg(
        long,
        value_name = "CIDR[,CIDR...]",
        value_delimiter = ',',
        requires = "proxy_protocol"
    )]
    trusted_proxies: Vec<String>,
    /// Bind with SO_REUSEPORT, so that several processes share the port.
    #[arg(long)]
    reuse_port: bool,
}

pub(crate) fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(args.threads)?.block_on(async {
        let mut builder = Server::builder();
        if let Some(addr) = args.metrics_listen {
            builder = builder.metrics_listen(addr);
        }
        builder = builder
            .metrics_max_scrapers(args.metrics_max_scrapers)
            .metrics_header_timeout(args.metrics_header_timeout);
        if let Some(expected) = args.auth {
            let expected = bytes::Bytes::from(expected);
            builder = builder.authenticator(move |credentials: bytes::Bytes| {
                let good = credentials == expected;
                async move {
                    if good {
                        Ok(())
                    } else {
                        Err("wrong credentials")
                    }
                }
            });
        }
        let tls = args.tls.settings()?;
        if let Some(tls) = &tls {
            builder = builder
                .tls(tls.clone())
                .tls_handshake_timeout(args.tls.tls_handshake_timeout);
            tokio::spawn(reload_on_sighup(tls.clone()));
        }
        if args.proxy_protocol {
            builder = builder.proxy_protocol(args.trusted_proxies);
        }
        // Started by systemd with a socket (LISTEN_FDS): serve on it, and
        // ignore --listen.
        match listenfd::ListenFd::from_env().take_tcp_listener(0) {
            Ok(Some(socket)) => {
                info!("serving on the socket passed by the service manager (LISTEN_FDS)");
                builder = builder.listener(socket);
            }
            Ok(None) => {}
            Err(e) => {
                return Err(format!("the socket passed in LISTEN_FDS is unusable: {e}").into())
            }
        }
        let server = builder
            .listen(args.listen)
            .read_timeout(args.read_timeout)
            .write_timeout(args.write_timeout)
            .max_body(args.max_body)
            .max_connections(args.max_connections)
            .grace(args.grace)
            .max_buffered_replies(args.max_buffered_replies)
            .memory_budget(args.memory_budget)
            .reuse_port(args.reuse_port)
            .bind()
            .await?;
        tokio::spawn(report_stats(server.stats(), args.stats_every));
        // SIGTERM is caught before readiness is told, so a service manager
        // that stops the server at once still gets a graceful shutdown.
        let stop = gopro::server::termination_signal();
        // Readiness for systemd (Type=notify); nothing without NOTIFY_SOCKET.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        server
            .run_until(async {
                stop.await;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
            })
            .await;
        Ok(())
    })
}

/// Reads the certificate and key files again on each SIGHUP; a reload
/// that fails keeps the certificate in use.
async fn reload_on_sighup(tls: gopro::tls::ServerTls) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(hup) => hup,
        Err(e) => {
            warn!("cannot listen for SIGHUP: {e}");
            return;
        }
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => warn!("SIGHUP: TLS certificate not reloaded, the old one stays: {e}"),
        }
    }
}

/// Logs the server's counters on SIGUSR1, and every `every` if given.
async fn report_stats(stats: StatsHandle, every: Option<Duration>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(usr1) => Some(usr1),
        Err(e) => {
            warn!("cannot listen for SIGUSR1: {e}");
            None
        }
    };
    let mut ticker =
        every.map(|every| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
    loop {
        let signalled = async {
            match usr1.as_mut() {
                Some(usr1) => usr1.recv().await,
                None => std::future::pending().await,
            }
        };
        let ticked = async {
            match ticker.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            received = signalled => if received.is_none() { usr1 = None },
            _ = ticked => {}
        }
        info!("stats: {}", stats.snapshot());
    }
}
