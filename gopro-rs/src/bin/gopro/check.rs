//! `gopro check`: a conformance checker for any GoPro server.
//!
//! Runs the cases of SPEC.md over real sockets, one fresh connection per
//! case, each within a time limit so that a server that does not answer
//! gives FAIL rather than a hang. Requests are written as raw bytes (many
//! cases send what no well-behaved client would) and replies are read with
//! the crate's decoder.
//!
//! Each case is `core` (what the article's reference server does: header,
//! HEARTBEAT and MESSAGE echoes, fragmentation, pipelining, refusing bad
//! magic and bodies over the limit, the read deadline) or `ext` (what
//! SPEC.md adds or tightens: LOGIN "OK", ERROR frames, the version check,
//! the reply limit, pre-login rules, the write deadline).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Args;
use gopro::{Codec, Command, Decoder, Frame, Header, HEADER_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

#[derive(Args)]
pub(crate) struct CheckArgs {
    /// Address of the server to check (HOST:PORT).
    addr: String,
    /// Time allowed for each case: connecting, sending and every reply.
    #[arg(long, value_parser = crate::duration, default_value = "5s")]
    timeout: Duration,
    /// Credentials the server accepts in LOGIN. Runs the pre-login cases
    /// (skipped without), and logs in first in every other case.
    #[arg(long, value_name = "CREDENTIALS")]
    auth: Option<String>,
    /// The server's read timeout. Runs the idle, slow-drip and keep-alive
    /// cases, which take about this long (skipped without).
    #[arg(long, value_parser = crate::duration, value_name = "DURATION")]
    read_timeout: Option<Duration>,
    /// The server's write timeout. Runs the case where a client that never
    /// reads its replies must be closed (skipped without).
    #[arg(long, value_parser = crate::duration, value_name = "DURATION")]
    write_timeout: Option<Duration>,
    /// The server's body limit, in bytes.
    #[arg(long, default_value_t = gopro::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// The server's body limit before LOGIN (with --auth), in bytes.
    #[arg(long, default_value_t = gopro::server::DEFAULT_PRELOGIN_MAX_BODY)]
    prelogin_max_body: usize,
    /// Failed LOGINs in a row after which the server closes (with --auth).
    #[arg(long, default_value_t = gopro::server::DEFAULT_MAX_LOGIN_FAILURES)]
    max_login_failures: u32,
    /// Run the core cases only; the extension cases are reported as SKIP.
    #[arg(long)]
    core_only: bool,
    /// Exit with success when only extension cases fail (for servers, such
    /// as the article's, that do not implement the SPEC's extensions).
    #[arg(long)]
    allow_ext_failures: bool,
}

pub(crate) fn run(args: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    crate::runtime(Some(1))?.block_on(check(args))
}

/// What the server is expected to do, from the command line.
struct Ctx {
    addr: SocketAddr,
    timeout: Duration,
    auth: Option<String>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    max_body: usize,
    /// The limit before LOGIN: the tighter of the two.
    prelogin_max_body: usize,
    max_login_failures: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Core,
    Ext,
}

/// What a case needs from the command line to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    Nothing,
    Auth,
    ReadTimeout,
    WriteTimeout,
}

/// How a case did not pass.
enum Fail {
    Fail(String),
    Skip(String),
}

impl From<String> for Fail {
    fn from(detail: String) -> Self {
        Fail::Fail(detail)
    }
}

type Outcome = Result<(), Fail>;
type Run = Box<dyn Fn(Rc<Ctx>) -> Pin<Box<dyn Future<Output = Outcome>>>>;

struct Case {
    name: &'static str,
    tier: Tier,
    needs: Needs,
    run: Run,
}

fn case<F, Fut>(name: &'static str, tier: Tier, needs: Needs, run: F) -> Case
where
    F: Fn(Rc<Ctx>) -> Fut + 'static,
    Fut: Future<Output = Outcome> + 'static,
{
    Case {
        name,
        tier,
        needs,
        run: Box::new(move |cx| Box::pin(run(cx))),
    }
}

/// Every case, in the order they are reported. Cases that wait for the
/// server's deadlines run last, at the same time, so that they cost about
/// one read timeout in all.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Needs::*;
    use Tier::*;
    vec![
        // SPEC §7 and §3: the echoes, byte for byte.
        case("heartbeat-empty",                    Core, Nothing,      heartbeat_empty),
        case("heartbeat-echoes-body",              Core, Nothing,      heartbeat_body),
        case("message-hello-tcp-world",            Core, Nothing,      message_hello),
        case("message-empty-body",                 Core, Nothing,      message_empty),
        case("message-binary-body",                Core, Nothing,      message_binary),
        case("login-then-heartbeat",               Core, Nothing,      login_then_heartbeat),
        case("body-at-limit-accepted",             Core, Nothing,      body_at_limit),
        // SPEC §2 and §7: what is refused, and how.
        case("body-over-limit-closes",             Core, Nothing,      over_limit_closes),
        case("little-endian-length-closes",        Core, Nothing,      little_endian_closes),
        case("bad-magic-closes",                   Core, Nothing,      bad_magic_closes),
        case("frame-then-bad-magic-answered",      Core, Nothing,      frame_then_bad_magic),
        // SPEC §1 and §4: fragmentation and pipelining.
        case("fragment-one-byte-per-write",        Core, Nothing,      fragment_one_byte),
        case("fragment-header-then-body",          Core, Nothing,      fragment_header_body),
        case("fragment-frame-and-partial-next",    Core, Nothing,      fragment_partial_next),
        case("pipeline-1000-in-one-write",         Core, Nothing,      pipeline),
        case("pipeline-10mib-of-replies",          Core, Nothing,      pipeline_large),
        // SPEC §5: one client that never reads must not stall the server.
        case("never-reading-client-others-served", Core, Nothing,      never_reading_others_served),
        // SPEC extensions.
        case("login-replies-ok",                   Ext,  Nothing,      login_ok),
        case("body-over-limit-error",              Ext,  Nothing,      over_limit_error),
        case("bad-magic-error",                    Ext,  Nothing,      bad_magic_error),
        case("unsupported-version-error",          Ext,  Nothing,      version_error),
        case("unknown-command-error-stays-open",   Ext,  Nothing,      unknown_command),
        case("reply-at-limit-sent",                Ext,  Nothing,      reply_at_limit),
        case("reply-over-limit-error",             Ext,  Nothing,      reply_over_limit),
        case("prelogin-heartbeat-answered",        Ext,  Auth,         prelogin_heartbeat),
        case("prelogin-message-refused",           Ext,  Auth,         prelogin_message),
        case("prelogin-body-at-limit-accepted",    Ext,  Auth,         prelogin_at_limit),
        case("prelogin-body-over-limit-error",     Ext,  Auth,         prelogin_over_limit),
        case("login-wrong-credentials-error",      Ext,  Auth,         login_wrong),
        case("login-failures-close",               Ext,  Auth,         login_failures_close),
        case("login-good-lets-message-through",    Ext,  Auth,         login_good),
        case("login-pipelined-with-requests",      Ext,  Auth,         login_pipelined),
        // SPEC §5: deadlines.
        case("idle-client-closed",                 Core, ReadTimeout,  idle_closed),
        case("slow-drip-client-closed",            Core, ReadTimeout,  slow_drip_closed),
        case("heartbeats-keep-alive",              Core, ReadTimeout,  heartbeats_keep_alive),
        case("never-reading-client-closed",        Ext,  WriteTimeout, never_reading_closed),
    ]
}

