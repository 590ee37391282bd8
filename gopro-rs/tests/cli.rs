//! The `gopro` command as a process, and the Go peer against it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{go_client, gopro_bin, gopro_serve};

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
    let out = Command::new(gopro_bin())
        .args(["serve", "--read-timeout", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("write durations like 2s or 500ms"), "{err}");

    let out = Command::new(gopro_bin())
        .args(["serve", "--listen", "256.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on 256.0.0.1:1"), "{err}");
}

#[test]
fn every_subcommand_has_help() {
    for args in [&["--help"][..], &["serve", "--help"]] {
        let out = Command::new(gopro_bin()).args(args).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage: gopro"), "{text}");
    }
}
