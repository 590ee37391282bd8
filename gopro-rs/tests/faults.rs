//! The async and blocking clients against `gopro serve` through `gopro proxy`
//! and each of its faults. Every call either gets its exact reply or a
//! typed error of a kind the fault can cause, and returns within its timeout
//! plus a margin: never a wrong reply, a hang or a crash. Each client is
//! first used by one caller at a time, then shared: one async client by
//! [`TASKS`] tokio tasks and one blocking client by [`THREADS`] threads, all
//! calling at once with bodies of their own.
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
use gopro::client::{Client, ClientBuilder, ClientError};
use gopro::{Command, Frame};

/// Time a call may take beyond its timeout (a loaded CI machine is slow).
const MARGIN: Duration = Duration::from_millis(1000);
const KIB: usize = 1024;
/// Body sizes, from empty to a few hundred KiB.
const SIZES: &[usize] = &[0, 1, 13, 1000, 16 * KIB, 64 * KIB, 300 * KIB];
/// Tokio tasks sharing one async client.
const TASKS: usize = 8;
/// Threads sharing one blocking client.
const THREADS: usize = 4;
/// Of the callers sharing a client, only every fourth sends bodies above
/// this size, so that what is in flight at once still passes a throttled
/// or byte-by-byte connection well within the timeout.
const SHARED_SMALL: usize = 16 * KIB;
/// The smallest body of a shared client's request: room for the name
/// that tells its reply from every other.
const SHARED_MIN: usize = 16;

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
    /// The longest call.
    slowest: Duration,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.right += other.right;
        self.slowest = self.slowest.max(other.slowest);
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

impl<'a> Checker<'a> {
    fn new(case: &'a Case, who: &'static str) -> Checker<'a> {
        Checker {
            case,
            who,
            tally: Tally::default(),
        }
    }

    /// Times `call` and checks that an error is one the fault allows.
    fn call<T>(&mut self, what: &str, call: impl FnOnce() -> Result<T, ClientError>) -> Option<T> {
        let started = Instant::now();
        let result = call();
        self.outcome(what, started, result)
    }

    /// Checks the time taken by a call made at `started`, and that an
    /// error is one the fault allows.
    fn outcome<T>(
        &mut self,
        what: &str,
        started: Instant,
        result: Result<T, ClientError>,
    ) -> Option<T> {
        let took = started.elapsed();
        self.tally.slowest = self.tally.slowest.max(took);
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

/// The requests (numbers and body sizes) of caller `caller` of a shared
/// client: numbered apart from every other caller's, with bodies that name
/// them, and started at different sizes so that the callers are out of step.
fn shared_requests(case: &Case, caller: usize) -> Vec<(usize, usize)> {
    let mut sizes: Vec<usize> = sizes(case)
        .into_iter()
        .filter(|&size| caller.is_multiple_of(4) || size <= SHARED_SMALL)
        .map(|size| size.max(SHARED_MIN))
        .collect();
    let start = caller % sizes.len();
    sizes.rotate_left(start);
    sizes
        .into_iter()
        .enumerate()
        .map(|(c, size)| (caller * 1000 + c, size))
        .collect()
}

/// Makes `requests` (numbers and body sizes) one after another, each
/// waiting for its reply.
fn in_turn<C: Calls>(
    check: &mut Checker,
    client: &C,
    requests: impl IntoIterator<Item = (usize, usize)>,
) {
    for (i, size) in requests {
        let (command, body, want) = request(i, size);
        let what = format!("request {i} ({size} bytes)");
        let got = check.call(&what, || client.request(command, body));
        check.reply(&what, got, &want);
    }
}

/// One connection of sequential requests, then one of pipelined ones.
fn workload<C: Calls>(case: &Case, who: &'static str, connect: impl Fn() -> C) -> Tally {
    let mut check = Checker::new(case, who);
    let sizes = sizes(case);

    // Connecting to the proxy always works: it accepts before it dials.
    let client = connect();
    in_turn(&mut check, &client, sizes.iter().copied().enumerate());
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

    // Each client used by one caller at a time: the blocking one on a
    // thread, the async one here, at the same time.
    let (blocking, one_async) = at_once(
        || {
            workload(case, "blocking", || {
                gopro::blocking::Client::connect_with(&addr, builder.clone()).unwrap()
            })
        },
        || {
            workload(case, "async", || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let client = rt.block_on(builder.clone().connect(&addr)).unwrap();
                Async { rt, client }
            })
        },
    );
    // Then each shared by many callers, again both at the same time.
    let (shared_blocking, shared_async) = at_once(
        || blocking_shared(case, &addr, &builder),
        || async_shared(case, &addr, &builder),
    );
    verdict(
        case,
        &[
            ("async", &one_async),
            ("blocking", &blocking),
            ("shared async", &shared_async),
            ("shared blocking", &shared_blocking),
        ],
    );
    // The server survived it all.
    let client = gopro::blocking::Client::connect(&upstream).unwrap();
    client.heartbeat().unwrap();
}