async fn check(args: CheckArgs) -> Result<(), Box<dyn std::error::Error>> {
    let addr = resolve(&args.addr).await?;
    let cx = Rc::new(Ctx {
        addr,
        timeout: args.timeout,
        auth: args.auth,
        read_timeout: args.read_timeout,
        write_timeout: args.write_timeout,
        max_body: args.max_body,
        prelogin_max_body: args.prelogin_max_body.min(args.max_body),
        max_login_failures: args.max_login_failures,
    });
    // One connection first, so that a wrong address is one clear error
    // rather than a FAIL per case.
    match timeout(cx.timeout, TcpStream::connect(addr)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}").into()),
        Err(_) => {
            return Err(format!(
                "cannot connect to {addr}: no answer within {:?}",
                cx.timeout
            )
            .into())
        }
    }

    let mut tally = Tally::default();
    let (timed, quick): (Vec<Case>, Vec<Case>) = cases()
        .into_iter()
        .partition(|c| matches!(c.needs, Needs::ReadTimeout | Needs::WriteTimeout));
    for case in &quick {
        let outcome = run_case(case, &cx, args.core_only).await;
        tally.report(case, outcome);
    }
    let outcomes = futures_util::future::join_all(
        timed.iter().map(|case| run_case(case, &cx, args.core_only)),
    )
    .await;
    for (case, outcome) in timed.iter().zip(outcomes) {
        tally.report(case, outcome);
    }

    println!(
        "{} passed, {} failed, {} skipped",
        tally.passed,
        tally.core_failed + tally.ext_failed,
        tally.skipped
    );
    let failed = tally.core_failed
        + if args.allow_ext_failures {
            0
        } else {
            tally.ext_failed
        };
    if failed > 0 {
        return Err(format!("{failed} case(s) failed against {addr}").into());
    }
    Ok(())
}

async fn resolve(addr: &str) -> Result<SocketAddr, String> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}: no address"))
}

async fn run_case(case: &Case, cx: &Rc<Ctx>, core_only: bool) -> Outcome {
    if core_only && case.tier == Tier::Ext {
        return Err(Fail::Skip("--core-only".into()));
    }
    let budget = match case.needs {
        Needs::Nothing | Needs::Auth => cx.timeout * 3 + STALLED * 2,
        Needs::ReadTimeout => match cx.read_timeout {
            Some(d) => d * 3 + cx.timeout * 2,
            None => return Err(Fail::Skip("needs --read-timeout".into())),
        },
        Needs::WriteTimeout => match cx.write_timeout {
            Some(d) => d * 4 + cx.timeout * 3,
            None => return Err(Fail::Skip("needs --write-timeout".into())),
        },
    };
    if case.needs == Needs::Auth && cx.auth.is_none() {
        return Err(Fail::Skip("needs --auth".into()));
    }
    // Every wait inside a case has its own limit; this one only guards
    // against a case that would forget one.
    match timeout(budget, (case.run)(cx.clone())).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Fail::Fail(format!("no result within {budget:?}"))),
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    core_failed: usize,
    ext_failed: usize,
    skipped: usize,
}

impl Tally {
    fn report(&mut self, case: &Case, outcome: Outcome) {
        let tier = match case.tier {
            Tier::Core => "[core]",
            Tier::Ext => "[ext]",
        };
        let (status, detail) = match outcome {
            Ok(()) => {
                self.passed += 1;
                ("PASS", String::new())
            }
            Err(Fail::Skip(why)) => {
                self.skipped += 1;
                ("SKIP", format!("  ({why})"))
            }
            Err(Fail::Fail(why)) => {
                match case.tier {
                    Tier::Core => self.core_failed += 1,
                    Tier::Ext => self.ext_failed += 1,
                }
                ("FAIL", format!("  ({why})"))
            }
        };
        println!("{status}  {tier:<6}  {}{detail}", case.name);
    }
}

