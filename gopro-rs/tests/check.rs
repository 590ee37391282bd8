//! `gopro check` against our server, the article's Go server and servers
//! that get the protocol wrong.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pki::{scratch, write, Ca};
use common::process::{go_serve, gopro_bin, gopro_serve};

/// Runs `gopro check ADDR ARGS...`; returns (success, stdout, stderr).
fn check(addr: impl std::fmt::Display, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(gopro_bin())
        .arg("check")
        .arg(addr.to_string())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The case lines: (status, tier, name).
fn parse(out: &str) -> Vec<(String, String, String)> {
    out.lines()
        .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL") || l.starts_with("SKIP"))
        .map(|l| {
            let mut words = l.split_whitespace();
            let status = words.next().unwrap().to_owned();
            let tier = words.next().unwrap().to_owned();
            let name = words.next().unwrap().to_owned();
            assert!(tier == "[core]" || tier == "[ext]", "{l}");
            (status, tier, name)
        })
        .collect()
}

fn status_of<'a>(lines: &'a [(String, String, String)], name: &str) -> &'a str {
    &lines
        .iter()
        .find(|(_, _, n)| n == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .0
}

/// Asserts that every case in `names` has `status` in the report `out`.
fn assert_status(lines: &[(String, String, String)], names: &[&str], status: &str, out: &str) {
    for name in names {
        assert_eq!(status_of(lines, name), status, "{name}: {out}");
    }
}

fn summary(out: &str) -> &str {
    out.lines().last().unwrap_or("")
}

#[test]
fn everything_passes_against_gopro_serve() {
    let server = gopro_serve(&["--read-timeout", "1s", "--write-timeout", "1s"]);
    let started = Instant::now();
    let (ok, out, err) = check(
        server.addr,
        &["--read-timeout", "1s", "--write-timeout", "1s"],
    );
    assert!(ok, "{out}\n{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "{out}");
    assert_all_pass_without_auth(&out);
}

/// Every case passed but those that need --auth, deadline cases included.
fn assert_all_pass_without_auth(out: &str) {
    let lines = parse(out);
    assert!(lines.len() > 25, "{out}");
    for (status, _, name) in &lines {
        match status.as_str() {
            "PASS" => {}
            // `gopro serve` has no authenticator: the pre-login cases need --auth.
            "SKIP" => assert!(out.contains(&format!("{name}  (needs --auth)")), "{out}"),
            _ => panic!("{out}"),
        }
    }
    let skipped = lines.iter().filter(|(s, _, _)| s == "SKIP").count();
    assert!(skipped > 0 && skipped < 10, "{out}");
    assert_eq!(
        summary(out),
        format!(
            "{} passed, 0 failed, {skipped} skipped",
            lines.len() - skipped
        )
    );
    assert_status(
        &lines,
        &[
            "idle-client-closed",
            "slow-drip-client-closed",
            "heartbeats-keep-alive",
            "never-reading-client-closed",
            "message-hello-tcp-world",
            "unsupported-version-error",
        ],
        "PASS",
        out,
    );
}

#[test]
fn everything_passes_against_gopro_serve_with_auth() {
    let timeouts = ["--read-timeout", "1s", "--write-timeout", "1s"];
    let server = gopro_serve(&[&timeouts[..], &["--auth", "user:secret"]].concat());
    let (ok, out, err) = check(
        server.addr,
        &[&timeouts[..], &["--auth", "user:secret"]].concat(),
    );
    assert!(ok, "{out}\n{err}");
    let lines = parse(&out);
    assert!(lines.iter().all(|(s, _, _)| s == "PASS"), "{out}");
    assert_eq!(
        summary(&out),
        format!("{} passed, 0 failed, 0 skipped", lines.len())
    );
    // The wrong credentials are refused, so the checker's own login cases fail.
    let (ok, out, _) = check(
        server.addr,
        &[&timeouts[..], &["--auth", "user:wrong"]].concat(),
    );
    assert!(!ok, "{out}");
}

#[test]
fn the_limits_given_are_the_ones_checked() {
    let server = gopro_serve(&["--max-body", "70000"]);
    let (ok, out, err) = check(server.addr, &["--max-body", "70000"]);
    assert!(ok, "{out}\n{err}");
    assert!(summary(&out).contains(" 0 failed"), "{out}");
    // Checked against the default limit, the same server fails where it
    // refuses what a 10 MiB server accepts.
    let (ok, out, _) = check(server.addr, &["--core-only"]);
    assert!(!ok);
    let lines = parse(&out);
    assert_status(&lines, &["body-at-limit-accepted"], "FAIL", &out);
    assert_status(&lines, &["message-hello-tcp-world"], "PASS", &out);
}

#[test]
fn everything_passes_against_a_server_that_requires_login() {
    use gopro::server::Server;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let builder = Server::builder()
        .read_timeout(Duration::from_secs(1))
        .write_timeout(Duration::from_secs(1))
        .authenticator(|credentials: bytes::Bytes| async move {
            if credentials == "user:secret" {
                Ok(())
            } else {
                Err("bad credentials")
            }
        });
    let server = runtime.block_on(common::server::start(builder));
    let (ok, out, err) = check(
        server.addr,
        &[
            "--auth",
            "user:secret",
            "--read-timeout",
            "1s",
            "--write-timeout",
            "1s",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let lines = parse(&out);
    assert!(lines.iter().all(|(status, _, _)| status == "PASS"), "{out}");
    assert!(summary(&out).ends_with(" failed, 0 skipped"), "{out}");
    assert_status(
        &lines,
        &[
            "prelogin-message-refused",
            "prelogin-body-over-limit-error",
            "login-failures-close",
            "login-good-lets-message-through",
            "login-pipelined-with-requests",
        ],
        "PASS",
        &out,
    );

    // Wrong credentials: every case that logs in first fails.
    let (ok, out, _) = check(server.addr, &["--auth", "user:wrong", "--core-only"]);
    assert!(!ok);
    assert_eq!(
        status_of(&parse(&out), "message-hello-tcp-world"),
        "FAIL",
        "{out}"
    );
    assert!(out.contains("LOGIN with the --auth credentials"), "{out}");
    runtime.block_on(server.stop());
}

#[test]
fn the_go_server_passes_the_core_cases() {
    for flags in [&[][..], &["-tuned"]] {
        let server = go_serve(flags);
        let (ok, out, err) = check(server.addr, &[]);
        // The reference implements none of the SPEC's extensions.
        assert!(!ok, "{out}");
        assert!(err.contains("case(s) failed"), "{err}");
        let lines = parse(&out);
        for (status, tier, name) in &lines {
            if tier == "[core]" {
                assert_ne!(status, "FAIL", "{name}: {out}");
            }
        }
        assert_status(
            &lines,
            &[
                "login-replies-ok",
                "body-over-limit-error",
                "bad-magic-error",
                "unsupported-version-error",
                "unknown-command-error-stays-open",
                "reply-over-limit-error",
            ],
            "FAIL",
            &out,
        );
        assert!(out.contains("no reply to LOGIN"), "{out}");

        // Extension failures allowed: success, and still reported.
        let (ok, out, err) = check(server.addr, &["--allow-ext-failures"]);
        assert!(ok, "{out}\n{err}");
        assert!(out.contains("FAIL  [ext]"), "{out}");

        // Core cases only: nothing fails.
        let (ok, out, err) = check(server.addr, &["--core-only"]);
        assert!(ok, "{out}\n{err}");
        let lines = parse(&out);
        assert!(lines
            .iter()
            .all(|(status, tier, _)| status != "FAIL" && (tier == "[core]" || status == "SKIP")));
        assert!(summary(&out).contains(" 0 failed"), "{out}");
    }
}

/// A thread per connection running `serve`.
fn spawn_server(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve(stream));
        }
    });
    addr
}