/// Runs `on_thread` on a thread of its own and `here` on this one, at the
/// same time; a panic in either is passed on.
fn at_once<A: Send, B>(on_thread: impl FnOnce() -> A + Send, here: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|scope| {
        let thread = scope.spawn(on_thread);
        let b = here();
        let a = thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (a, b)
    })
}

/// One async client shared by [`TASKS`] tokio tasks on a runtime with two
/// workers, all making requests at once.
fn async_shared(case: &Case, addr: &str, builder: &ClientBuilder) -> Tally {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = builder.clone().connect(addr).await.unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|caller| {
                let (client, case) = (client.clone(), case.clone());
                tokio::spawn(async move {
                    let mut check = Checker::new(&case, "shared async");
                    for (i, size) in shared_requests(&case, caller) {
                        let (command, body, want) = request(i, size);
                        let what = format!("request {i} ({size} bytes)");
                        // A call that never returns fails the test
                        // rather than hanging it.
                        let limit = case.timeout + MARGIN;
                        let started = Instant::now();
                        let result = tokio::time::timeout(limit, client.request(command, body))
                            .await
                            .unwrap_or_else(|_| {
                                panic!(
                                    "shared async {}: {what} did not return within {limit:?}",
                                    case.fault
                                )
                            });
                        let got = check.outcome(&what, started, result);
                        check.reply(&what, got, &want);
                    }
                    check.tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            let tally = task
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            total.add(&tally);
        }
        total
    })
}

/// One blocking client shared by [`THREADS`] threads, all making requests
/// at once.
fn blocking_shared(case: &Case, addr: &str, builder: &ClientBuilder) -> Tally {
    let client = gopro::blocking::Client::connect_with(addr, builder.clone()).unwrap();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|caller| {
                let client = &client;
                scope.spawn(move || {
                    let mut check = Checker::new(case, "shared blocking");
                    in_turn(&mut check, client, shared_requests(case, caller));
                    check.tally
                })
            })
            .collect();
        let mut total = Tally::default();
        for thread in threads {
            let tally = thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            total.add(&tally);
        }
        total
    })
}

/// With no error allowed every reply was right; else each client saw at
/// least one of the errors the fault must cause.
fn verdict(case: &Case, tallies: &[(&str, &Tally)]) {
    for (who, tally) in tallies {
        println!("fault {} ({}): {who} {tally:?}", case.fault, case.direction);
    }
    for (who, tally) in tallies {
        if case.allowed.is_empty() {
            assert_eq!(
                tally.right, tally.requests,
                "{who} {}: {tally:?}",
                case.fault
            );
        }
        assert!(
            case.expected.is_empty() || case.expected.iter().any(|k| tally.errors.contains_key(k)),
            "{who} {}: none of the errors {:?} appeared: {tally:?}",
            case.fault,
            case.expected
        );
    }
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
    // The server reads the end of the stream at once and closes its
    // connection, which may reach the client before its first request is
    // written (then "closed") or after (then "lost").
    run(&Case::new("half-close", "up").failing(1000, &["closed", "lost"], &["closed", "lost"]));
}

#[test]
fn half_closed_toward_the_server_mid_request() {
    // The end of the stream comes after the first byte the client wrote:
    // the request it belongs to, at least, was written and is "lost".
    run(&Case::new("half-close=1", "up").failing(1000, &["closed", "lost"], &["lost"]));
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
