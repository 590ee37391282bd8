//! The async and blocking clients against `gopro serve` through `gopro proxy`
//! and each of its faults. Every call either gets its exact reply or a
//! typed error of a kind the fault can cause, and returns within its timeout
//! plus a margin: never a wrong reply, a hang or a crash.
//!
//! Uses `$GOPRO_BIN` when set (CI points it at the release build), else the
//! `gopro` that cargo built for these tests.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command as Process;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::process::{gopro_bin, spawn_listening, Proc};
use gopro::client::{Client, ClientError};
use gopro::{Command, Frame};

/// Time a call may take beyond its timeout (a loaded CI machine is slow).
const MARGIN: Duration = Duration::from_millis(1000);
const KIB: usize = 1024;
/// Body sizes, from empty to a few hundred KiB.
const SIZES: &[usize] = &[0, 1, 13, 1000, 16 * KIB, 64 * KIB, 300 * KIB];

fn bin() -> PathBuf {
    std::env::var_os("GOPRO_BIN").map_or_else(gopro_bin, PathBuf::from)
}

/// Runs `gopro ARGS...` and waits for its `listening on ADDR` line on stdout
/// (`proxy`) or stderr (`serve`, which logs it).
fn spawn(args: &[&str], on_stdout: bool) -> Proc {
    let mut command = Process::new(bin());
    command.args(args);
    spawn_listening(command, on_stdout)
}

/// A fault and what it may do to the calls.
#[derive(Clone)]
struct Case {
    fault: &'static str,
    direction: &'static str,
    timeout: Duration,
    /// Bodies up to this size.
    max_size: usize,
    /// Times through [`SIZES`] in each phase.
    rounds: usize,
    /// The error kinds allowed ([`kind`]); none means every reply must be right.
    allowed: &'static [&'static str],
    /// At least one error of one of these kinds must appear.
    expected: &'static [&'static str],
}

impl Case {
    fn new(fault: &'static str, direction: &'static str) -> Case {
        Case {
            fault,
            direction,
            timeout: Duration::from_millis(1000),
            max_size: usize::MAX,
            rounds: 2,
            allowed: &[],
            expected: &[],
        }
    }

    fn failing(
        mut self,
        timeout_ms: u64,
        allowed: &'static [&'static str],
        expected: &'static [&'static str],
    ) -> Case {
        self.timeout = Duration::from_millis(timeout_ms);
        self.allowed = allowed;
        self.expected = expected;
        self
    }
}

/// The error's kind, with a truncated frame (the stream ended inside a
/// reply, SPEC §2) told apart from other protocol errors.
fn kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::Protocol(gopro::Error::UnexpectedEof { .. }) => "truncated",
        other => other.kind(),
    }
}

/// The calls of one client, blocking or driven on a runtime of its own.
trait Calls {
    fn request(&self, command: Command, body: Bytes) -> Result<Frame, ClientError>;
    fn send(&self, command: Command, body: Bytes) -> Result<(), ClientError>;
    fn flush(&self) -> Result<(), ClientError>;
    fn recv(&self) -> Result<Frame, ClientError>;
}

struct Async {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Calls for Async {
    fn request(&self, command: Command, body: Bytes) -> Result<Frame, ClientError> {
        self.rt.block_on(self.client.request(command, body))
    }
    fn send(&self, command: Command, body: Bytes) -> Result<(), ClientError> {
        self.rt.block_on(self.client.send(command, body))
    }
    fn flush(&self) -> Result<(), ClientError> {
        self.rt.block_on(self.client.flush())
    }
    fn recv(&self) -> Result<Frame, ClientError> {
        self.rt.block_on(self.client.recv())
    }
}

impl Calls for gopro::blocking::Client {
    fn request(&self, command: Command, body: Bytes) -> Result<Frame, ClientError> {
        gopro::blocking::Client::request(self, command, body)
    }
    fn send(&self, command: Command, body: Bytes) -> Result<(), ClientError> {
        gopro::blocking::Client::send(self, command, body)
    }
    fn flush(&self) -> Result<(), ClientError> {
        gopro::blocking::Client::flush(self)
    }
    fn recv(&self) -> Result<Frame, ClientError> {
        gopro::blocking::Client::recv(self)
    }
}

/// What one client saw.
#[derive(Default, Debug)]
struct Tally {
    requests: usize,
    right: usize,
    errors: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.right += other.right;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
    }
}