/// Sends every byte straight back.
fn echo_bytes(mut stream: TcpStream) {
    let mut back = stream.try_clone().unwrap();
    let _ = std::io::copy(&mut stream, &mut back);
}

/// Frames right, replies wrong: MESSAGE gets "Server said: ", HEARTBEAT an
/// empty body.
fn wrong_replies(mut stream: TcpStream) {
    let mut header = [0u8; 8];
    while stream.read_exact(&mut header).is_ok() {
        let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        if len > 1 << 20 {
            return;
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).is_err() {
            return;
        }
        let reply = match header[3] {
            0 => gopro::Frame::heartbeat(),
            _ => {
                let mut text = b"Server said: ".to_vec();
                text.extend_from_slice(&body);
                gopro::Frame::new(gopro::Command::MESSAGE, text)
            }
        };
        if stream.write_all(&reply.to_bytes()).is_err() {
            return;
        }
    }
}

/// Accepts and then says nothing, reads nothing, closes nothing.
fn black_hole(stream: TcpStream) {
    std::thread::sleep(Duration::from_secs(60));
    drop(stream);
}

#[test]
fn broken_servers_fail() {
    // Echoing bytes verbatim gets HEARTBEAT right and MESSAGE wrong.
    let addr = spawn_server(echo_bytes);
    let (ok, out, err) = check(addr, &["--timeout", "1s"]);
    assert!(!ok, "{out}");
    assert!(err.contains("case(s) failed"), "{err}");
    let lines = parse(&out);
    assert_status(&lines, &["heartbeat-empty"], "PASS", &out);
    assert_status(
        &lines,
        &[
            "message-hello-tcp-world",
            "bad-magic-closes",
            "body-over-limit-closes",
        ],
        "FAIL",
        &out,
    );
    assert!(
        out.contains("expected MESSAGE \"Server says: Hello TCP World!\" (29 bytes), got MESSAGE \"Hello TCP World!\" (16 bytes)"),
        "{out}"
    );
    // --allow-ext-failures does not excuse core failures.
    let (ok, _, _) = check(addr, &["--timeout", "1s", "--allow-ext-failures"]);
    assert!(!ok);

    let addr = spawn_server(wrong_replies);
    let (ok, out, _) = check(addr, &["--timeout", "1s", "--core-only"]);
    assert!(!ok, "{out}");
    let lines = parse(&out);
    assert_status(
        &lines,
        &[
            "heartbeat-echoes-body",
            "message-hello-tcp-world",
            "pipeline-1000-in-one-write",
            "fragment-one-byte-per-write",
        ],
        "FAIL",
        &out,
    );
    assert!(out.contains("got MESSAGE \"Server said: "), "{out}");
    // Its replies are small, so it never stops reading; the check says the
    // replies are wrong rather than blaming the buffering.
    assert!(
        out.contains("the reply to the first request: expected HEARTBEAT"),
        "{out}"
    );
    let failed = lines.iter().filter(|(s, _, _)| s == "FAIL").count();
    assert!(
        summary(&out).contains(&format!(" {failed} failed")),
        "{out}"
    );

    // A server that never answers costs the time limit per case, no more.
    let addr = spawn_server(black_hole);
    let started = Instant::now();
    let (ok, out, _) = check(addr, &["--timeout", "300ms", "--core-only"]);
    assert!(!ok, "{out}");
    assert!(started.elapsed() < Duration::from_secs(20), "{out}");
    assert!(out.contains("FAIL  [core]  heartbeat-empty"), "{out}");
}

