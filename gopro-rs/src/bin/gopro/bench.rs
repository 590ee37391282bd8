//! `gopro bench`: a load generator that checks every reply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use gopro::client::{Client, ClientBuilder};
use gopro::Command;
use hdrhistogram::Histogram;

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Heartbeat,
    Message,
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = gopro::server::DEFAULT_LISTEN)]
    addr: String,
    /// Connections, each with its own task.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Requests sent per connection before their replies are read.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Tasks sharing each connection, each making one request at a time
    /// (pipelining by concurrency, instead of --pipeline).
    #[arg(long, default_value_t = 1, conflicts_with = "pipeline")]
    callers: usize,
    /// Reconnect across server restarts, counting failed calls (by kind)
    /// instead of stopping at the first (see the reconnects, re-sent and
    /// lost figures). Each request's body then starts with a number no
    /// other request of the run has (in its first 8 bytes at most), so a
    /// reply handed to the wrong request is caught.
    #[arg(long, conflicts_with = "reconnect_every")]
    reconnect: bool,
    /// Body size in bytes.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// How long to run.
    #[arg(long, value_parser = crate::duration, default_value = "5s")]
    duration: Duration,
    /// What to send: HEARTBEATs (echoed) or MESSAGEs ("Server says: " + body).
    #[arg(long, value_enum, default_value = "message")]
    command: Kind,
    /// Time allowed for each batch of replies.
    #[arg(long, value_parser = crate::duration, default_value = "10s")]
    timeout: Duration,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Worker threads [default: the CPUs this process may use].
    #[arg(long)]
    threads: Option<usize>,
    /// Churn: each connection closes after N replies and opens a new one
    /// (the last batch before a reconnect is cut to fit) [default: never].
    #[arg(long, value_name = "N")]
    reconnect_every: Option<u64>,
    #[command(flatten)]
    tls: crate::tls::ClientTlsArgs,
}

struct Totals {
    replies: AtomicU64,
    bytes: AtomicU64,
    connections: AtomicU64,
    /// Calls that failed (with --reconnect only; otherwise the first stops the run).
    failed: AtomicU64,
    /// The same, by `ClientError::kind`.
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Callers whose last call failed: they had not recovered when the run ended.
    failing_at_end: AtomicU64,
    /// The next request's number, for the bodies of --reconnect.
    sequence: AtomicU64,
    /// The clients' counters, summed at the end.
    reconnects: AtomicU64,
    resent: AtomicU64,
    lost: AtomicU64,
}

pub(crate) fn run(args: BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.conns == 0 || args.pipeline == 0 || args.callers == 0 || args.reconnect_every == Some(0)
    {
        return Err(
            "--conns, --pipeline, --callers and --reconnect-every must be at least 1".into(),
        );
    }
    let runtime = crate::runtime(args.threads)?;
    let (histogram, elapsed, totals) = runtime.block_on(load(&args))?;
    let replies = totals.replies.load(Ordering::Relaxed);
    let bytes = totals.bytes.load(Ordering::Relaxed);
    let connections = totals.connections.load(Ordering::Relaxed);
    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (failed, reconnects, resent, lost) = (
        count(&totals.failed),
        count(&totals.reconnects),
        count(&totals.resent),
        count(&totals.lost),
    );
    let errors = totals
        .errors
        .lock()
        .map_err(|_| "a caller panicked")?
        .clone();
    let failing_at_end = count(&totals.failing_at_end);
    let secs = elapsed.as_secs_f64();
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1e3;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "addr": args.addr,
                "conns": args.conns,
                "pipeline": args.pipeline,
                "callers": args.callers,
                "failed": failed,
                "errors": errors,
                "failing_at_end": failing_at_end,
                "reconnects": reconnects,
                "resent": resent,
                "lost": lost,
                "size": args.size,
                "command": match args.command { Kind::Heartbeat => "heartbeat", Kind::Message => "message" },
                "reconnect_every": args.reconnect_every,
                "connections": connections,
                "seconds": secs,
                "replies": replies,
                "replies_per_sec": replies as f64 / secs,
                "mb_per_sec": bytes as f64 / secs / 1e6,
                "p50_us": us(0.5),
                "p99_us": us(0.99),
                "p999_us": us(0.999),
                "max_us": histogram.max() as f64 / 1e3,
            })
        );
    } else {
        println!(
            "{replies} replies in {secs:.2} s from {} connection(s) x pipeline {}, {}-byte bodies",
            args.conns, args.pipeline, args.size
        );
        if let Some(n) = args.reconnect_every {
            println!("{connections} connections opened, each closed after {n} replies");
        }
        if args.callers > 1 {
            println!("{} caller(s) sharing each connection", args.callers);
        }
        if args.reconnect {
            println!(
                "{failed} call(s) failed; {reconnects} reconnect(s), {resent} request(s) re-sent, {lost} lost"
            );
            if !errors.is_empty() {
                let kinds: Vec<String> = errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
                println!(
                    "failures by kind: {}; {failing_at_end} caller(s) still failing at the end",
                    kinds.join(", ")
                );
            }
        }
        println!(
            "{:.0} replies/s, {:.2} MB/s (requests and replies)",
            replies as f64 / secs,
            bytes as f64 / secs / 1e6
        );
        println!(
            "latency p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
            us(0.5),
            us(0.99),
            us(0.999),
            histogram.max() as f64 / 1e3
        );
    }
    Ok(())
}

