//! The `gopro` command as a process, and the Go peer against it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{go_client, gopro_bin, gopro_serve, spawn_listening};

#[test]
fn go_client_passes_every_scenario_against_gopro_serve() {
    let server = gopro_serve(&[]);
    for scenario in ["article", "pipeline", "big", "login"] {
        let (ok, out) = go_client(server.addr, scenario);
        assert!(ok, "{scenario}: {out}");
        assert!(out.contains(&format!("PASS {scenario}")), "{out}");
    }
    let (ok, out) = go_client(server.addr, "article");
    assert!(ok);
    assert!(
        out.contains("Server Echo: Server says: Hello TCP World!"),
        "{out}"
    );
}

#[test]
fn serve_exits_cleanly_on_sigterm_and_sigint() {
    for signal in ["TERM", "INT"] {
        let mut server = gopro_serve(&["--grace", "2s"]);
        let (ok, out) = go_client(server.addr, "article");
        assert!(ok, "{out}");
        server.signal(signal);
        let status = server.wait(Duration::from_secs(10));
        assert!(status.success(), "{signal}: {status}");
        std::thread::sleep(Duration::from_millis(50));
        let log = server.log_lines().join("\n");
        assert!(log.contains(&format!("SIG{signal}")), "{log}");
        assert!(log.contains("server stopped"), "{log}");
    }
}

#[test]
fn serve_applies_its_options() {
    let server = gopro_serve(&[
        "--max-body",
        "1000",
        "--read-timeout",
        "2s",
        "--write-timeout",
        "500ms",
        "--max-connections",
        "5",
    ]);
    // The Go client's 10 MiB scenario is refused by a 1000-byte limit.
    let (ok, out) = go_client(server.addr, "big");
    assert!(!ok, "{out}");
    assert!(out.contains("exceeds the limit of 1000 bytes"), "{out}");
    let (ok, out) = go_client(server.addr, "article");
    assert!(ok, "{out}");
}

#[test]
fn serve_rejects_bad_options_clearly() {
    refused(
        ["serve", "--read-timeout", "soon"],
        "write durations like 2s or 500ms",
    );

    refused(
        ["serve", "--listen", "256.0.0.1:1"],
        "cannot listen on 256.0.0.1:1",
    );
}

/// `gopro` with `args` fails, saying `reason` on stderr.
fn refused<const N: usize>(args: [&str; N], reason: &str) {
    let out = Command::new(gopro_bin()).args(args).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(reason), "{err}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["send", "--help"],
        &["ping", "--help"],
        &["bench", "--help"],
    ] {
        let out = Command::new(gopro_bin()).args(args).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: gopro"), "{text}");
    }
}

