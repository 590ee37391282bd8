//! `gopro serve` as operators run it: socket activation and readiness for
//! systemd, and several processes on one port with SO_REUSEPORT.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::Duration;

use common::process::{gopro_bin, gopro_serve, spawn_listening};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ping(addr: &str) -> bool {
    Command::new(gopro_bin())
        .args(["ping", "--addr", addr, "--count", "1", "--timeout", "5s"])
        .output()
        .unwrap()
        .status
        .success()
}

/// Waits (10 s at most) until a connection to the port succeeds: with
/// socket activation, the first one starts the service.
fn wait_until_listening(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nothing listens");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// systemd-socket-activate (Debian's systemd package) binds the port and
/// passes the socket in LISTEN_FDS, as a `.socket` unit does.
#[test]
fn serve_takes_its_listener_from_systemd() {
    let port = free_port();
    let mut command = Command::new("systemd-socket-activate");
    command
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(gopro_bin())
        .args(["serve", "--listen", "127.0.0.1:1"]);
    // systemd-socket-activate starts the server at the first connection;
    // its "Listening on" line comes first.
    command.stdin(std::process::Stdio::null());
    let child = command
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate is installed (Debian's systemd package)");
    wait_until_listening(port);
    let served = ping(&format!("127.0.0.1:{port}"));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(served, "not served on the passed socket: {log}");
    assert!(log.contains("LISTEN_FDS"), "{log}");
    // --listen 127.0.0.1:1 was ignored for the passed socket.
    assert!(
        log.contains(&format!("listening on 127.0.0.1:{port}")),
        "{log}"
    );
}

/// The value of `key=` in a unit file of `deploy/systemd`.
fn unit_value(unit: &str, key: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(unit);
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {}", path.display()))
        .to_string()
}

/// The shipped unit files as systemd would run them: the socket unit's
/// `ListenStream` passed by systemd-socket-activate to the service's
/// `ExecStart` (the binary and the ports made the test's), which says
/// READY=1 (`Type=notify`), serves on the passed socket and its metrics
/// port, and stops on `KillSignal` within `TimeoutStopSec`.
#[test]
fn the_shipped_unit_files_run_under_socket_activation() {
    let listen = unit_value("gopro.socket", "ListenStream");
    assert_eq!(listen, "0.0.0.0:8888");
    assert_eq!(unit_value("gopro.service", "Type"), "notify");
    assert_eq!(unit_value("gopro.service", "KillSignal"), "SIGTERM");
    let stop_within: u64 = unit_value("gopro.service", "TimeoutStopSec")
        .parse()
        .unwrap();
    let exec = unit_value("gopro.service", "ExecStart");
    let mut args: Vec<String> = exec.split_whitespace().map(str::to_string).collect();
    assert_eq!(args[0], "/usr/local/bin/gopro");
    let (port, metrics_port) = (free_port(), free_port());
    let metrics = args
        .iter()
        .position(|a| a == "--metrics-listen")
        .expect("ExecStart serves metrics");
    assert_eq!(args[metrics + 1], "127.0.0.1:9100");
    args[metrics + 1] = format!("127.0.0.1:{metrics_port}");

    let dir = std::env::temp_dir().join(format!("gopro-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let notify = UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}")])
        .args(["-E", &format!("NOTIFY_SOCKET={}", path.display())])
        .args(["-E", "GOPRO_LOG=info"])
        .arg(gopro_bin())
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("systemd-socket-activate is installed (Debian's systemd package)");
    // The first connection starts the service, as the socket unit does.
    wait_until_listening(port);
    let served = ping(&format!("127.0.0.1:{port}"));
    let mut buf = [0u8; 256];
    let ready = notify.recv(&mut buf).map(|n| buf[..n].to_vec());
    let scraped = common::process::scrape(([127, 0, 0, 1], metrics_port).into());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stopping = notify.recv(&mut buf).map(|n| buf[..n].to_vec());
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(served, "not served on the socket unit's socket: {log}");
    assert_eq!(ready.unwrap(), b"READY=1\n", "{log}");
    assert!(
        scraped.is_ok_and(|t| t.contains("gopro_connections_accepted_total")),
        "no metrics on the ExecStart's --metrics-listen: {log}"
    );
    assert_eq!(stopping.unwrap(), b"STOPPING=1\n", "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(stop_within),
        "{log}"
    );
    assert!(out.status.success(), "{log}");
}

/// READY=1 once the server listens, STOPPING=1 when it is told to stop.
#[test]
fn serve_tells_systemd_it_is_ready_and_stopping() {
    let dir = std::env::temp_dir().join(format!("gopro-notify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut command = Command::new(gopro_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &path);
    let mut server = spawn_listening(command, false);
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1\n");
    server.signal("TERM");
    let n = socket.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(server.wait(Duration::from_secs(15)).success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two processes on one port with --reuse-port both serve; without it the
/// second cannot bind.
#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    let first = gopro_serve(&["--reuse-port"]);
    let addr = first.addr.to_string();
    let mut command = Command::new(gopro_bin());
    command.args(["serve", "--listen", &addr, "--reuse-port"]);
    let second = spawn_listening(command, false);
    assert_eq!(second.addr, first.addr);
    // Linux spreads connections over both: each serves some.
    for _ in 0..20 {
        assert!(ping(&addr));
    }
    let opened = |p: &common::process::Proc| {
        p.log_lines()
            .iter()
            .filter(|l| l.contains("connection opened"))
            .count()
    };
    let (a, b) = (opened(&first), opened(&second));
    assert_eq!(a + b, 20, "{a} + {b}");
    assert!(
        a > 0 && b > 0,
        "one process got every connection: {a} / {b}"
    );
    let out = Command::new(gopro_bin())
        .args(["serve", "--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
