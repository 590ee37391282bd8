//! `gopro`: the GoPro server and the tools an operator reaches for.

mod bench;
mod check;
mod ping;
mod proxy;
mod send;
mod serve;
mod tls;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// The GoPro binary TCP protocol: server and tools.
#[derive(Parser)]
#[command(name = "gopro", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a GoPro server (HEARTBEAT echo, MESSAGE "Server says: " echo, LOGIN).
    Serve(serve::ServeArgs),
    /// Send one frame and print the reply (`COMMAND body`).
    Send(send::SendArgs),
    /// Measure HEARTBEAT round-trip times.
    Ping(ping::PingArgs),
    /// Load a server with pipelined requests, check every reply, report throughput and latency.
    Bench(bench::BenchArgs),
    /// Check that a server follows the wire protocol: one PASS, FAIL or SKIP line per case.
    Check(check::CheckArgs),
    /// Forward TCP to a server while injecting a network fault (chunking, delay, throttle, reset, stall, half-close).
    Proxy(proxy::ProxyArgs),
}

/// Parses durations such as `2s`, `500ms` or `1m`.
pub(crate) fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{e} (write durations like 2s or 500ms)"))
}

/// A client to `addr`, with `timeout` to connect and for each reply.
pub(crate) async fn connect(
    addr: &str,
    timeout: Duration,
    tls: &tls::ClientTlsArgs,
) -> Result<gopro::client::Client, Box<dyn std::error::Error>> {
    let mut builder = gopro::client::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout);
    if let Some(tls) = tls.settings()? {
        builder = builder.tls(tls);
    }
    Ok(builder.connect(addr).await?)
}

/// Worker threads: the CPUs this process may run on (one means a
/// current-thread runtime, the fastest when pinned to one core).
pub(crate) fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GOPRO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Cmd::Serve(args) => serve::run(args),
        Cmd::Send(args) => send::run(args),
        Cmd::Ping(args) => ping::run(args),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Check(args) => check::run(args),
        Cmd::Proxy(args) => proxy::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gopro: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