struct Checker<'a> {
    case: &'a Case,
    who: &'static str,
    tally: Tally,
}

impl Checker<'_> {
    /// Times `call` and checks that an error is one the fault allows.
    fn call<T>(&mut self, what: &str, call: impl FnOnce() -> Result<T, ClientError>) -> Option<T> {
        let started = Instant::now();
        let result = call();
        let took = started.elapsed();
        let limit = self.case.timeout + MARGIN;
        assert!(
            took <= limit,
            "{} {}: {what} took {took:?}, more than {limit:?}",
            self.who,
            self.case.fault
        );
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                let kind = kind(&e);
                assert!(
                    self.case.allowed.contains(&kind),
                    "{} {} ({}): {what} failed with {kind}: {e}",
                    self.who,
                    self.case.fault,
                    self.case.direction
                );
                *self.tally.errors.entry(kind).or_default() += 1;
                None
            }
        }
    }

    /// A reply must be exactly the one wanted.
    fn reply(&mut self, what: &str, got: Option<Frame>, want: &Frame) {
        self.tally.requests += 1;
        if let Some(got) = got {
            assert!(
                got == *want,
                "{} {}: wrong reply to {what}: {} with {} bytes, wanted {} with {} bytes",
                self.who,
                self.case.fault,
                got.command,
                got.body.len(),
                want.command,
                want.body.len()
            );
            self.tally.right += 1;
        }
    }
}

/// Request `i`: HEARTBEAT or MESSAGE, with a body that names it.
fn request(i: usize, size: usize) -> (Command, Bytes, Frame) {
    let command = if i.is_multiple_of(2) {
        Command::MESSAGE
    } else {
        Command::HEARTBEAT
    };
    let mut body = format!("request {i};").into_bytes();
    body.extend((0..size).map(|j| b'a' + ((i + j) % 26) as u8));
    body.truncate(size);
    let body = Bytes::from(body);
    let reply = if command == Command::MESSAGE {
        let mut echo = BytesMut::with_capacity(13 + size);
        echo.put_slice(b"Server says: ");
        echo.put_slice(&body);
        Frame::new(Command::MESSAGE, echo.freeze())
    } else {
        Frame::new(Command::HEARTBEAT, body.clone())
    };
    (command, body, reply)
}

fn sizes(case: &Case) -> Vec<usize> {
    let round: Vec<usize> = SIZES
        .iter()
        .copied()
        .filter(|&size| size <= case.max_size)
        .collect();
    round.repeat(case.rounds)
}

/// One connection of sequential requests, then one of pipelined ones.
fn workload<C: Calls>(case: &Case, who: &'static str, connect: impl Fn() -> C) -> Tally {
    let mut check = Checker {
        case,
        who,
        tally: Tally::default(),
    };
    let sizes = sizes(case);

    // Connecting to the proxy always works: it accepts before it dials.
    let client = connect();
    for (i, &size) in sizes.iter().enumerate() {
        let (command, body, want) = request(i, size);
        let what = format!("request {i} ({size} bytes)");
        let got = check.call(&what, || client.request(command, body));
        check.reply(&what, got, &want);
    }
    drop(client);

    let client = connect();
    let mut wants = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let (command, body, want) = request(i, size);
        if check
            .call(&format!("send {i} ({size} bytes)"), || {
                client.send(command, body)
            })
            .is_none()
        {
            break;
        }
        wants.push(want);
    }
    check.call("flush", || client.flush());
    for (i, want) in wants.iter().enumerate() {
        let what = format!("pipelined reply {i}");
        let got = check.call(&what, || client.recv());
        check.reply(&what, got, want);
    }
    check.tally
}