async fn load(
    args: &BenchArgs,
) -> Result<(Histogram<u64>, Duration, Arc<Totals>), Box<dyn std::error::Error>> {
    let mut builder = Client::builder()
        .timeout(args.timeout)
        .max_body(args.size + 64)
        .reconnect(args.reconnect);
    if let Some(tls) = args.tls.settings()? {
        builder = builder.tls(tls);
    }
    let mut clients = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        clients.push(builder.clone().connect(&args.addr).await?);
    }
    let totals = Arc::new(Totals {
        replies: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        connections: AtomicU64::new(args.conns as u64),
        failed: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
        failing_at_end: AtomicU64::new(0),
        sequence: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        resent: AtomicU64::new(0),
        lost: AtomicU64::new(0),
    });
    let body = Bytes::from((0..args.size).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let started = Instant::now();
    let until = started + args.duration;
    let progress = progress_bar(args);
    let mut tasks = tokio::task::JoinSet::new();
    let shared: Vec<Client> = clients.iter().map(Client::clone).collect();
    for client in clients {
        if args.callers > 1 || args.reconnect {
            for _ in 0..args.callers {
                let caller = Caller {
                    client: client.clone(),
                    // A copy each: one body shared by every caller would
                    // have its reference count's cache line go from thread
                    // to thread at every request.
                    body: Bytes::copy_from_slice(&body),
                    kind: args.command,
                    until,
                    totals: totals.clone(),
                    keep_going: args.reconnect,
                };
                tasks.spawn(caller.run());
            }
            continue;
        }
        let load = Load {
            body: body.clone(),
            pipeline: args.pipeline,
            kind: args.command,
            until,
            totals: totals.clone(),
            reconnect: args
                .reconnect_every
                .map(|n| (n, builder.clone(), args.addr.clone())),
        };
        tasks.spawn(async move { connection(client, load).await });
    }
    let ticker = {
        let totals = totals.clone();
        let progress = progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = started.elapsed();
                let replies = totals.replies.load(Ordering::Relaxed);
                progress.set_position(elapsed.as_millis() as u64);
                progress.set_message(format!(
                    "{replies} replies, {:.0}/s",
                    replies as f64 / elapsed.as_secs_f64()
                ));
            }
        })
    };
    let mut histogram = Histogram::<u64>::new(3)?;
    while let Some(result) = tasks.join_next().await {
        histogram.add(result??)?;
    }
    ticker.abort();
    progress.finish_and_clear();
    for client in shared {
        let stats = client.stats();
        totals
            .reconnects
            .fetch_add(stats.reconnects, Ordering::Relaxed);
        totals.resent.fetch_add(stats.resent, Ordering::Relaxed);
        totals.lost.fetch_add(stats.lost, Ordering::Relaxed);
    }
    Ok((histogram, started.elapsed(), totals))
}

