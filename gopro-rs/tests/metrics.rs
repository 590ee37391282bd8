//! The Prometheus endpoint (`ServerBuilder::metrics_listen`): scraped over a
//! real socket after known traffic, parsed by a Prometheus text parser, and
//! every count checked.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::server::Peer;
use gopro::server::{Server, ServerBuilder, ServerError};
use gopro::{Command, Frame};
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bare HTTP/1.1 request; the status code and the body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("the response within 10 s")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    if method == "GET" && status == 200 {
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
    }
    (status, body.to_string())
}

/// A server of `builder` on a free port, with its metrics on another,
/// running until [`stop`](Running::stop).
struct Running {
    addr: SocketAddr,
    metrics: SocketAddr,
    stats: gopro::server::StatsHandle,
    handle: gopro::server::ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn start(builder: ServerBuilder) -> Running {
        let server = builder
            .listen("127.0.0.1:0")
            .metrics_listen("127.0.0.1:0")
            .bind()
            .await
            .unwrap();
        Running {
            addr: server.local_addr(),
            metrics: server.metrics_addr().expect("a metrics address"),
            stats: server.stats(),
            handle: server.shutdown_handle(),
            task: tokio::spawn(server.run()),
        }
    }

    /// Shuts the server down and waits (20 s at most) until it has stopped.
    async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

/// The samples of one scrape, by name and labels (`name{k="v"}`, labels
/// in order), as the parser read them.
struct Metrics {
    values: HashMap<String, f64>,
    histograms: HashMap<String, Vec<(f64, f64)>>,
    /// The families, by the names of their `# TYPE` lines, in order.
    families: Vec<String>,
}

impl Metrics {
    async fn scrape(addr: SocketAddr) -> Metrics {
        let (status, text) = http(addr, "GET", "/metrics").await;
        assert_eq!(status, 200, "{text}");
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        // The parser skips what it cannot read: make sure it read every
        // sample line (a histogram's buckets are one sample, its sum and
        // count two more).
        let lines = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket{"))
            .count();
        let histograms = scrape
            .samples
            .iter()
            .filter(|s| matches!(s.value, Value::Histogram(_)))
            .count();
        assert_eq!(
            scrape.samples.len(),
            lines + histograms,
            "samples the parser did not read:\n{text}"
        );
        let mut values = HashMap::new();
        let mut histograms = HashMap::new();
        for sample in scrape.samples {
            assert!(sample.metric.starts_with("gopro_"), "{}", sample.metric);
            let mut labels: Vec<_> = sample.labels.iter().collect();
            labels.sort();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = if labels.is_empty() {
                sample.metric.clone()
            } else {
                format!("{}{{{}}}", sample.metric, labels.join(","))
            };
            match sample.value {
                // (A histogram's sum and count come untyped.)
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                    values.insert(key, v);
                }
                Value::Histogram(buckets) => {
                    let buckets = buckets.iter().map(|b| (b.less_than, b.count)).collect();
                    histograms.insert(key, buckets);
                }
                other => panic!("{key}: unexpected {other:?}"),
            }
        }
        let families = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        Metrics {
            values,
            histograms,
            families,
        }
    }

    fn get(&self, key: &str) -> f64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", self.values.keys()))
    }
}