// ---------------------------------------------------------------------------
// A raw connection.

/// What came from the server.
enum Got {
    Frame(Frame),
    /// The server closed ("closed") or reset ("reset") the connection.
    Closed(String),
    /// Nothing before the deadline.
    Silent,
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    max_body: usize,
    /// When waiting gives up.
    deadline: Instant,
    /// Set once the server has closed the connection.
    closed: Option<String>,
}

/// Read buffer room asked for before each read.
const READ_CHUNK: usize = 64 * 1024;

impl Conn {
    /// A new connection; the case's time starts now.
    async fn open(cx: &Ctx) -> Result<Conn, String> {
        Conn::open_with(cx, None).await
    }

    /// A new connection, logged in with `--auth` if it was given.
    async fn ready(cx: &Ctx) -> Result<Conn, String> {
        let mut conn = Conn::open(cx).await?;
        if let Some(credentials) = &cx.auth {
            conn.login(credentials).await?;
        }
        Ok(conn)
    }

    /// With small socket buffers, so that a client that does not read is
    /// noticed by the server after little data.
    async fn open_with(cx: &Ctx, socket_buffers: Option<u32>) -> Result<Conn, String> {
        let deadline = Instant::now() + cx.timeout;
        let socket = if cx.addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| format!("socket: {e}"))?;
        if let Some(size) = socket_buffers {
            let _ = socket.set_recv_buffer_size(size);
            let _ = socket.set_send_buffer_size(size);
        }
        let stream = match timeout_at(deadline, socket.connect(cx.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(format!("connect: {e}")),
            Err(_) => return Err(format!("connect: no answer within {:?}", cx.timeout)),
        };
        let _ = stream.set_nodelay(true);
        // A little over the limit, so that a reply over it is read and
        // reported as such rather than as garbage.
        let decoder = Codec::builder()
            .max_body(cx.max_body.saturating_add(READ_CHUNK))
            .decoder();
        Ok(Conn {
            stream,
            buf: BytesMut::new(),
            decoder,
            max_body: cx.max_body,
            deadline,
            closed: None,
        })
    }

    /// Gives the rest of the case `limit` from now.
    fn wait_at_most(&mut self, limit: Duration) {
        self.deadline = Instant::now() + limit;
    }

    async fn login(&mut self, credentials: &str) -> Result<(), String> {
        self.send_frames(&[Frame::new(Command::LOGIN, credentials.to_owned())])
            .await?;
        self.expect(&Frame::new(Command::LOGIN, "OK"))
            .await
            .map_err(|e| format!("LOGIN with the --auth credentials: {e}"))
    }

    async fn send_frames(&mut self, frames: &[Frame]) -> Result<(), String> {
        self.send(&wire(frames)).await
    }

    /// Writes all of `bytes`, reading what the server sends meanwhile so that
    /// neither side blocks the other.
    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Conn {
            stream,
            buf,
            deadline,
            closed,
            ..
        } = self;
        let (mut reader, mut writer) = stream.split();
        let write = writer.write_all(bytes);
        tokio::pin!(write);
        loop {
            buf.reserve(READ_CHUNK);
            tokio::select! {
                biased;
                written = &mut write => {
                    return written.map_err(|e| match closed {
                        Some(how) => format!("the server {how} the connection before all requests were sent ({e})"),
                        None => format!("write failed: {e}"),
                    });
                }
                read = reader.read_buf(buf), if closed.is_none() => match read {
                    Ok(0) => *closed = Some("closed".into()),
                    Ok(_) => {}
                    Err(e) => *closed = Some(closed_how(&e)),
                },
                () = sleep_until(*deadline) => {
                    return Err(format!("could not send {} bytes in time: the server is not reading", bytes.len()));
                }
            }
        }
    }

    /// The next frame, or the end of the connection, or nothing in time.
    async fn recv(&mut self) -> Result<Got, String> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if frame.body.len() > self.max_body {
                        return Err(format!(
                            "the server sent {} over the {}-byte body limit",
                            describe(&frame),
                            self.max_body
                        ));
                    }
                    return Ok(Got::Frame(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("the server sent bytes that are not a frame: {e}")),
            }
            if let Some(how) = &self.closed {
                if self.decoder.is_mid_frame(&self.buf) {
                    return Err(format!(
                        "connection {how} in the middle of a frame from the server"
                    ));
                }
                return Ok(Got::Closed(how.clone()));
            }
            self.buf.reserve(READ_CHUNK);
            match timeout_at(self.deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(Got::Silent),
                Ok(Ok(0)) => self.closed = Some("closed".into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => self.closed = Some(closed_how(&e)),
            }
        }
    }

    /// Expects exactly `want` next.
    async fn expect(&mut self, want: &Frame) -> Result<(), String> {
        match self.recv().await? {
            Got::Frame(frame) if frame == *want => Ok(()),
            Got::Frame(frame) => Err(format!(
                "expected {}, got {}",
                describe(want),
                describe(&frame)
            )),
            Got::Closed(how) => Err(format!("connection {how} instead of {}", describe(want))),
            Got::Silent => Err(format!("no {} within the time allowed", describe(want))),
        }
    }

    /// Expects an ERROR frame next, with this reason if one is given;
    /// returns the reason.
    async fn expect_error(&mut self, reason: Option<&str>) -> Result<String, String> {
        match self.recv().await? {
            Got::Frame(frame) if frame.command == Command::ERROR && frame.version == 1 => {
                let text = std::str::from_utf8(&frame.body)
                    .map_err(|_| format!("the reason of {} is not UTF-8", describe(&frame)))?
                    .to_owned();
                match reason {
                    Some(want) if text != want => {
                        Err(format!("expected ERROR {want:?}, got ERROR {text:?}"))
                    }
                    _ => Ok(text),
                }
            }
            Got::Frame(frame) => Err(format!(
                "expected ERROR{}, got {}",
                reason.map(|r| format!(" {r:?}")).unwrap_or_default(),
                describe(&frame)
            )),
            Got::Closed(how) => Err(format!("connection {how} without an ERROR frame")),
            Got::Silent => Err("no ERROR frame within the time allowed".into()),
        }
    }

    /// Expects the server to close the connection next, after an ERROR
    /// frame if `error_allowed`.
    async fn expect_closed(&mut self, error_allowed: bool) -> Result<(), String> {
        let started = Instant::now();
        loop {
            match self.recv().await? {
                Got::Closed(_) => return Ok(()),
                Got::Frame(frame) if error_allowed && frame.command == Command::ERROR => {}
                Got::Frame(frame) => {
                    return Err(format!(
                        "expected the connection to be closed, got {}",
                        describe(&frame)
                    ))
                }
                Got::Silent => {
                    return Err(format!(
                        "the connection is still open after {:?}",
                        started.elapsed()
                    ))
                }
            }
        }
    }
}

