//! `gopro proxy`: a TCP proxy that injects one network fault into every
//! connection, to see how clients and servers cope with a bad network.
//!
//! Each accepted connection gets its own connection to `--upstream` and two
//! pumps, client→server (`up`) and server→client (`down`). The fault applies
//! to the pumps that `--direction` selects, each counting its own bytes:
//!
//! | fault | what the selected pumps do |
//! |---|---|
//! | `none` | forward as read |
//! | `chunk1` | write every byte on its own (no delay between bytes, Nagle off) |
//! | `delay=DUR` | wait DUR before writing each chunk read |
//! | `throttle=BYTES_PER_SEC` | pace the bytes to that rate |
//! | `reset-after=N` | forward N bytes, then reset both sockets (`SO_LINGER` 0, close) |
//! | `stop-after=N` | forward N bytes, then nothing more, with both sockets left open |
//! | `half-close[=N]` | forward N bytes (default 0), then shut down that direction's writing side and drop what else comes that way |
//!
//! An end of stream is passed on as a half-close, and a reset on either
//! side (or a failed write) resets both.

use std::fmt;
use std::io::Write;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

#[derive(Args)]
pub(crate) struct ProxyArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The server to forward to (`host:port`).
    #[arg(long)]
    upstream: String,
    /// The fault: none, chunk1, delay=DUR, throttle=BYTES_PER_SEC, reset-after=N,
    /// stop-after=N or half-close[=N] (N counts bytes forwarded that way on each connection).
    #[arg(long, value_parser = Fault::parse, default_value = "none")]
    fault: Fault,
    /// Which way the fault applies: up (client to server), down (server to client) or both.
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    direction: Direction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Direction {
    Up,
    Down,
    Both,
}

/// What a pump does to the bytes it forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    Chunk1,
    Delay(Duration),
    Throttle(u64),
    ResetAfter(u64),
    StopAfter(u64),
    HalfClose(u64),
}

impl Fault {
    fn parse(text: &str) -> Result<Fault, String> {
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (text, None),
        };
        let count = |value: Option<&str>| -> Result<u64, String> {
            let value = value.ok_or_else(|| format!("{name} needs a byte count: {name}=N"))?;
            value
                .parse()
                .map_err(|_| format!("{name}={value}: not a byte count"))
        };
        match (name, value) {
            ("none", None) => Ok(Fault::None),
            ("chunk1", None) => Ok(Fault::Chunk1),
            ("delay", Some(value)) => crate::duration(value).map(Fault::Delay),
            ("throttle", value) => match count(value)? {
                0 => Err("throttle needs a rate above 0 bytes per second".into()),
                rate => Ok(Fault::Throttle(rate)),
            },
            ("reset-after", value) => count(value).map(Fault::ResetAfter),
            ("stop-after", value) => count(value).map(Fault::StopAfter),
            ("half-close", None) => Ok(Fault::HalfClose(0)),
            ("half-close", value) => count(value).map(Fault::HalfClose),
            _ => Err(format!(
                "unknown fault {text:?}: use none, chunk1, delay=DUR, throttle=BYTES_PER_SEC, \
                 reset-after=N, stop-after=N or half-close[=N]"
            )),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => write!(f, "none"),
            Fault::Chunk1 => write!(f, "chunk1"),
            Fault::Delay(d) => write!(f, "delay={d:?}"),
            Fault::Throttle(rate) => write!(f, "throttle={rate}"),
            Fault::ResetAfter(n) => write!(f, "reset-after={n}"),
            Fault::StopAfter(n) => write!(f, "stop-after={n}"),
            Fault::HalfClose(n) => write!(f, "half-close={n}"),
        }
    }
}

pub(crate) fn run(args: ProxyArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(None)?.block_on(async {
        let listener = TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        let addr = listener.local_addr()?;
        // The same line as `gopro serve` logs, on stdout for scripts and in the log.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
        drop(stdout);
        info!("listening on {addr}");
        info!(
            "forwarding to {} with fault {} ({})",
            args.upstream,
            args.fault,
            format!("{:?}", args.direction).to_lowercase()
        );
        let (up, down) = match args.direction {
            Direction::Up => (args.fault, Fault::None),
            Direction::Down => (Fault::None, args.fault),
            Direction::Both => (args.fault, args.fault),
        };
        let accept = async {
            loop {
                let (client, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let upstream = args.upstream.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(client, &upstream, up, down).await {
                        warn!("{peer}: {e}");
                    }
                });
            }
        };
        tokio::select! {
            () = accept => {}
            () = signal() => info!("proxy stopped"),
        }
        Ok(())
    })
}