fn gopro(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(gopro_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn send_prints_the_reply_and_fails_on_error() {
    let server = gopro_serve(&[]);
    let addr = server.addr.to_string();
    let (ok, out, _) = gopro(&["send", "--addr", &addr, "Hello TCP World!"]);
    assert!(ok);
    assert_eq!(out, "MESSAGE Server says: Hello TCP World!\n");
    let (ok, out, _) = gopro(&["send", "--addr", &addr, "--command", "0", "beat"]);
    assert!(ok);
    assert_eq!(out, "HEARTBEAT beat\n");
    let (ok, _, err) = gopro(&["send", "--addr", &addr, "--command", "42", "x"]);
    assert!(!ok);
    assert!(err.contains("server error: unknown command: 42"), "{err}");
}

#[test]
fn ping_reports_round_trips() {
    let server = gopro_serve(&[]);
    let addr = server.addr.to_string();
    let (ok, out, err) = gopro(&[
        "ping",
        "--addr",
        &addr,
        "--count",
        "3",
        "--interval",
        "10ms",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.matches("HEARTBEAT from").count(), 3, "{out}");
    assert!(out.contains("3 heartbeats, rtt min/avg/max"), "{out}");
}

#[test]
fn bench_checks_replies_and_reports_json() {
    let server = gopro_serve(&[]);
    let addr = server.addr.to_string();
    for command in ["heartbeat", "message"] {
        let (ok, out, err) = gopro(&[
            "bench",
            "--addr",
            &addr,
            "--conns",
            "4",
            "--pipeline",
            "8",
            "--size",
            "100",
            "--duration",
            "300ms",
            "--command",
            command,
            "--json",
        ]);
        assert!(ok, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(report["replies"].as_u64().unwrap() > 100, "{report}");
        assert!(report["p99_us"].as_f64().unwrap() > 0.0);
        assert!(report["replies_per_sec"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_fails_on_wrong_replies() {
    // Against a server whose MESSAGE answer is not the echo the bench expects.
    let server = go_serve_with_bad_replies();
    let (ok, _, err) = gopro(&[
        "bench",
        "--addr",
        &server.to_string(),
        "--conns",
        "1",
        "--duration",
        "200ms",
    ]);
    assert!(!ok);
    assert!(err.contains("wrong reply"), "{err}");
}

/// A tiny server that answers every frame with a MESSAGE "nope".
fn go_serve_with_bad_replies() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut header = [0u8; 8];
                while stream.read_exact(&mut header).is_ok() {
                    let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
                    let mut body = vec![0u8; len];
                    if stream.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = gopro::Frame::new(gopro::Command::MESSAGE, "nope").to_bytes();
                    if stream.write_all(&reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn our_client_against_the_go_server() {
    use gopro::blocking::Client;
    use gopro::{Command, Frame};
    for flags in [&[][..], &["-tuned"]] {
        let server = common::process::go_serve(flags);
        let client = Client::connect(&server.addr.to_string()).unwrap();
        client.heartbeat().unwrap();
        let reply = client
            .request(Command::MESSAGE, "Hello TCP World!")
            .unwrap();
        assert_eq!(
            reply,
            Frame::new(Command::MESSAGE, "Server says: Hello TCP World!")
        );
        for i in 0..200 {
            client.send(Command::MESSAGE, format!("m{i}")).unwrap();
        }
        for i in 0..200 {
            assert_eq!(client.recv().unwrap().body, format!("Server says: m{i}"));
        }
        // 10 MiB: the largest HEARTBEAT body, and the largest MESSAGE whose echo fits.
        let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let reply = client.request(Command::HEARTBEAT, big.clone()).unwrap();
        assert_eq!(&reply.body[..], &big[..]);
        let reply = client
            .request(Command::MESSAGE, big[..big.len() - 13].to_vec())
            .unwrap();
        assert_eq!(&reply.body[13..], &big[..big.len() - 13]);
        // The reference server echoes a full 10 MiB MESSAGE with 13 bytes
        // more than the limit; our client refuses it as SPEC §2 says.
        let err = client.request(Command::MESSAGE, big).unwrap_err();
        assert_eq!(err.kind(), "protocol", "{err}");
    }
}

/// The server's peak resident memory (VmHWM), in bytes.
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// `connections` clients at once, each echoing `count` MESSAGE frames of
/// `size` bytes, every reply checked. Each frame is sent but for its last
/// byte, and completed once every client got that far (or after a moment),
/// so that the server is offered all the frames at the same time.
fn load_large_frames(addr: std::net::SocketAddr, connections: usize, size: usize, count: usize) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ready = std::sync::Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..connections)
        .map(|c| {
            let ready = ready.clone();
            std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let frame = gopro::Frame::new(1u8, vec![c as u8; size]).to_bytes();
                for round in 1..=count {
                    s.write_all(&frame[..frame.len() - 1]).unwrap();
                    ready.fetch_add(1, Ordering::SeqCst);
                    let started = std::time::Instant::now();
                    while ready.load(Ordering::SeqCst) < round * connections
                        && started.elapsed() < Duration::from_secs(2)
                    {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    s.write_all(&frame[frame.len() - 1..]).unwrap();
                    let mut reply = vec![0u8; 8 + 13 + size];
                    s.read_exact(&mut reply).unwrap();
                    assert!(reply[21..].iter().all(|&b| b == c as u8));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
}

/// Many connections sending large frames at once: with a budget the
/// server's resident memory stays under the budget plus a fixed overhead;
/// without one (the default 256 MiB here) the same load takes far more.
#[test]
fn serve_memory_stays_under_its_budget() {
    const MIB: usize = 1024 * 1024;
    let (connections, size, count) = (24, 2 * MIB, 2);
    let budget = 8 * MIB;
    let peak_with = |args: &[&str]| {
        let server = gopro_serve(args);
        let idle = peak_rss(server.child.id());
        load_large_frames(server.addr, connections, size, count);
        (idle, peak_rss(server.child.id()))
    };
    let max_body = (4 * MIB).to_string();
    let budget_arg = budget.to_string();
    let (idle, peak) = peak_with(&[
        "--max-body",
        &max_body,
        "--memory-budget",
        &budget_arg,
        "--threads",
        "2",
    ]);
    let (_, unbounded) = peak_with(&["--max-body", &max_body, "--threads", "2"]);
    eprintln!(
        "peak RSS: idle {} KiB; {connections} x {} MiB frames with an {} MiB budget: {} KiB; with the default budget: {} KiB",
        idle / 1024,
        size / MIB,
        budget / MIB,
        peak / 1024,
        unbounded / 1024
    );
    // Fixed overhead: pooled buffers, buffers growing by doubling, and
    // memory the allocator keeps after a free.
    let overhead = 12 * MIB;
    assert!(
        peak <= idle + budget + overhead,
        "peak RSS {peak} over idle {idle} + budget {budget} + {overhead}"
    );
    assert!(
        unbounded > idle + budget + overhead,
        "the load would fit the budget anyway ({unbounded}): the test proves nothing"
    );
}

#[test]
fn serve_logs_its_stats_on_sigusr1() {
    let server = gopro_serve(&[]);
    let (ok, out, _) = gopro(&["send", "--addr", &server.addr.to_string(), "hi"]);
    assert!(ok, "{out}");
    server.signal("USR1");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lines = server.log_lines();
        if let Some(line) = lines.iter().find(|l| l.contains("stats: ")) {
            assert!(line.contains("accepted=1"), "{line}");
            assert!(line.contains("frames_in=1 frames_out=1"), "{line}");
            assert!(line.contains("memory_budget=268435456"), "{line}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no stats line");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `gopro serve ARGS...` under a hard limit of `files` descriptors that it
/// cannot raise: a few for the runtime and the listeners, then accept fails
/// with EMFILE.
fn serve_with_files(files: u32, args: &str) -> common::process::Proc {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        &format!(
            "ulimit -n {files} && exec {} serve --listen 127.0.0.1:0 {args}",
            gopro_bin().display()
        ),
    ]);
    common::process::spawn_listening(command, false)
}

/// `n` connections to `addr`, as many as are made.
fn hold(addr: std::net::SocketAddr, n: usize) -> Vec<std::net::TcpStream> {
    (0..n)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect()
}

/// What `f` gives, once it gives something (10 s at most).
fn within_10s<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(found) = f() {
            return found;
        }
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// After 2.5 s of failing accepts: exactly one warning `failed`, for EMFILE.
fn one_report_after_retries(server: &common::process::Proc, failed: &str) {
    std::thread::sleep(Duration::from_millis(2500));
    let lines = server.log_lines();
    let failures: Vec<_> = lines.iter().filter(|l| l.contains(failed)).collect();
    assert_eq!(
        failures.len(),
        1,
        "one report, not one per retry: {lines:#?}"
    );
    assert!(failures[0].contains("Too many open files"), "{lines:#?}");
}

fn logged(server: &common::process::Proc, text: &str) -> bool {
    server.log_lines().iter().any(|l| l.contains(text))
}

/// Out of file descriptors, the server backs off (up to 1 s) and warns
/// once with a count, instead of once every 50 ms; it accepts again when
/// descriptors are freed.
#[test]
fn accept_failures_back_off_and_are_reported_with_a_count() {
    let server = serve_with_files(24, "");
    let held = hold(server.addr, 40);
    one_report_after_retries(&server, "accept failed");
    // Freed descriptors: it serves again.
    drop(held);
    let addr = server.addr.to_string();
    within_10s("never served again", || {
        let (ok, _, _) = gopro(&["ping", "--addr", &addr, "--count", "1"]);
        ok.then_some(())
    });
    within_10s("no recovery line", || {
        logged(&server, "accepting again after").then_some(())
    });
}

/// The metrics endpoint's listener backs off and reports as the server's
/// does when it is out of file descriptors, and serves scrapes again after.
#[test]
fn metrics_accept_failures_back_off_and_are_reported_with_a_count() {
    let server = serve_with_files(28, "--metrics-listen 127.0.0.1:0");
    let metrics: std::net::SocketAddr = within_10s("no metrics line", || {
        server.log_lines().iter().find_map(|l| {
            let url = l.split("metrics on http://").nth(1)?;
            url.split('/').next()?.parse().ok()
        })
    });
    // The server's connections take every descriptor left; once its
    // listener has met the limit (else the scrapes could be accepted before
    // the descriptors run out), the scrapes wait in the metrics listener's
    // queue.
    let mut held = hold(server.addr, 40);
    within_10s("the limit was never met", || {
        logged(&server, "accept failed").then_some(())
    });
    held.extend(hold(metrics, 4));
    one_report_after_retries(&server, "metrics: accept failed");
    drop(held);
    within_10s("no scrape served again", || {
        common::process::scrape(metrics)
            .ok()
            .filter(|text| text.contains("gopro_connections_accepted_total"))
    });
    within_10s("no recovery line", || {
        logged(&server, "metrics: accepting again after").then_some(())
    });
}

/// One connection through a balancer that speaks the PROXY protocol:
/// `header`, then a HEARTBEAT echoed; closed by the client.
fn heartbeat_after(addr: std::net::SocketAddr, header: &[u8]) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let heartbeat = gopro::Frame::heartbeat().to_bytes();
    stream
        .write_all(&[header, &heartbeat[..]].concat())
        .unwrap();
    let mut echo = [0u8; 8];
    stream.read_exact(&mut echo).unwrap();
    assert_eq!(echo[..], heartbeat[..]);
}

/// A balancer's health checks (PROXY LOCAL headers, every few seconds) are
/// logged at debug; its clients' connections at info.
#[test]
fn health_checks_are_logged_at_debug_only() {
    // A v2 LOCAL header: no addresses.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let client = b"PROXY TCP4 203.0.113.7 127.0.0.1 4000 8888\r\n";
    for (level, logged) in [("info", false), ("debug", true)] {
        let mut command = Command::new(gopro_bin());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--proxy-protocol"])
            .args(["--trusted-proxies", "127.0.0.1/32"])
            .env("GOPRO_LOG", level);
        let server = spawn_listening(command, false);
        heartbeat_after(server.addr, local);
        // The client's closing, logged at info, comes after the health
        // check's: the log is read up to it.
        heartbeat_after(server.addr, client);
        let mut log = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !log
            .iter()
            .any(|l: &String| l.contains("connection closed peer=203.0.113.7:4000"))
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match server.log.recv_timeout(left) {
                Ok(line) => log.push(line),
                Err(_) => panic!("{level}: the client's connection was not logged: {log:#?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        log.extend(server.log_lines());
        let check_lines: Vec<_> = log
            .iter()
            .filter(|l| l.contains("connection opened peer=127.0.0.1:"))
            .collect();
        assert!(
            log.iter()
                .any(|l| l.contains(" INFO ")
                    && l.contains("connection opened peer=203.0.113.7:4000")),
            "{level}: {log:#?}"
        );
        if logged {
            assert!(
                check_lines.len() == 1 && check_lines[0].contains("DEBUG"),
                "{log:#?}"
            );
        } else {
            assert!(
                !log.iter().any(|l| l.contains("peer=127.0.0.1:")),
                "the health check is logged at info: {log:#?}"
            );
        }
    }
}