fn closed_how(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
            "reset".into()
        }
        _ => format!("failed ({e})"),
    }
}

/// The wire bytes of `frames`, back to back.
fn wire(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.iter().map(Frame::encoded_len).sum());
    for frame in frames {
        out.extend_from_slice(&frame.to_bytes());
    }
    out
}

/// A frame for a FAIL line: command, the start of the body, its size.
fn describe(frame: &Frame) -> String {
    const SHOWN: usize = 32;
    let shown = &frame.body[..frame.body.len().min(SHOWN)];
    let more = if frame.body.len() > SHOWN { "..." } else { "" };
    let version = if frame.version == gopro::VERSION {
        String::new()
    } else {
        format!(" version {}", frame.version)
    };
    format!(
        "{}{version} \"{}{more}\" ({} bytes)",
        frame.command,
        shown.escape_ascii(),
        frame.body.len()
    )
}

/// A HEARTBEAT sent after a request to see that the connection is still
/// usable (and, when its echo comes first, that the request got no reply).
fn sentinel() -> Frame {
    Frame::new(Command::HEARTBEAT, "gopro check: still there?")
}

/// `len` bytes that are not all alike.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn message_reply(body: &[u8]) -> Frame {
    let mut reply = b"Server says: ".to_vec();
    reply.extend_from_slice(body);
    Frame::new(Command::MESSAGE, reply)
}

/// A header alone, for a body that will never be sent.
fn header(command: Command, length: u32) -> [u8; HEADER_LEN] {
    Header::new(command, length).to_bytes()
}

/// The header that announces one byte more than `limit`.
fn header_over(command: Command, limit: usize) -> Result<[u8; HEADER_LEN], Fail> {
    u32::try_from(limit + 1)
        .map(|length| header(command, length))
        .map_err(|_| Fail::Skip("the body limit is the largest length a header can carry".into()))
}

// ---------------------------------------------------------------------------
// Core: the echoes.

async fn heartbeat_empty(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    // SPEC §7: 47 4F 01 00 00 00 00 00, echoed as is.
    c.send(&[0x47, 0x4F, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00])
        .await?;
    c.expect(&Frame::heartbeat()).await?;
    Ok(())
}

async fn heartbeat_body(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    let frames = [
        Frame::new(Command::HEARTBEAT, "beat"),
        Frame::new(Command::HEARTBEAT, pattern(cx.max_body.min(1000))),
    ];
    for frame in &frames {
        c.send_frames(std::slice::from_ref(frame)).await?;
        c.expect(frame).await?;
    }
    Ok(())
}

async fn message_hello(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    // SPEC §7: the request and the reply, byte for byte.
    let mut request = vec![0x47, 0x4F, 0x01, 0x01, 0x00, 0x00, 0x00, 0x10];
    request.extend_from_slice(b"Hello TCP World!");
    c.send(&request).await?;
    // Expected: 47 4F 01 01 00 00 00 1D, then the 29 bytes.
    c.expect(&Frame::new(
        Command::MESSAGE,
        "Server says: Hello TCP World!",
    ))
    .await?;
    Ok(())
}

async fn message_empty(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    c.send_frames(&[Frame::new(Command::MESSAGE, "")]).await?;
    c.expect(&message_reply(b"")).await?;
    Ok(())
}

async fn message_binary(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    // The body is opaque: every byte value, NUL and invalid UTF-8 included.
    let mut body: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    body.truncate(cx.max_body.saturating_sub(13));
    c.send_frames(&[Frame::new(Command::MESSAGE, body.clone())])
        .await?;
    c.expect(&message_reply(&body)).await?;
    Ok(())
}

async fn login_then_heartbeat(cx: Rc<Ctx>) -> Outcome {
    // The reference logs a LOGIN and sends nothing; the SPEC sends LOGIN
    // "OK". Either way the next request is answered.
    let mut c = Conn::open(&cx).await?;
    let credentials = cx.auth.clone().unwrap_or_else(|| "gopro-check".into());
    c.send_frames(&[Frame::new(Command::LOGIN, credentials), sentinel()])
        .await?;
    match c.recv().await? {
        Got::Frame(f) if f == sentinel() => return Ok(()),
        Got::Frame(f) if f == Frame::new(Command::LOGIN, "OK") => {}
        Got::Frame(f) => {
            return Err(format!(
                "expected LOGIN \"OK\" or no reply to LOGIN, got {}",
                describe(&f)
            )
            .into())
        }
        Got::Closed(how) => return Err(format!("connection {how} after LOGIN").into()),
        Got::Silent => {
            return Err("no answer to the HEARTBEAT sent after LOGIN"
                .to_string()
                .into())
        }
    }
    c.expect(&sentinel()).await?;
    Ok(())
}