fn run(case: &Case) {
    let server = spawn(&["serve", "--listen", "127.0.0.1:0"], false);
    let upstream = server.addr.to_string();
    let proxy = spawn(
        &[
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--fault",
            case.fault,
            "--direction",
            case.direction,
        ],
        true,
    );
    let addr = proxy.addr.to_string();
    let builder = Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(case.timeout);

    // The blocking client on a thread, the async one here, at the same time.
    let blocking = std::thread::spawn({
        let case = case.clone();
        let addr = addr.clone();
        let builder = builder.clone();
        move || {
            workload(&case, "blocking", || {
                gopro::blocking::Client::connect_with(&addr, builder.clone()).unwrap()
            })
        }
    });
    let tally_async = workload(case, "async", || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(builder.clone().connect(&addr)).unwrap();
        Async { rt, client }
    });
    let tally_blocking = blocking.join().expect("the blocking client's workload");

    let mut total = Tally::default();
    total.add(&tally_async);
    total.add(&tally_blocking);
    println!(
        "fault {} ({}): async {tally_async:?}, blocking {tally_blocking:?}",
        case.fault, case.direction
    );
    if case.allowed.is_empty() {
        assert_eq!(total.right, total.requests, "{total:?}");
    }
    for (who, tally) in [("async", &tally_async), ("blocking", &tally_blocking)] {
        assert!(
            case.expected.is_empty() || case.expected.iter().any(|k| tally.errors.contains_key(k)),
            "{who} {}: none of the errors {:?} appeared: {tally:?}",
            case.fault,
            case.expected
        );
    }
    // The server survived it all.
    let client = gopro::blocking::Client::connect(&upstream).unwrap();
    client.heartbeat().unwrap();
}

#[test]
fn no_fault() {
    run(&Case::new("none", "both"));
}

#[test]
fn one_byte_writes() {
    // Every byte is a write and a TCP segment of its own: keep the bodies
    // to 64 KiB so that it stays fast.
    let mut case = Case::new("chunk1", "both");
    case.timeout = Duration::from_secs(3);
    case.max_size = 64 * KIB;
    case.rounds = 1;
    run(&case);
}

#[test]
fn delayed_chunks() {
    run(&Case::new("delay=10ms", "both"));
}

#[test]
fn throttled() {
    run(&Case::new("throttle=4000000", "both"));
}

#[test]
fn reset_mid_request() {
    // 100,000 bytes up is inside the first 300 KiB request.
    run(&Case::new("reset-after=100000", "up").failing(
        1000,
        &["closed", "lost", "io"],
        &["lost", "io"],
    ));
}

#[test]
fn reset_mid_reply() {
    // 25 bytes down: past the first reply (21 bytes), inside the second.
    run(&Case::new("reset-after=25", "down").failing(
        1000,
        &["closed", "lost", "io"],
        &["lost", "io"],
    ));
}

#[test]
fn stall_mid_frame() {
    // Calls time out; the connection is given up once the server has not
    // answered for the timeout, and later calls are refused as closed.
    run(&Case::new("stop-after=100000", "both").failing(
        500,
        &["timeout", "closed", "lost"],
        &["timeout", "lost"],
    ));
}

#[test]
fn stall_replies() {
    run(&Case::new("stop-after=25", "down").failing(
        500,
        &["timeout", "closed", "lost"],
        &["timeout", "lost"],
    ));
}

#[test]
fn half_closed_toward_the_client() {
    run(&Case::new("half-close", "down").failing(1000, &["closed", "lost"], &["closed", "lost"]));
}

#[test]
fn half_closed_toward_the_client_mid_reply() {
    // The stream ends inside the second reply: a truncated frame.
    run(&Case::new("half-close=25", "down").failing(
        1000,
        &["closed", "lost", "truncated"],
        &["truncated"],
    ));
}

#[test]
fn half_closed_toward_the_server() {
    // The server reads the end of the stream and closes its connection.
    run(&Case::new("half-close", "up").failing(1000, &["closed", "lost"], &["lost"]));
}

#[test]
fn a_server_that_stops_answering_is_given_up_at_the_timeout() {
    // Requests pass, replies do not: once the oldest request has had no
    // reply for the timeout, the server must see the connection end then,
    // not only once the client is dropped.
    let server = spawn(&["serve", "--listen", "127.0.0.1:0"], false);
    let upstream = server.addr.to_string();
    let proxy = spawn(
        &[
            "proxy",
            "--upstream",
            &upstream,
            "--fault",
            "stop-after=0",
            "--direction",
            "down",
        ],
        true,
    );
    let builder = Client::builder().timeout(Duration::from_millis(300));
    let client = gopro::blocking::Client::connect_with(&proxy.addr.to_string(), builder).unwrap();
    let err = client.request(Command::MESSAGE, "late").unwrap_err();
    assert_eq!(err.kind(), "timeout", "{err}");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let line = server
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server never saw the connection end while the client lived");
        if line.contains("connection closed") {
            break;
        }
    }
    let err = client.request(Command::MESSAGE, "after").unwrap_err();
    assert_eq!(err.kind(), "closed", "{err}");
}