async fn signal() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// How a pump ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Its source ended; the end was passed on.
    Eof,
    /// The connection is to be reset.
    Reset,
    /// The other pump reset the connection.
    Cancelled,
}

async fn connection(
    mut client: TcpStream,
    upstream: &str,
    up: Fault,
    down: Fault,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let reset = CancellationToken::new();
    let (up_end, down_end) = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        tokio::join!(
            pump(&mut client_read, &mut server_write, up, &reset),
            pump(&mut server_read, &mut client_write, down, &reset),
        )
    };
    debug!("connection ended: up {up_end:?}, down {down_end:?}");
    if reset.is_cancelled() {
        // A zero linger makes the close below send RST, which is what we want
        // (the blocking linger the deprecation warns about is for nonzero ones).
        #[allow(deprecated)]
        {
            client.set_linger(Some(Duration::ZERO))?;
            server.set_linger(Some(Duration::ZERO))?;
        }
    }
    Ok(())
}

/// Forwards `from` to `to` with `fault` until the source ends or either
/// pump resets the connection.
async fn pump(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    fault: Fault,
    reset: &CancellationToken,
) -> End {
    tokio::select! {
        () = reset.cancelled() => End::Cancelled,
        end = forward(from, to, fault) => {
            let end = match end {
                Ok(end) => end,
                Err(e) => {
                    debug!("pump failed: {e}");
                    End::Reset
                }
            };
            if end == End::Reset {
                reset.cancel();
            }
            end
        }
    }
}

async fn forward(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    fault: Fault,
) -> std::io::Result<End> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut next_send = Instant::now();
    let mut forwarded: u64 = 0;
    // Bytes allowed through before the fault's action, if it has one.
    let limit = match fault {
        Fault::ResetAfter(n) | Fault::StopAfter(n) | Fault::HalfClose(n) => Some(n),
        _ => None,
    };
    loop {
        if limit == Some(forwarded) {
            match fault {
                Fault::ResetAfter(_) => return Ok(End::Reset),
                Fault::StopAfter(_) => std::future::pending::<()>().await,
                Fault::HalfClose(_) => {
                    to.shutdown().await?;
                    while from.read(&mut buf).await? > 0 {}
                    return Ok(End::Eof);
                }
                _ => unreachable!("only these faults have a limit"),
            }
        }
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(End::Eof);
        }
        let take = match limit {
            Some(limit) => n.min(usize::try_from(limit - forwarded).unwrap_or(usize::MAX)),
            None => n,
        };
        let chunk = &buf[..take];
        match fault {
            Fault::Chunk1 => {
                for byte in chunk {
                    to.write_all(std::slice::from_ref(byte)).await?;
                }
            }
            Fault::Delay(delay) => {
                tokio::time::sleep(delay).await;
                to.write_all(chunk).await?;
            }
            Fault::Throttle(rate) => {
                // Pieces of about 10 ms each, each sent when the rate allows;
                // time spent idle earns no burst.
                let piece = usize::try_from(rate / 100).unwrap_or(usize::MAX).max(1);
                for part in chunk.chunks(piece) {
                    next_send = next_send.max(Instant::now());
                    tokio::time::sleep_until(next_send).await;
                    to.write_all(part).await?;
                    next_send += Duration::from_secs_f64(part.len() as f64 / rate as f64);
                }
            }
            _ => to.write_all(chunk).await?,
        }
        forwarded += take as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        assert_eq!(Fault::parse("none"), Ok(Fault::None));
        assert_eq!(Fault::parse("chunk1"), Ok(Fault::Chunk1));
        assert_eq!(
            Fault::parse("delay=20ms"),
            Ok(Fault::Delay(Duration::from_millis(20)))
        );
        assert_eq!(Fault::parse("throttle=1000"), Ok(Fault::Throttle(1000)));
        assert_eq!(Fault::parse("reset-after=10"), Ok(Fault::ResetAfter(10)));
        assert_eq!(Fault::parse("stop-after=0"), Ok(Fault::StopAfter(0)));
        assert_eq!(Fault::parse("half-close"), Ok(Fault::HalfClose(0)));
        assert_eq!(Fault::parse("half-close=5"), Ok(Fault::HalfClose(5)));
        for bad in [
            "",
            "chunk2",
            "delay",
            "delay=soon",
            "throttle=0",
            "reset-after",
            "stop-after=x",
        ] {
            assert!(Fault::parse(bad).is_err(), "{bad}");
        }
    }
}
