//! Runs `gopro serve` and the Go peer from `interop/go/` as real processes.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `gopro` binary built for these tests.
pub fn gopro_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gopro"))
}

/// Builds the Go peer once per test run; returns the folder with `server` and `client`.
pub fn go_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-interop");
            let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/go");
            let status = Command::new("go")
                .args(["build", "-o"])
                .arg(format!("{}/", out.display()))
                .arg("./cmd/...")
                .current_dir(src)
                .status()
                .expect("go is installed");
            assert!(status.success(), "go build failed");
            out
        })
        .clone()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the exit status, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(started.elapsed() < limit, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line so far and until the process ends.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }
}

/// Spawns a process and waits for a line "listening on ADDR" on its stdout
/// (`on_stdout`) or stderr.
#[allow(clippy::zombie_processes)] // Proc kills and waits for the child when dropped
pub fn spawn_listening(mut command: Command, on_stdout: bool) -> Proc {
    command.stdin(Stdio::null());
    if on_stdout {
        command.stdout(Stdio::piped()).stderr(Stdio::null());
    } else {
        command.stderr(Stdio::piped()).stdout(Stdio::null());
    }
    let mut child = command.spawn().expect("spawn");
    let pipe: Box<dyn std::io::Read + Send> = if on_stdout {
        Box::new(child.stdout.take().unwrap())
    } else {
        Box::new(child.stderr.take().unwrap())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no 'listening on' line; saw {seen:?}"));
        if let Some(at) = line.find("listening on ") {
            let addr = line[at + "listening on ".len()..].trim().parse().unwrap();
            return Proc {
                child,
                addr,
                log: rx,
            };
        }
        seen.push(line);
    }
}

/// `gopro serve --listen 127.0.0.1:0 ARGS...`
pub fn gopro_serve(args: &[&str]) -> Proc {
    let mut command = Command::new(gopro_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    spawn_listening(command, false)
}

/// `gopro serve --listen ADDR`: a server started again on an address a
/// client knows.
pub fn gopro_serve_at(addr: &str) -> Proc {
    let mut command = Command::new(gopro_bin());
    command.args(["serve", "--listen", addr]);
    spawn_listening(command, false)
}

/// The text of `GET /metrics` from a metrics endpoint.
pub fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// The Go server from `interop/go/`.
pub fn go_serve(args: &[&str]) -> Proc {
    let mut command = Command::new(go_bin().join("server"));
    command.args(["-addr", "127.0.0.1:0"]).args(args);
    spawn_listening(command, true)
}

/// Runs the Go client; returns (success, stdout + stderr).
pub fn go_client(addr: SocketAddr, scenario: &str) -> (bool, String) {
    let out = Command::new(go_bin().join("client"))
        .args(["-addr", &addr.to_string(), "-scenario", scenario])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