async fn body_at_limit(cx: Rc<Ctx>) -> Outcome {
    // SPEC §7: a body of exactly the limit is accepted (the example's
    // header is a MESSAGE's, whose echo would be over the limit; a
    // HEARTBEAT's echo is the same size).
    let mut c = Conn::ready(&cx).await?;
    let frame = Frame::new(Command::HEARTBEAT, pattern(cx.max_body));
    c.send_frames(std::slice::from_ref(&frame)).await?;
    c.expect(&frame).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Core: refusals. The server closes; an ERROR first is allowed (and
// required by the ext cases below).

async fn over_limit_closes(cx: Rc<Ctx>) -> Outcome {
    // SPEC §7: 47 4F 01 01 00 A0 00 01 is refused on the header alone; the
    // body is never sent, so a server that waits for it never closes.
    let head = header_over(Command::MESSAGE, cx.max_body)?;
    let mut c = Conn::ready(&cx).await?;
    c.send(&head).await?;
    c.expect_closed(true)
        .await
        .map_err(|e| format!("after a header announcing {} bytes: {e}", cx.max_body + 1))?;
    Ok(())
}

async fn little_endian_closes(cx: Rc<Ctx>) -> Outcome {
    // SPEC §7: a length of 1 written little-endian reads as 16,777,216.
    if cx.max_body >= 1 << 24 {
        return Err(Fail::Skip("the body limit allows 16 MiB".into()));
    }
    let mut c = Conn::ready(&cx).await?;
    c.send(&[0x47, 0x4F, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00])
        .await?;
    c.expect_closed(true).await?;
    Ok(())
}

async fn bad_magic_closes(cx: Rc<Ctx>) -> Outcome {
    // SPEC §7: 47 30 01 00 00 00 00 00.
    let mut c = Conn::ready(&cx).await?;
    c.send(&[0x47, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00])
        .await?;
    c.expect_closed(true).await?;
    Ok(())
}

async fn frame_then_bad_magic(cx: Rc<Ctx>) -> Outcome {
    // The frame before the garbage was whole: it is answered before the
    // connection is closed.
    let mut c = Conn::ready(&cx).await?;
    let beat = Frame::new(Command::HEARTBEAT, "before the garbage");
    let mut bytes = beat.to_bytes().to_vec();
    bytes.extend_from_slice(&[0x47, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]);
    c.send(&bytes).await?;
    c.expect(&beat).await?;
    c.expect_closed(true).await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Core: fragmentation and pipelining.

async fn fragment_one_byte(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    let beat = Frame::new(Command::HEARTBEAT, "beat");
    let bytes = wire(&[
        beat.clone(),
        Frame::new(Command::MESSAGE, "Hello TCP World!"),
    ]);
    // TCP_NODELAY is set, so each byte leaves in a segment of its own.
    for byte in bytes {
        c.send(&[byte]).await?;
        sleep(Duration::from_millis(1)).await;
    }
    c.expect(&beat).await?;
    c.expect(&message_reply(b"Hello TCP World!")).await?;
    Ok(())
}

async fn fragment_header_body(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    let bytes = Frame::new(Command::MESSAGE, "split from its header").to_bytes();
    c.send(&bytes[..HEADER_LEN]).await?;
    sleep(Duration::from_millis(50)).await;
    c.send(&bytes[HEADER_LEN..HEADER_LEN + 5]).await?;
    sleep(Duration::from_millis(20)).await;
    c.send(&bytes[HEADER_LEN + 5..]).await?;
    c.expect(&message_reply(b"split from its header")).await?;
    Ok(())
}

async fn fragment_partial_next(cx: Rc<Ctx>) -> Outcome {
    // A whole frame followed by the start of the next one: the first is
    // answered without waiting for the rest of the second.
    let mut c = Conn::ready(&cx).await?;
    let first = Frame::new(Command::MESSAGE, "first").to_bytes();
    let second = Frame::new(Command::MESSAGE, "second").to_bytes();
    let mut bytes = first.to_vec();
    bytes.extend_from_slice(&second[..5]);
    c.send(&bytes).await?;
    c.expect(&message_reply(b"first"))
        .await
        .map_err(|e| format!("with 5 bytes of the next frame sent: {e}"))?;
    c.send(&second[5..]).await?;
    c.expect(&message_reply(b"second")).await?;
    Ok(())
}

async fn pipeline(cx: Rc<Ctx>) -> Outcome {
    const COUNT: usize = 1000;
    let mut c = Conn::ready(&cx).await?;
    let big = cx.max_body.saturating_sub(13).min(100 * 1024);
    let requests: Vec<Frame> = (0..COUNT)
        .map(|i| match i {
            _ if i == COUNT / 2 => Frame::new(Command::MESSAGE, pattern(big)),
            _ if i % 2 == 0 => Frame::new(Command::HEARTBEAT, format!("hb {i}")),
            _ => Frame::new(Command::MESSAGE, format!("msg {i}")),
        })
        .collect();
    c.send_frames(&requests).await?;
    for (i, request) in requests.iter().enumerate() {
        let want = if request.command == Command::HEARTBEAT {
            request.clone()
        } else {
            message_reply(&request.body)
        };
        c.expect(&want)
            .await
            .map_err(|e| format!("reply {} of {COUNT}: {e}", i + 1))?;
    }
    Ok(())
}

async fn pipeline_large(cx: Rc<Ctx>) -> Outcome {
    // More replies than any socket buffer holds, all requested before the
    // first is read: the server writes them in many goes, in order.
    const COUNT: usize = 320;
    let mut c = Conn::ready(&cx).await?;
    let size = cx.max_body.min(64 * 1024);
    let requests: Vec<Frame> = (0..COUNT)
        .map(|i| match i % 2 {
            0 => Frame::new(Command::HEARTBEAT, pattern(size - i.min(size))),
            _ => Frame::new(Command::MESSAGE, format!("msg {i}")),
        })
        .collect();
    c.send_frames(&requests).await?;
    for (i, request) in requests.iter().enumerate() {
        let want = if request.command == Command::HEARTBEAT {
            request.clone()
        } else {
            message_reply(&request.body)
        };
        c.expect(&want)
            .await
            .map_err(|e| format!("reply {} of {COUNT}: {e}", i + 1))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// A client that never reads its replies.

/// Most request bytes a client that reads nothing may get the server to
/// take. Socket buffers account for a few MiB of it; a server that takes
/// this much is buffering the replies without bound.
const NEVER_READ_CAP: usize = 128 * 1024 * 1024;
/// A write blocked this long means the server stopped reading.
const STALLED: Duration = Duration::from_millis(500);

/// Connects, then writes HEARTBEATs whose echoes are never read until the
/// server stops taking them (or closes). Returns the connection and the
/// request bytes taken.
async fn stall(cx: &Ctx) -> Result<(Conn, usize), String> {
    let mut c = Conn::open_with(cx, Some(64 * 1024)).await?;
    if let Some(credentials) = &cx.auth {
        c.login(credentials).await?;
    }
    let body = cx.max_body.min(64 * 1024);
    let frame = Frame::new(Command::HEARTBEAT, pattern(body)).to_bytes();
    let chunk: Vec<u8> = frame.repeat((1024 * 1024 / frame.len()).max(1));
    let mut sent = 0;
    while sent < NEVER_READ_CAP {
        match timeout(STALLED, c.stream.write_all(&chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            // The server stopped reading, or closed: either protects it.
            Err(_) | Ok(Err(_)) => return Ok((c, sent)),
        }
    }
    // Only echoes as large as the requests have to back up; a server
    // whose replies are wrong (say, small) is reported as such.
    c.wait_at_most(cx.timeout);
    c.expect(&Frame::new(Command::HEARTBEAT, pattern(body)))
        .await
        .map_err(|e| format!("the reply to the first request: {e}"))?;
    Err(format!(
        "the server took {} MiB of requests from a client that reads none of the replies: are they buffered without bound?",
        sent >> 20
    ))
}

async fn never_reading_others_served(cx: Rc<Ctx>) -> Outcome {
    let (stuck, _) = stall(&cx).await?;
    let mut other = Conn::ready(&cx).await?;
    other.send_frames(&[sentinel()]).await?;
    other
        .expect(&sentinel())
        .await
        .map_err(|e| format!("another connection, while one client does not read: {e}"))?;
    drop(stuck);
    Ok(())
}

async fn never_reading_closed(cx: Rc<Ctx>) -> Outcome {
    let limit = cx.write_timeout.expect("needs --write-timeout");
    let (mut c, _) = stall(&cx).await?;
    let started = Instant::now();
    let give_up = started + limit * 3 + cx.timeout;
    // A closed socket shows as a failed write (reset by the server); the
    // replies are never read, since reading would let the server go on.
    let more = Frame::new(Command::HEARTBEAT, "more").to_bytes();
    loop {
        match timeout_at(give_up, c.stream.write_all(&more)).await {
            Ok(Ok(())) => sleep(Duration::from_millis(10)).await,
            Ok(Err(_)) => return Ok(()),
            Err(_) => {
                return Err(format!(
                    "a client that reads no reply is still connected {:?} after the server stopped taking its requests (write timeout {limit:?})",
                    started.elapsed()
                )
                .into())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Extensions.

async fn login_ok(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    let credentials = cx.auth.clone().unwrap_or_else(|| "gopro-check".into());
    c.send_frames(&[Frame::new(Command::LOGIN, credentials), sentinel()])
        .await?;
    match c.recv().await? {
        Got::Frame(f) if f == Frame::new(Command::LOGIN, "OK") => {}
        Got::Frame(f) if f == sentinel() => {
            return Err(
                "no reply to LOGIN (the reference sends none; SPEC: LOGIN \"OK\")"
                    .to_string()
                    .into(),
            )
        }
        Got::Frame(f) if f.command == Command::ERROR && cx.auth.is_none() => {
            return Err(format!("LOGIN got {}: does the server need --auth?", describe(&f)).into())
        }
        Got::Frame(f) => return Err(format!("expected LOGIN \"OK\", got {}", describe(&f)).into()),
        Got::Closed(how) => return Err(format!("connection {how} after LOGIN").into()),
        Got::Silent => return Err("no reply to LOGIN".to_string().into()),
    }
    c.expect(&sentinel()).await?;
    Ok(())
}

/// A protocol error: ERROR saying why, then the connection closed.
async fn error_then_close(c: &mut Conn) -> Result<(), String> {
    let reason = c.expect_error(None).await?;
    if reason.is_empty() {
        return Err("the ERROR frame gives no reason".into());
    }
    c.expect_closed(false)
        .await
        .map_err(|e| format!("after ERROR {reason:?}: {e}"))
}

async fn over_limit_error(cx: Rc<Ctx>) -> Outcome {
    let head = header_over(Command::MESSAGE, cx.max_body)?;
    let mut c = Conn::ready(&cx).await?;
    c.send(&head).await?;
    error_then_close(&mut c).await?;
    Ok(())
}

async fn bad_magic_error(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    c.send(&[0x47, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00])
        .await?;
    error_then_close(&mut c).await?;
    Ok(())
}

async fn version_error(cx: Rc<Ctx>) -> Outcome {
    // SPEC §2: a version the server does not speak is a protocol error
    // (the reference reports the version and goes on).
    let mut c = Conn::ready(&cx).await?;
    c.send_frames(&[Frame::new(Command::HEARTBEAT, "version 2").with_version(2)])
        .await?;
    error_then_close(&mut c).await?;
    Ok(())
}

async fn unknown_command(cx: Rc<Ctx>) -> Outcome {
    // A reserved code, which no application can have a handler for.
    let mut c = Conn::ready(&cx).await?;
    c.send_frames(&[Frame::new(Command(15), "?"), sentinel()])
        .await?;
    c.expect_error(Some("unknown command: 15")).await?;
    c.expect(&sentinel())
        .await
        .map_err(|e| format!("after ERROR \"unknown command: 15\": {e}"))?;
    Ok(())
}

async fn reply_at_limit(cx: Rc<Ctx>) -> Outcome {
    // The largest MESSAGE whose echo fits: the reply is exactly the limit.
    let Some(len) = cx.max_body.checked_sub(13) else {
        return Err(Fail::Skip("the body limit is under 13 bytes".into()));
    };
    let mut c = Conn::ready(&cx).await?;
    let body = pattern(len);
    c.send_frames(&[Frame::new(Command::MESSAGE, body.clone())])
        .await?;
    c.expect(&message_reply(&body)).await?;
    Ok(())
}

async fn reply_over_limit(cx: Rc<Ctx>) -> Outcome {
    // SPEC §2: one byte more and the echo would be over the limit: ERROR
    // instead, and the framing is intact so the connection stays open.
    let Some(len) = cx.max_body.checked_sub(12) else {
        return Err(Fail::Skip("the body limit is under 12 bytes".into()));
    };
    let mut c = Conn::ready(&cx).await?;
    c.send_frames(&[Frame::new(Command::MESSAGE, pattern(len)), sentinel()])
        .await?;
    c.expect_error(None).await?;
    c.expect(&sentinel())
        .await
        .map_err(|e| format!("after the ERROR: {e}"))?;
    Ok(())
}

fn auth(cx: &Ctx) -> &str {
    cx.auth.as_deref().expect("needs --auth")
}

fn wrong_credentials(cx: &Ctx) -> String {
    format!("not-{}", auth(cx))
}

async fn prelogin_heartbeat(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    c.send_frames(&[sentinel()]).await?;
    c.expect(&sentinel()).await?;
    Ok(())
}

async fn prelogin_message(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    c.send_frames(&[Frame::new(Command::MESSAGE, "hi"), sentinel()])
        .await?;
    c.expect_error(Some("not authenticated")).await?;
    c.expect(&sentinel())
        .await
        .map_err(|e| format!("after ERROR \"not authenticated\": {e}"))?;
    Ok(())
}

async fn prelogin_at_limit(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    let frame = Frame::new(Command::HEARTBEAT, pattern(cx.prelogin_max_body));
    c.send_frames(std::slice::from_ref(&frame)).await?;
    c.expect(&frame).await?;
    Ok(())
}

async fn prelogin_over_limit(cx: Rc<Ctx>) -> Outcome {
    let head = header_over(Command::HEARTBEAT, cx.prelogin_max_body)?;
    let mut c = Conn::open(&cx).await?;
    c.send(&head).await?;
    error_then_close(&mut c).await.map_err(|e| {
        format!(
            "before LOGIN, a header announcing {} bytes: {e}",
            cx.prelogin_max_body + 1
        )
    })?;
    Ok(())
}

async fn login_wrong(cx: Rc<Ctx>) -> Outcome {
    if cx.max_login_failures <= 1 {
        return Err(Fail::Skip(
            "one failed LOGIN closes (--max-login-failures)".into(),
        ));
    }
    let mut c = Conn::open(&cx).await?;
    c.send_frames(&[
        Frame::new(Command::LOGIN, wrong_credentials(&cx)),
        Frame::new(Command::MESSAGE, "hi"),
        sentinel(),
    ])
    .await?;
    c.expect_error(None)
        .await
        .map_err(|e| format!("LOGIN with wrong credentials: {e}"))?;
    c.expect_error(Some("not authenticated"))
        .await
        .map_err(|e| format!("MESSAGE after a failed LOGIN: {e}"))?;
    c.expect(&sentinel()).await?;
    Ok(())
}

async fn login_failures_close(cx: Rc<Ctx>) -> Outcome {
    let max = cx.max_login_failures;
    if max == 0 {
        return Err(Fail::Skip("--max-login-failures 0".into()));
    }
    let mut c = Conn::open(&cx).await?;
    let wrong = Frame::new(Command::LOGIN, wrong_credentials(&cx));
    for n in 1..max {
        c.send_frames(&[wrong.clone(), sentinel()]).await?;
        c.expect_error(None)
            .await
            .map_err(|e| format!("failed LOGIN {n} of {max}: {e}"))?;
        c.expect(&sentinel())
            .await
            .map_err(|e| format!("after failed LOGIN {n} of {max}: {e}"))?;
    }
    c.send_frames(&[wrong]).await?;
    error_then_close(&mut c)
        .await
        .map_err(|e| format!("failed LOGIN {max} of {max}: {e}"))?;
    Ok(())
}

async fn login_good(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    if cx.max_login_failures > 1 {
        c.send_frames(&[Frame::new(Command::LOGIN, wrong_credentials(&cx))])
            .await?;
        c.expect_error(None)
            .await
            .map_err(|e| format!("LOGIN with wrong credentials: {e}"))?;
    }
    c.login(auth(&cx)).await?;
    c.send_frames(&[Frame::new(Command::MESSAGE, "hi")]).await?;
    c.expect(&message_reply(b"hi"))
        .await
        .map_err(|e| format!("MESSAGE after LOGIN: {e}"))?;
    // The pre-login limit no longer applies.
    if cx.max_body > cx.prelogin_max_body {
        let frame = Frame::new(Command::HEARTBEAT, pattern(cx.prelogin_max_body + 1));
        c.send_frames(std::slice::from_ref(&frame)).await?;
        c.expect(&frame)
            .await
            .map_err(|e| format!("a body over the pre-login limit, after LOGIN: {e}"))?;
    }
    Ok(())
}

async fn login_pipelined(cx: Rc<Ctx>) -> Outcome {
    // LOGIN and the requests that need it, in one write: each frame is
    // handled after the one before it, so the login (and its larger body
    // limit) applies to the frames behind it.
    let mut c = Conn::open(&cx).await?;
    let big = pattern((cx.prelogin_max_body + 1).min(cx.max_body));
    let requests = [
        Frame::new(Command::MESSAGE, "before"),
        Frame::new(Command::LOGIN, auth(&cx).to_owned()),
        Frame::new(Command::MESSAGE, "after"),
        Frame::new(Command::HEARTBEAT, big.clone()),
        Frame::new(Command::MESSAGE, "last"),
    ];
    c.send_frames(&requests).await?;
    c.expect_error(Some("not authenticated"))
        .await
        .map_err(|e| format!("MESSAGE before LOGIN: {e}"))?;
    let replies = [
        Frame::new(Command::LOGIN, "OK"),
        message_reply(b"after"),
        Frame::new(Command::HEARTBEAT, big),
        message_reply(b"last"),
    ];
    for want in &replies {
        c.expect(want).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Deadlines (SPEC §5).

fn read_timeout(cx: &Ctx) -> Duration {
    cx.read_timeout.expect("needs --read-timeout")
}

/// How long after the read timeout a server may take to close.
fn slack(d: Duration) -> Duration {
    d + Duration::from_secs(1)
}

async fn idle_closed(cx: Rc<Ctx>) -> Outcome {
    let d = read_timeout(&cx);
    let mut c = Conn::open(&cx).await?;
    let started = Instant::now();
    c.wait_at_most(d + slack(d));
    c.expect_closed(true)
        .await
        .map_err(|e| format!("a client that sends nothing, read timeout {d:?}: {e}"))?;
    let after = started.elapsed();
    if after < d / 2 {
        return Err(format!(
            "an idle client was closed after {after:?}, well before the read timeout of {d:?}"
        )
        .into());
    }
    Ok(())
}

async fn slow_drip_closed(cx: Rc<Ctx>) -> Outcome {
    // One byte every eighth of the read timeout: each byte arrives well in
    // time, the frame never does. A server that restarts its deadline on
    // every read never closes.
    let d = read_timeout(&cx);
    let frame = Frame::new(Command::MESSAGE, vec![b'.'; 64]).to_bytes();
    let step = (d / 8).max(Duration::from_millis(1));
    let mut c = Conn::open(&cx).await?;
    let started = Instant::now();
    c.wait_at_most(d + slack(d));
    let mut tick = tokio::time::interval(step);
    let mut sent = 0;
    loop {
        let got = tokio::select! {
            _ = tick.tick(), if sent < frame.len() => None,
            got = c.recv() => Some(got?),
        };
        match got {
            None => {
                if c.stream.write_all(&frame[sent..sent + 1]).await.is_err() {
                    break; // closed by the server
                }
                sent += 1;
            }
            Some(Got::Closed(_)) => break,
            Some(Got::Frame(f)) if f.command == Command::ERROR => {}
            Some(Got::Frame(f)) => {
                return Err(format!("while dripping a frame, got {}", describe(&f)).into())
            }
            Some(Got::Silent) => {
                return Err(format!(
                    "still open after {:?} of one byte every {step:?} ({sent} bytes sent), read timeout {d:?}: the deadline must cover the whole frame",
                    started.elapsed()
                )
                .into())
            }
        }
    }
    let after = started.elapsed();
    if after < d / 2 {
        return Err(format!(
            "a dripping client was closed after {after:?}, well before the read timeout of {d:?}"
        )
        .into());
    }
    Ok(())
}

async fn heartbeats_keep_alive(cx: Rc<Ctx>) -> Outcome {
    // SPEC §5: the deadline counts from the previous frame, so HEARTBEATs
    // more often than the read timeout keep a connection open past it.
    let d = read_timeout(&cx);
    let mut c = Conn::open(&cx).await?;
    let started = Instant::now();
    for i in 1..=5 {
        sleep(d / 3).await;
        let beat = Frame::new(Command::HEARTBEAT, format!("keep-alive {i}"));
        c.wait_at_most(cx.timeout);
        c.send_frames(std::slice::from_ref(&beat)).await?;
        c.expect(&beat).await.map_err(|e| {
            format!(
                "HEARTBEAT {i}, {:?} after connecting, one every {:?} (read timeout {d:?}): {e}",
                started.elapsed(),
                d / 3
            )
        })?;
    }
    Ok(())
}