fn frame(command: u8, body: &'static [u8]) -> Frame {
    Frame::new(Command(command), Bytes::from_static(body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_known_traffic_counts_it_exactly() {
    let server = Running::start(
        Server::builder()
            .authenticator(|credentials: Bytes| async move {
                if &credentials[..] == b"secret" {
                    Ok(())
                } else {
                    Err("wrong credentials")
                }
            })
            .handler(16, |frame: Frame| async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, String>(frame.body)
            }),
    )
    .await;
    let (addr, metrics, stats) = (server.addr, server.metrics, server.stats.clone());
    assert_ne!(metrics.port(), 0);

    // Nothing yet: every family is there, at zero.
    let m = Metrics::scrape(metrics).await;
    assert_eq!(m.get("gopro_connections_open"), 0.0);
    assert_eq!(
        m.get("gopro_frames_received_total{command=\"heartbeat\"}"),
        0.0
    );
    assert_eq!(m.get("gopro_proxy_headers_total{result=\"refused\"}"), 0.0);

    let mut peer = Peer::connect(addr).await;
    let mut sent = 0;
    let mut received = 0;
    let mut request = async |peer: &mut Peer, frames: &[Frame]| {
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes()).collect();
        sent += bytes.len();
        peer.send_raw(&bytes).await;
        let mut replies = Vec::new();
        for _ in frames {
            let reply = peer.recv().await.expect("a reply");
            received += reply.to_bytes().len();
            replies.push(reply);
        }
        replies
    };
    let wrong = request(&mut peer, &[frame(2, b"wrong")]).await;
    assert_eq!(wrong[0].command, Command::ERROR);
    let ok = request(&mut peer, &[frame(2, b"secret")]).await;
    assert_eq!(ok[0], frame(2, b"OK"));
    let heartbeats = [frame(0, b""), frame(0, b""), frame(0, b"")];
    assert_eq!(request(&mut peer, &heartbeats).await, heartbeats);
    let messages = request(&mut peer, &[frame(1, b"a"), frame(1, b"bc")]).await;
    assert_eq!(messages[1], frame(1, b"Server says: bc"));
    let app = request(&mut peer, &[frame(16, b"ping")]).await;
    assert_eq!(app[0], frame(16, b"ping"));
    let reserved = request(&mut peer, &[frame(7, b"")]).await;
    assert_eq!(reserved[0].command, Command::ERROR);
    // A second connection, idle.
    let _idle = Peer::connect(addr).await;

    // Bytes written are counted right after the write: wait for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = Metrics::scrape(metrics).await;
        if m.get("gopro_sent_bytes_total") == received as f64
            && m.get("gopro_connections_open") == 2.0
        {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", m.values);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let expect = [
        ("gopro_connections_open", 2),
        ("gopro_connections_accepted_total", 2),
        ("gopro_connections_refused_total{reason=\"busy\"}", 0),
        ("gopro_connections_refused_total{reason=\"proxy\"}", 0),
        ("gopro_connections_refused_total{reason=\"tls\"}", 0),
        ("gopro_frames_received_total{command=\"heartbeat\"}", 3),
        ("gopro_frames_received_total{command=\"message\"}", 2),
        ("gopro_frames_received_total{command=\"login\"}", 2),
        ("gopro_frames_received_total{command=\"error\"}", 0),
        ("gopro_frames_received_total{command=\"goaway\"}", 0),
        ("gopro_frames_received_total{command=\"reserved\"}", 1),
        ("gopro_frames_received_total{command=\"application\"}", 1),
        ("gopro_frames_sent_total{command=\"heartbeat\"}", 3),
        ("gopro_frames_sent_total{command=\"message\"}", 2),
        ("gopro_frames_sent_total{command=\"login\"}", 1),
        ("gopro_frames_sent_total{command=\"error\"}", 2),
        ("gopro_frames_sent_total{command=\"goaway\"}", 0),
        ("gopro_frames_sent_total{command=\"reserved\"}", 0),
        ("gopro_frames_sent_total{command=\"application\"}", 1),
        ("gopro_received_bytes_total", sent),
        ("gopro_sent_bytes_total", received),
        ("gopro_errors_total{kind=\"login\"}", 1),
        ("gopro_errors_total{kind=\"handler\"}", 0),
        ("gopro_errors_total{kind=\"protocol\"}", 0),
        ("gopro_errors_total{kind=\"tls\"}", 0),
        ("gopro_memory_budget_used_bytes", 0),
        ("gopro_memory_budget_limit_bytes", 256 * 1024 * 1024),
        ("gopro_tls_handshakes_total{result=\"ok\"}", 0),
        ("gopro_tls_handshakes_total{result=\"failed\"}", 0),
        ("gopro_proxy_headers_total{result=\"ok\"}", 0),
        ("gopro_goaways_sent_total", 0),
        ("gopro_handler_duration_seconds_count", 1),
    ];
    for (key, value) in expect {
        assert_eq!(m.get(key), value as f64, "{key}");
    }
    // The one handler call slept 30 ms: in the buckets from 50 ms on.
    let sum = m.get("gopro_handler_duration_seconds_sum");
    assert!((0.030..5.0).contains(&sum), "{sum}");
    let buckets = &m.histograms["gopro_handler_duration_seconds"];
    assert_eq!(buckets.len(), gopro::server::LATENCY_BUCKETS);
    for &(le, count) in buckets {
        let expected = if le >= 0.05 { 1.0 } else { 0.0 };
        assert_eq!(count, expected, "le={le}: {buckets:?}");
    }
    assert_eq!(buckets.last().unwrap().0, f64::INFINITY);

    // The core's snapshot says the same.
    let s = stats.snapshot();
    assert_eq!(s.frames_in, 9);
    assert_eq!(s.frames_out, 9);
    assert_eq!(s.bytes_in, sent as u64);

    // Only /metrics, only GET and HEAD.
    let (status, body) = http(metrics, "GET", "/").await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = http(metrics, "GET", "/metrics/x").await;
    assert_eq!(status, 404);
    let (status, _) = http(metrics, "POST", "/metrics").await;
    assert_eq!(status, 405);
    let (status, body) = http(metrics, "HEAD", "/metrics").await;
    assert_eq!((status, body.as_str()), (200, ""));

    // Shutdown: a GOAWAY to each open connection, then the metrics port closes.
    server.stop().await;
    assert_eq!(stats.snapshot().frames_out_by_command.goaway, 2);
    assert!(
        TcpStream::connect(metrics).await.is_err(),
        "metrics port still open"
    );
}

/// The built-in handlers on the synchronous path count a MESSAGE answered
/// as such apart from the other frames (see `Batch` in the server's stats):
/// one batch mixing them, with a MESSAGE whose reply is over the body limit
/// (an ERROR), is counted exactly.
#[tokio::test]
async fn a_batch_of_mixed_frames_is_counted_by_class() {
    let server = Running::start(Server::builder().max_body(20)).await;
    let (addr, metrics) = (server.addr, server.metrics);
    let mut peer = Peer::connect(addr).await;
    let frames = [
        frame(0, b""),
        frame(1, b"a"),
        frame(2, b"x"),
        // "Server says: " and 10 bytes: over the 20-byte limit.
        frame(1, b"0123456789"),
        frame(0, b""),
        frame(0, b""),
        frame(1, b"bc"),
        frame(7, b""),
        frame(1, b"d"),
    ];
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes()).collect();
    peer.send_raw(&bytes).await;
    let mut replies = Vec::new();
    for _ in &frames {
        replies.push(peer.recv().await.expect("a reply").command.0);
    }
    assert_eq!(replies, [0, 1, 2, 3, 0, 0, 1, 3, 1]);
    let m = Metrics::scrape(metrics).await;
    let expect = [
        ("heartbeat", 3, 3),
        ("message", 4, 3),
        ("login", 1, 1),
        ("error", 0, 2),
        ("goaway", 0, 0),
        ("reserved", 1, 0),
        ("application", 0, 0),
    ];
    for (class, received, sent) in expect {
        let key = format!("gopro_frames_received_total{{command=\"{class}\"}}");
        assert_eq!(m.get(&key), received as f64, "{key}");
        let key = format!("gopro_frames_sent_total{{command=\"{class}\"}}");
        assert_eq!(m.get(&key), sent as f64, "{key}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_refused_connection_and_a_protocol_error_are_counted() {
    let server = Running::start(Server::builder().max_connections(1)).await;
    let (addr, metrics) = (server.addr, server.metrics);
    let mut first = Peer::connect(addr).await;
    first.send_raw(b"XX\x01\x00\x00\x00\x00\x00").await;
    first.expect_error("magic").await;
    first.expect_closed().await;
    // The first is closed once its linger is over; then the limit is free.
    let mut held = loop {
        let mut peer = Peer::connect(addr).await;
        match peer.recv_within(Duration::from_millis(200)).await {
            Err(()) => break peer,
            Ok(frame) => {
                let frame = frame.expect("ERROR server busy");
                assert_eq!(frame.body_text(), "server busy");
            }
        }
    };
    let mut busy = Peer::connect(addr).await;
    busy.expect_error("server busy").await;
    let m = Metrics::scrape(metrics).await;
    assert!(m.get("gopro_connections_refused_total{reason=\"busy\"}") >= 1.0);
    assert_eq!(
        m.get("gopro_connections_refused_total{reason=\"busy\"}"),
        m.get("gopro_errors_total{kind=\"busy\"}")
    );
    assert_eq!(m.get("gopro_errors_total{kind=\"protocol\"}"), 1.0);
    assert_eq!(m.get("gopro_frames_sent_total{command=\"error\"}"), 1.0);
    assert_eq!(m.get("gopro_connections_open"), 1.0);
    assert_eq!(held.request(&frame(0, b"")).await, frame(0, b""));
    server.stop().await;
}

#[tokio::test]
async fn a_metrics_address_that_cannot_be_bound_fails_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let err = Server::builder()
        .listen("127.0.0.1:0")
        .metrics_listen(addr.clone())
        .bind()
        .await
        .err()
        .expect("bind fails");
    match err {
        ServerError::Bind { addr: failed, .. } => assert_eq!(failed, addr),
        other => panic!("{other:?}"),
    }
    // Without the setting there is no metrics address.
    let server = Server::builder()
        .listen("127.0.0.1:0")
        .bind()
        .await
        .unwrap();
    assert_eq!(server.metrics_addr(), None);
}

#[tokio::test]
async fn the_readme_lists_every_metric() {
    let server = Running::start(Server::builder()).await;
    let served = Metrics::scrape(server.metrics).await.families;
    server.stop().await;
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let listed: Vec<String> = gopro::error_samples::readme_rows(&readme, "metrics")
        .iter()
        .map(|row| row[0].trim_matches('`').to_string())
        .collect();
    assert_eq!(listed, served, "the README's metrics table and a scrape");
}

/// Everything the peer sends until it closes; a reset counts as a close.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// `max` scrapes under way at once, each half a request head in (well
/// within the header timeout), and one more: that one is closed at once,
/// unanswered, and the `max` are served.
async fn past_max_scrapes_one_is_closed(builder: ServerBuilder, max: usize) {
    let server = Running::start(builder).await;
    let metrics = server.metrics;
    // The port accepts in the order of connection, so these are the first
    // `max` it takes.
    let head = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\n");
    let mut scrapes = Vec::new();
    for _ in 0..max {
        let mut scrape = TcpStream::connect(metrics).await.unwrap();
        scrape.write_all(head.as_bytes()).await.unwrap();
        scrapes.push(scrape);
    }
    // Closed unanswered, at once: not at the header timeout.
    let mut extra = TcpStream::connect(metrics).await.unwrap();
    let _ = extra
        .write_all(format!("{head}Connection: close\r\n\r\n").as_bytes())
        .await;
    let answer = tokio::time::timeout(Duration::from_secs(5), until_closed(&mut extra))
        .await
        .expect("the scrape past the limit was not closed at once");
    assert!(
        answer.is_empty(),
        "scrape {} of {max} was answered: {}",
        max + 1,
        String::from_utf8_lossy(&answer[..answer.len().min(200)])
    );
    // The others are served meanwhile.
    for (i, scrape) in scrapes.iter_mut().enumerate() {
        scrape
            .write_all(b"Connection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), until_closed(scrape))
            .await
            .unwrap_or_else(|_| panic!("scrape {i} got no answer"));
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "scrape {i}: {answer}");
        assert!(answer.contains("\ngopro_connections_open "), "scrape {i}");
    }
    // Done, they make room again.
    let (status, _) = http(metrics, "GET", "/metrics").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_64_scrapes_at_once_a_connection_is_closed_and_the_64_are_served() {
    past_max_scrapes_one_is_closed(Server::builder(), 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_max_scrapers_sets_the_limit() {
    past_max_scrapes_one_is_closed(Server::builder().metrics_max_scrapers(3), 3).await;
}

/// The header timeout at 1 s (the default 10 s would cost CI the
/// difference): half a request head is closed at it, unanswered, while a
/// head finished at half of it is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_at_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let margin = Duration::from_millis(1500);
    let server = Running::start(Server::builder().metrics_header_timeout(timeout)).await;
    let addr = server.metrics;
    let head = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\n");

    let started = std::time::Instant::now();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(head.as_bytes()).await.unwrap();
    let mut in_time = TcpStream::connect(addr).await.unwrap();
    in_time.write_all(head.as_bytes()).await.unwrap();
    let finished = tokio::spawn(async move {
        tokio::time::sleep(timeout / 2).await;
        in_time
            .write_all(b"Connection: close\r\n\r\n")
            .await
            .unwrap();
        until_closed(&mut in_time).await
    });

    let answer = tokio::time::timeout(timeout + margin * 2, until_closed(&mut half))
        .await
        .expect("half a head was never closed");
    let closed = started.elapsed();
    assert!(
        answer.is_empty(),
        "half a head was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        closed >= timeout && closed < timeout + margin,
        "half a head closed after {closed:?}, the header timeout is {timeout:?}"
    );
    let answer = String::from_utf8(finished.await.unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("gopro_connections_open 0"), "{answer}");
    server.stop().await;
}

/// No scrapes at all, or no time for headers, is refused by name.
#[test]
fn zero_scrapers_or_a_zero_header_timeout_is_refused() {
    let err = Server::builder()
        .metrics_max_scrapers(0)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("metrics_max_scrapers"), "{err}");
    let err = Server::builder()
        .metrics_header_timeout(Duration::ZERO)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("metrics_header_timeout"), "{err}");
    Server::builder()
        .metrics_max_scrapers(1)
        .validate()
        .unwrap();
}

/// Connections refused by the PROXY protocol (an untrusted address) and by
/// TLS (plaintext on a TLS port) are counted by their reason, as are the
/// headers and handshakes they failed.
#[tokio::test]
async fn connections_refused_by_proxy_and_tls_are_counted_by_reason() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Only 127.0.0.2 may send a header: a connection from 127.0.0.1 is refused.
    let proxied = Running::start(Server::builder().proxy_protocol(["127.0.0.2"])).await;
    let mut untrusted = tokio::net::TcpStream::connect(proxied.addr).await.unwrap();
    let _ = untrusted
        .write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
        .await;
    let mut rest = Vec::new();
    let _ = untrusted.read_to_end(&mut rest).await;
    let ca = common::pki::Ca::new("metrics");
    let pem = ca.server();
    let tls = gopro::tls::ServerTls::from_pem(pem.cert.as_bytes(), pem.key.as_bytes()).unwrap();
    let secured = Running::start(Server::builder().tls(tls)).await;
    let mut plain = Peer::connect(secured.addr).await;
    plain.send_raw(&frame(0, b"").to_bytes()).await;
    plain.expect_error("this port requires TLS").await;
    plain.expect_closed().await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for (running, reason, kind, family) in [
        (
            &proxied,
            "proxy",
            None,
            "gopro_proxy_headers_total{result=\"refused\"}",
        ),
        (
            &secured,
            "tls",
            Some("tls"),
            "gopro_tls_handshakes_total{result=\"failed\"}",
        ),
    ] {
        let key = format!("gopro_connections_refused_total{{reason=\"{reason}\"}}");
        let m = loop {
            let m = Metrics::scrape(running.metrics).await;
            if m.get(&key) > 0.0 {
                break m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key}: {:?}",
                m.values
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(m.get(&key), 1.0, "{key}");
        assert_eq!(m.get(family), 1.0, "{family}");
        if let Some(kind) = kind {
            assert_eq!(
                m.get(&format!("gopro_errors_total{{kind=\"{kind}\"}}")),
                1.0
            );
        }
        for other in ["busy", "proxy", "tls"]
            .into_iter()
            .filter(|r| *r != reason)
        {
            let key = format!("gopro_connections_refused_total{{reason=\"{other}\"}}");
            assert_eq!(m.get(&key), 0.0, "{key}");
        }
    }
    proxied.stop().await;
    secured.stop().await;
}