fn progress_bar(args: &BenchArgs) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if args.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(args.duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

/// What each connection task sends, until when, and where it counts.
struct Load {
    body: Bytes,
    pipeline: usize,
    kind: Kind,
    until: Instant,
    totals: Arc<Totals>,
    /// Replies per connection before it is replaced, and how to open the next.
    reconnect: Option<(u64, ClientBuilder, String)>,
}

/// One connection's loop: a batch of `pipeline` requests, then their
/// replies, each checked, until the time is up. With `reconnect`, the
/// connection is closed and another opened after every `n` replies.
async fn connection(mut client: Client, load: Load) -> Result<Histogram<u64>, String> {
    let Load {
        body,
        pipeline,
        kind,
        until,
        totals,
        reconnect,
    } = load;
    let mut histogram = latencies()?;
    let (command, prefix) = expected(kind);
    let frame_bytes = (2 * 8 + body.len() * 2 + prefix.len()) as u64;
    let mut answered: u64 = 0;
    while Instant::now() < until {
        if let Some((every, builder, addr)) = &reconnect {
            if answered >= *every {
                drop(client);
                client = builder
                    .clone()
                    .connect(addr)
                    .await
                    .map_err(|e| e.to_string())?;
                totals.connections.fetch_add(1, Ordering::Relaxed);
                answered = 0;
            }
        }
        let batch = match &reconnect {
            Some((every, _, _)) => pipeline.min((every - answered) as usize),
            None => pipeline,
        };
        let sent = Instant::now();
        for _ in 0..batch {
            client
                .send(command, body.clone())
                .await
                .map_err(|e| e.to_string())?;
        }
        client.flush().await.map_err(|e| e.to_string())?;
        for _ in 0..batch {
            let reply = client.recv().await.map_err(|e| e.to_string())?;
            check_reply(&reply, command, prefix, &body)?;
            let latency = sent.elapsed().as_nanos() as u64;
            histogram
                .record(latency.max(1))
                .map_err(|e| e.to_string())?;
        }
        answered += batch as u64;
        totals.replies.fetch_add(batch as u64, Ordering::Relaxed);
        totals
            .bytes
            .fetch_add(frame_bytes * batch as u64, Ordering::Relaxed);
    }
    Ok(histogram)
}

/// One of the tasks sharing a connection: a request at a time, each reply
/// checked, until the time is up.
struct Caller {
    client: Client,
    body: Bytes,
    kind: Kind,
    until: Instant,
    totals: Arc<Totals>,
    /// Count a failed call and go on (reconnecting), instead of stopping.
    keep_going: bool,
}

impl Caller {
    fn count(&self, replies: u64, frame_bytes: u64) {
        self.totals.replies.fetch_add(replies, Ordering::Relaxed);
        self.totals
            .bytes
            .fetch_add(frame_bytes * replies, Ordering::Relaxed);
    }

    async fn run(self) -> Result<Histogram<u64>, String> {
        let mut histogram = latencies()?;
        let (command, prefix) = expected(self.kind);
        let frame_bytes = (2 * 8 + self.body.len() * 2 + prefix.len()) as u64;
        let mut last_failed = false;
        // Counted here and added to the totals every `COUNT_EVERY` replies,
        // as the pipelined connections add a batch at a time: 64 callers
        // adding each reply to the shared counters would make the
        // benchmark measure those counters' cache line.
        let mut uncounted: u64 = 0;
        loop {
            let sent = Instant::now();
            if sent >= self.until {
                break;
            }
            let body = if self.keep_going {
                let n = self.totals.sequence.fetch_add(1, Ordering::Relaxed);
                stamped(&self.body, n)
            } else {
                self.body.clone()
            };
            let reply = match self.client.request(command, body.clone()).await {
                Ok(reply) => reply,
                Err(e) if self.keep_going => {
                    self.totals.failed.fetch_add(1, Ordering::Relaxed);
                    let mut errors = self.totals.errors.lock().map_err(|e| e.to_string())?;
                    *errors.entry(e.kind()).or_default() += 1;
                    last_failed = true;
                    continue;
                }
                Err(e) => return Err(e.to_string()),
            };
            last_failed = false;
            check_reply(&reply, command, prefix, &body)?;
            histogram
                .record((sent.elapsed().as_nanos() as u64).max(1))
                .map_err(|e| e.to_string())?;
            uncounted += 1;
            if uncounted == COUNT_EVERY {
                self.count(uncounted, frame_bytes);
                uncounted = 0;
            }
        }
        self.count(uncounted, frame_bytes);
        if last_failed {
            self.totals.failing_at_end.fetch_add(1, Ordering::Relaxed);
        }
        Ok(histogram)
    }
}

/// A histogram of latencies in nanoseconds, to two significant digits
/// (1 %): each caller has its own, and at three digits the 64 callers'
/// histograms (tens of KiB each) would not fit in the cache, and the
/// benchmark would measure its own bookkeeping.
fn latencies() -> Result<Histogram<u64>, String> {
    Histogram::new(2).map_err(|e| e.to_string())
}

/// Replies a caller counts before adding them to the totals.
const COUNT_EVERY: u64 = 64;

/// `body` with its first bytes (8 at most) replaced by the last bytes of
/// `n`, big-endian: a body no other request of the run has.
fn stamped(body: &Bytes, n: u64) -> Bytes {
    let mut owned = body.to_vec();
    let len = owned.len().min(8);
    owned[..len].copy_from_slice(&n.to_be_bytes()[8 - len..]);
    Bytes::from(owned)
}

/// The command sent for `kind`, and what its reply's body starts with.
fn expected(kind: Kind) -> (Command, &'static [u8]) {
    match kind {
        Kind::Heartbeat => (Command::HEARTBEAT, b""),
        Kind::Message => (Command::MESSAGE, b"Server says: "),
    }
}

/// A reply must be the echo of the request: the same command, the prefix, the body.
fn check_reply(
    reply: &gopro::Frame,
    command: Command,
    prefix: &[u8],
    body: &[u8],
) -> Result<(), String> {
    let ok = reply.command == command
        && reply.body.len() == prefix.len() + body.len()
        && reply.body.starts_with(prefix)
        && reply.body[prefix.len()..] == body[..];
    if !ok {
        return Err(format!(
            "wrong reply: {} with {} bytes",
            reply.command,
            reply.body.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    /// Runs `load` against an in-process server with these `gopro bench` flags.
    fn bench(flags: &[&str]) -> (u64, u64) {
        let runtime = crate::runtime(Some(2)).unwrap();
        runtime.block_on(async {
            let server = gopro::server::Server::builder()
                .listen("127.0.0.1:0")
                .bind()
                .await
                .unwrap();
            let addr = server.local_addr().to_string();
            let serving = tokio::spawn(server.run());
            let mut argv = vec!["bench", "--addr", &addr, "--duration", "300ms"];
            argv.extend_from_slice(flags);
            let args = Cli::try_parse_from(argv).unwrap().bench;
            let (_, _, totals) = load(&args).await.unwrap();
            serving.abort();
            (
                totals.replies.load(Ordering::Relaxed),
                totals.connections.load(Ordering::Relaxed),
            )
        })
    }

    #[test]
    fn callers_share_each_connection() {
        let (replies, connections) = bench(&["--conns", "2", "--callers", "8"]);
        assert!(replies > 16, "{replies} replies");
        assert_eq!(connections, 2);
    }

    #[test]
    fn connections_stay_open_by_default() {
        let (replies, connections) = bench(&["--conns", "3", "--pipeline", "4"]);
        assert!(replies > 0);
        assert_eq!(connections, 3);
    }

    #[test]
    fn reconnect_every_closes_each_connection_after_n_replies() {
        let (replies, connections) =
            bench(&["--conns", "3", "--pipeline", "4", "--reconnect-every", "10"]);
        // Batches of 4, 4 and 2 per connection: none carries more than 10
        // replies, and every one but the last of each task carries exactly 10.
        assert!(replies > 30, "{replies} replies");
        assert!(connections * 10 >= replies, "{connections} for {replies}");
        assert!(
            connections * 10 < replies + 3 * 10,
            "{connections} for {replies}"
        );
    }

    #[test]
    fn reconnect_bodies_are_each_their_own() {
        let base = Bytes::from_static(b"0123456789abcdef");
        let (a, b) = (stamped(&base, 1), stamped(&base, 2));
        assert_eq!(&a[..], b"\0\0\0\0\0\0\0\x0189abcdef");
        assert_ne!(a, b);
        // Shorter bodies keep their length and the low bytes of the number.
        assert_eq!(
            &stamped(&Bytes::from_static(b"xyz"), 0x0102_0304)[..],
            b"\x02\x03\x04"
        );
        assert!(stamped(&Bytes::new(), 7).is_empty());
        // Every reply is checked against its own stamped request.
        let (replies, connections) = bench(&["--conns", "2", "--callers", "4", "--reconnect"]);
        assert!(replies > 8, "{replies} replies");
        assert_eq!(connections, 2);
    }

    #[test]
    fn reconnect_every_zero_is_refused() {
        let args = Cli::try_parse_from(["bench", "--reconnect-every", "0"])
            .unwrap()
            .bench;
        let err = run(args).unwrap_err().to_string();
        assert!(err.contains("--reconnect-every"), "{err}");
    }
}