#[test]
fn no_server_is_one_clear_error() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (ok, out, err) = check(addr, &[]);
    assert!(!ok);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&format!("cannot connect to {addr}")), "{err}");

    let out = Command::new(gopro_bin())
        .args(["check", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--auth",
        "--read-timeout",
        "--core-only",
        "--allow-ext-failures",
    ] {
        assert!(text.contains(flag), "{text}");
    }
}

/// Written in a fresh folder: a CA's certificate, and a server certificate
/// (for localhost and 127.0.0.1) and key it signed.
struct TlsFiles {
    ca: String,
    cert: String,
    key: String,
}

fn tls_files(folder: &str, ca: &Ca) -> TlsFiles {
    let dir = scratch(folder);
    let server = ca.server();
    let path = |name: &str, pem: &str| write(&dir, name, pem).to_str().unwrap().to_owned();
    TlsFiles {
        ca: path("ca.pem", &ca.pem()),
        cert: path("server.pem", &server.cert),
        key: path("server.key", &server.key),
    }
}

#[test]
fn everything_passes_over_tls_against_gopro_serve() {
    let files = tls_files("check-serve", &Ca::new("check CA"));
    let timeouts = ["--read-timeout", "1s", "--write-timeout", "1s"];
    let tls = ["--tls-cert", &files.cert, "--tls-key", &files.key];
    let server = gopro_serve(&[&timeouts[..], &tls[..]].concat());
    // By name, so that the certificate is checked for the name given.
    let at = format!("localhost:{}", server.addr.port());
    let (ok, out, err) = check(
        &at,
        &[&timeouts[..], &["--tls", "--tls-ca", &files.ca]].concat(),
    );
    assert!(ok, "{out}\n{err}");
    assert_all_pass_without_auth(&out);

    // --tls-ca alone speaks TLS too.
    let (ok, out, err) = check(server.addr, &["--core-only", "--tls-ca", &files.ca]);
    assert!(ok, "{out}\n{err}");
    assert!(summary(&out).contains(" 0 failed"), "{out}");
}

#[test]
fn the_go_tls_server_checks_as_the_plaintext_one_does() {
    let files = tls_files("check-go", &Ca::new("check CA"));
    let plain = go_serve(&[]);
    let (plain_ok, plain_out, _) = check(plain.addr, &[]);
    let tls = go_serve(&["-tls-cert", &files.cert, "-tls-key", &files.key]);
    let (tls_ok, tls_out, tls_err) = check(tls.addr, &["--tls", "--tls-ca", &files.ca]);
    assert!(!tls_err.contains("cannot connect"), "{tls_err}");
    assert_eq!(tls_ok, plain_ok, "{tls_out}\n{plain_out}");
    assert_eq!(parse(&tls_out), parse(&plain_out), "{tls_out}\n{plain_out}");
    assert_eq!(summary(&tls_out), summary(&plain_out));
    assert!(
        tls_out.contains("PASS  [core]  pipeline-10mib-of-replies"),
        "{tls_out}"
    );
}

#[test]
fn an_untrusted_certificate_is_one_clear_tls_error() {
    let files = tls_files("check-untrusted", &Ca::new("check CA"));
    let stranger = tls_files("check-stranger", &Ca::new("stranger CA"));
    let server = gopro_serve(&["--tls-cert", &files.cert, "--tls-key", &files.key]);
    let started = Instant::now();
    let (ok, out, err) = check(server.addr, &["--tls", "--tls-ca", &stranger.ca]);
    assert!(!ok);
    assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!("cannot connect to {}: TLS handshake", server.addr))
            && err.contains("UnknownIssuer"),
        "{err}"
    );

    // A name the certificate does not carry is refused the same way.
    let (ok, _, err) = check(
        server.addr,
        &[
            "--tls-ca",
            &files.ca,
            "--tls-server-name",
            "elsewhere.example",
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("TLS handshake") && err.contains("not valid for name \"elsewhere.example\""),
        "{err}"
    );
}
