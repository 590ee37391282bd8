//! The `session` target's pieces: servers started once in this process, a
//! model of what a server answers to a byte stream (SPEC §2–4), and a
//! client that plays a fuzz input's operations over one connection.

use std::convert::Infallible;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use gopro::server::Server;
use gopro::{Command, Error, Frame, Header, HEADER_LEN, MAGIC, VERSION};

use crate::seed::Writer;

/// The only credentials the authenticating servers accept.
pub const GOOD_LOGIN: &[u8] = b"fuzz:open-sesame";
/// Operations played per input, at most.
pub const MAX_OPS: usize = 64;
/// Bytes sent per input, at most.
pub const MAX_STREAM: usize = 64 * 1024;
/// How long a reply (or the end of the stream) may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How one of the test servers is configured.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// An authenticator accepting only [`GOOD_LOGIN`] is set.
    pub auth: bool,
    pub max_body: usize,
    pub prelogin_max_body: usize,
    pub max_login_failures: u32,
    /// Reply bytes buffered before they are written out mid-batch.
    pub max_buffered_replies: usize,
}

/// The servers an input can talk to (its first byte, modulo their number).
pub const SPECS: [Spec; 3] = [
    // No login; a small limit, so that replies and reasons hit it, and
    // replies written out every few frames.
    Spec {
        auth: false,
        max_body: 48,
        prelogin_max_body: 48,
        max_login_failures: 3,
        max_buffered_replies: 64,
    },
    // Login required; small limits before and after.
    Spec {
        auth: true,
        max_body: 96,
        prelogin_max_body: 24,
        max_login_failures: 3,
        max_buffered_replies: gopro::server::DEFAULT_MAX_BUFFERED_REPLIES,
    },
    // Login required; the default pre-login limit and a large one after, so
    // that announced lengths far beyond what arrives are allowed.
    Spec {
        auth: true,
        max_body: 4 * 1024 * 1024,
        prelogin_max_body: gopro::server::DEFAULT_PRELOGIN_MAX_BODY,
        max_login_failures: 2,
        max_buffered_replies: 4096,
    },
];

/// Application handlers on every test server: 16 echoes the body reversed,
/// 17 fails, 18 answers nothing, 19 answers command 20 with the body twice.
pub const HANDLED: [u8; 4] = [16, 17, 18, 19];

fn login_refusal(credentials: &[u8]) -> String {
    format!("bad credentials ({} bytes)", credentials.len())
}

fn handler_refusal(body: &[u8]) -> String {
    format!("handler 17 refuses {} bytes", body.len())
}

struct Servers {
    _runtime: tokio::runtime::Runtime,
    addrs: Vec<SocketAddr>,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut addrs = Vec::new();
        for spec in SPECS {
            let mut builder = Server::builder()
                .listen("127.0.0.1:0")
                .raise_nofile_limit(false)
                .max_body(spec.max_body)
                .prelogin_max_body(spec.prelogin_max_body)
                .max_login_failures(spec.max_login_failures)
                .max_buffered_replies(spec.max_buffered_replies)
                .handler(16, |f: Frame| async move {
                    let mut body = f.body.to_vec();
                    body.reverse();
                    Ok::<_, Infallible>(body)
                })
                .handler(17, |f: Frame| async move {
                    Err::<(), _>(handler_refusal(&f.body))
                })
                .handler(18, |_: Frame| async move { Ok::<_, Infallible>(()) })
                .handler(19, |f: Frame| async move {
                    let body = [&f.body[..], &f.body[..]].concat();
                    Ok::<_, Infallible>(Frame::new(20u8, body))
                });
            if spec.auth {
                builder = builder.authenticator(|credentials: Bytes| async move {
                    if credentials == GOOD_LOGIN {
                        Ok(())
                    } else {
                        Err(login_refusal(&credentials))
                    }
                });
            }
            let server = runtime
                .block_on(builder.bind())
                .expect("a server on 127.0.0.1:0");
            addrs.push(server.local_addr());
            runtime.spawn(server.run());
        }
        Servers {
            _runtime: runtime,
            addrs,
        }
    })
}

/// One operation of a session.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A well-formed version-1 frame.
    Frame { command: u8, body: Vec<u8> },
    /// LOGIN with the good credentials.
    Login,
    /// LOGIN with these credentials.
    BadLogin { credentials: Vec<u8> },
    /// A header alone, any version and length: what follows is its body.
    Header {
        version: u8,
        command: u8,
        length: u32,
    },
    /// Raw bytes.
    Raw(Vec<u8>),
    /// A frame with a body of `length` bytes of `fill`.
    Big { command: u8, length: u16, fill: u8 },
    /// The first `keep` bytes of a frame (modulo its length).
    Partial {
        command: u8,
        body: Vec<u8>,
        keep: u8,
    },
    /// Writes what is queued, in pieces of this many bytes.
    Flush { piece: u8 },
    /// Writes what is queued, then reads the replies to every frame sent.
    Read,
}

/// The input of `session`: which server, then the operations.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct SessionInput {
    pub server: u8,
    pub ops: Vec<Op>,
}

impl SessionInput {
    pub fn spec(&self) -> Spec {
        SPECS[usize::from(self.server) % SPECS.len()]
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.server).vec_rest(&self.ops, |w, op| match op {
            Op::Frame { command, body } => {
                w.variant(0, 9).u8(*command).bytes_vec(body);
            }
            Op::Login => {
                w.variant(1, 9);
            }
            Op::BadLogin { credentials } => {
                w.variant(2, 9).bytes_vec(credentials);
            }
            Op::Header {
                version,
                command,
                length,
            } => {
                w.variant(3, 9).u8(*version).u8(*command).u32(*length);
            }
            Op::Raw(bytes) => {
                w.variant(4, 9).bytes_vec(bytes);
            }
            Op::Big {
                command,
                length,
                fill,
            } => {
                w.variant(5, 9).u8(*command).u16(*length).u8(*fill);
            }
            Op::Partial {
                command,
                body,
                keep,
            } => {
                w.variant(6, 9).u8(*command).bytes_vec(body).u8(*keep);
            }
            Op::Flush { piece } => {
                w.variant(7, 9).u8(*piece);
            }
            Op::Read => {
                w.variant(8, 9);
            }
        });
        w.0
    }
}

fn frame_bytes(command: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Header::new(command.into(), body.len() as u32)
        .to_bytes()
        .to_vec();
    out.extend_from_slice(body);
    out
}

/// What the client does, with the bytes laid out in advance.
#[derive(Debug)]
enum Step {
    /// Write up to this offset of the stream, in pieces of this size.
    Write { to: usize, piece: usize },
    /// Read the replies due for what was written.
    Read,
}

/// The operations as one byte stream and the writes and reads along it.
fn plan(ops: &[Op]) -> (Vec<u8>, Vec<Step>) {
    let mut stream = Vec::new();
    let mut steps = Vec::new();
    for op in ops.iter().take(MAX_OPS) {
        let room = MAX_STREAM.saturating_sub(stream.len());
        let bytes = match op {
            Op::Frame { command, body } => frame_bytes(*command, body),
            Op::Login => frame_bytes(Command::LOGIN.code(), GOOD_LOGIN),
            Op::BadLogin { credentials } => frame_bytes(Command::LOGIN.code(), credentials),
            Op::Header {
                version,
                command,
                length,
            } => {
                let mut h = Header::new((*command).into(), *length).to_bytes();
                h[2] = *version;
                h.to_vec()
            }
            Op::Raw(bytes) => bytes.clone(),
            Op::Big {
                command,
                length,
                fill,
            } => {
                let length = usize::from(*length).min(room.saturating_sub(HEADER_LEN));
                frame_bytes(*command, &vec![*fill; length])
            }
            Op::Partial {
                command,
                body,
                keep,
            } => {
                let mut bytes = frame_bytes(*command, body);
                bytes.truncate(usize::from(*keep) % bytes.len());
                bytes
            }
            Op::Flush { piece } => {
                steps.push(Step::Write {
                    to: stream.len(),
                    piece: usize::from(*piece).max(1),
                });
                continue;
            }
            Op::Read => {
                steps.push(Step::Write {
                    to: stream.len(),
                    piece: usize::MAX,
                });
                steps.push(Step::Read);
                continue;
            }
        };
        if bytes.len() > room {
            break;
        }
        stream.extend_from_slice(&bytes);
    }
    steps.push(Step::Write {
        to: stream.len(),
        piece: usize::MAX,
    });
    (stream, steps)
}

/// The last frame of a session that the server does not close: its echo
/// marks the end of the replies.
const SENTINEL: &[u8] = b"fuzz-end";
/// An unfinished frame is completed before the sentinel when it needs at
/// most this many more bytes (otherwise the session ends with a FIN).
const MAX_COMPLETION: usize = 64 * 1024;

/// Bytes that finish the unfinished frame at `stream[start..]`: the rest of
/// a HEARTBEAT header, or zeros for the rest of a body. `None` if that is
/// more than [`MAX_COMPLETION`].
fn completion(stream: &[u8], start: usize) -> Option<Vec<u8>> {
    let have = stream.len() - start;
    if have == 0 {
        return Some(Vec::new());
    }
    if have < HEADER_LEN {
        return Some(Header::new(Command::HEARTBEAT, 0).to_bytes()[have..].to_vec());
    }
    let head = &stream[start..start + HEADER_LEN];
    let length = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let need = HEADER_LEN + length - have;
    (need <= MAX_COMPLETION).then(|| vec![0; need])
}

/// A reply and the stream offset whose arrival calls for it.
#[derive(Clone, Debug)]
pub struct Due {
    pub at: usize,
    pub frame: Frame,
}

/// What a server answers to a whole stream.
#[derive(Debug)]
pub struct Answer {
    pub replies: Vec<Due>,
    /// The offset whose arrival makes the server close, if it does.
    pub close_at: Option<usize>,
    /// Where the bytes not yet handled start (an unfinished frame).
    pub unfinished: usize,
}

/// The model of one connection of a server of `spec` (SPEC §2–4 and the
/// server's documented behaviour), independent of how the stream is cut.
pub fn model(spec: Spec, stream: &[u8]) -> Answer {
    let mut m = Model {
        spec,
        logged_in: !spec.auth,
        failures: 0,
        replies: Vec::new(),
        at: 0,
    };
    let mut limit = if spec.auth {
        spec.prelogin_max_body.min(spec.max_body)
    } else {
        spec.max_body
    };
    let mut start = 0;
    let close_at = loop {
        let rest = &stream[start..];
        if rest.len() < HEADER_LEN {
            break None;
        }
        m.at = start + HEADER_LEN;
        let magic = u16::from_be_bytes([rest[0], rest[1]]);
        let length = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let refused = if magic != MAGIC {
            Some(Error::BadMagic { found: magic })
        } else if length as usize > limit {
            Some(Error::BodyTooLarge {
                length: length.into(),
                limit,
            })
        } else if rest[2] != VERSION {
            Some(Error::UnsupportedVersion {
                found: rest[2],
                expected: VERSION,
            })
        } else {
            None
        };
        if let Some(error) = refused {
            m.error(&error.to_string());
            break Some(m.at);
        }
        let end = HEADER_LEN + length as usize;
        if rest.len() < end {
            break None;
        }
        m.at = start + end;
        let command = Command(rest[3]);
        let body = &rest[HEADER_LEN..end];
        start += end;
        if command == Command::LOGIN {
            if !spec.auth {
                m.push(Command::LOGIN, b"OK", &[]);
            } else if body == GOOD_LOGIN {
                m.logged_in = true;
                m.failures = 0;
                limit = spec.max_body;
                m.push(Command::LOGIN, b"OK", &[]);
            } else {
                m.failures += 1;
                let reason = login_refusal(body);
                if m.failures >= spec.max_login_failures {
                    let max = spec.max_login_failures;
                    m.error(&format!(
                        "login failed: {reason}; {max} failed logins in a row, closing"
                    ));
                    break Some(m.at);
                }
                m.error(&format!("login failed: {reason}"));
            }
        } else if !m.logged_in && command != Command::HEARTBEAT {
            m.error("not authenticated");
        } else if HANDLED.contains(&command.0) {
            match command.0 {
                16 => {
                    let mut reversed = body.to_vec();
                    reversed.reverse();
                    m.push(command, &[], &reversed);
                }
                17 => m.error(&handler_refusal(body)),
                18 => {}
                _ => m.push(Command(20), body, body),
            }
        } else if command == Command::HEARTBEAT {
            m.push(command, &[], body);
        } else if command == Command::MESSAGE {
            m.push(command, b"Server says: ", body);
        } else {
            m.error(&format!("unknown command: {}", command.0));
        }
    };
    Answer {
        replies: m.replies,
        close_at,
        unfinished: start,
    }
}

struct Model {
    spec: Spec,
    logged_in: bool,
    failures: u32,
    replies: Vec<Due>,
    /// The offset whose arrival calls for the replies pushed now.
    at: usize,
}

impl Model {
    /// A reply of `prefix` + `body`, or ERROR if that is over the limit.
    fn push(&mut self, command: Command, prefix: &[u8], body: &[u8]) {
        let length = prefix.len() + body.len();
        if length > self.spec.max_body {
            let e = Error::BodyTooLarge {
                length: length as u64,
                limit: self.spec.max_body,
            };
            return self.error(&format!("reply not sent: {e}"));
        }
        self.replies.push(Due {
            at: self.at,
            frame: Frame::new(command, [prefix, body].concat()),
        });
    }

    /// ERROR with the reason, cut to the limit (and to 4 KiB).
    fn error(&mut self, reason: &str) {
        let mut end = reason.len().min(self.spec.max_body).min(4096);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.push(Command::ERROR, &[], &reason.as_bytes()[..end]);
    }
}

/// The client end of a session: raw bytes out, frames in.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let mut tries = 0;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(stream) => break stream,
                // Out of ephemeral ports for a moment: wait for some to free up.
                Err(e) if e.kind() == ErrorKind::AddrNotAvailable && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot connect to the test server: {e}"),
            }
        };
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8], piece: usize) {
        for chunk in bytes.chunks(piece) {
            if let Err(e) = self.stream.write_all(chunk) {
                panic!("write failed though the server should be reading: {e}");
            }
        }
    }

    /// Closes with a reset instead of a FIN, once the server has closed:
    /// a normal close would leave a TIME-WAIT socket behind for every
    /// session, tens of thousands a minute.
    fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket and a `linger` of the size given.
        unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }

    /// The next frame, or `None` at a clean end of the stream.
    fn recv(&mut self) -> Option<Frame> {
        loop {
            let whole = crate::expected(
                crate::Settings {
                    max_body: u32::MAX as usize,
                    version: None,
                },
                &self.buf,
            );
            if let Some(first) = whole.frames.first() {
                let frame = first.frame.clone();
                self.buf.drain(..first.end);
                return Some(frame);
            }
            if let crate::Ending::Error { error, .. } = whole.ending {
                panic!("the server sent bytes that are not frames: {error}");
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) if self.buf.is_empty() => return None,
                Ok(0) => panic!("the server closed in the middle of a frame"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("no reply within {REPLY_TIMEOUT:?}")
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }
}

/// Plays one input against its server and checks every reply.
pub fn run(input: &SessionInput) {
    let servers = servers();
    let spec = input.spec();
    let addr = servers.addrs[usize::from(input.server) % SPECS.len()];
    let (mut stream, mut steps) = plan(&input.ops);
    let mut answer = model(spec, &stream);
    // A session the server does not close ends with the sentinel's echo,
    // after the unfinished frame is completed: then the client can close
    // with a reset, which leaves no TIME-WAIT socket behind (tens of
    // thousands a minute otherwise), and still know that no reply is
    // missing or extra. Otherwise, the client half-closes and reads to the
    // end of the stream.
    let mut sentinel = false;
    let planned = stream.len();
    // At most: the rest of a header, the body it announces, the sentinel.
    for _ in 0..3 {
        if answer.close_at.is_some() {
            break;
        }
        if answer.unfinished == stream.len() {
            stream.extend_from_slice(&frame_bytes(Command::HEARTBEAT.code(), SENTINEL));
            answer = model(spec, &stream);
            sentinel = answer.close_at.is_none();
            break;
        }
        match completion(&stream, answer.unfinished) {
            Some(tail) => {
                stream.extend_from_slice(&tail);
                answer = model(spec, &stream);
            }
            None => break,
        }
    }
    if stream.len() > planned {
        steps.push(Step::Write {
            to: stream.len(),
            piece: usize::MAX,
        });
    }
    let baseline = crate::alloc::reset_peak();

    let mut client = Client::connect(addr);
    let mut sent = 0;
    let mut read = 0;
    let mut got: Vec<Frame> = Vec::new();
    let mut check = |frame: Frame, read: &mut usize| {
        let due = answer
            .replies
            .get(*read)
            .unwrap_or_else(|| panic!("an unexpected reply {frame:?}"));
        assert_eq!(frame, due.frame, "reply {} is wrong", *read);
        *read += 1;
        got.push(frame);
    };
    for step in &steps {
        if answer.close_at.is_some_and(|at| sent >= at) {
            break;
        }
        match *step {
            Step::Write { to, piece } => {
                if to > sent {
                    // A small piece size over a long stretch: cap the writes at 256.
                    let piece = piece.max((to - sent).div_ceil(256));
                    client.write(&stream[sent..to], piece);
                    sent = to;
                }
            }
            Step::Read => {
                while answer.replies.get(read).is_some_and(|due| due.at <= sent) {
                    let frame = client.recv().unwrap_or_else(|| {
                        panic!(
                            "the server closed before reply {read}: {:?}",
                            answer.replies[read]
                        )
                    });
                    check(frame, &mut read);
                }
            }
        }
    }
    // The end: every reply due for what was sent, then the sentinel's echo
    // or the end of the stream.
    if sentinel {
        let last = answer.replies.last().expect("the sentinel's echo");
        assert_eq!(last.frame, Frame::new(Command::HEARTBEAT, SENTINEL));
        while read < answer.replies.len() {
            let frame = client
                .recv()
                .unwrap_or_else(|| panic!("the server closed before reply {read}"));
            check(frame, &mut read);
        }
    } else {
        if answer.close_at.is_none() {
            let _ = client.stream.shutdown(Shutdown::Write);
        }
        while let Some(frame) = client.recv() {
            check(frame, &mut read);
        }
    }
    client.reset();
    let due = answer.replies.iter().take_while(|d| d.at <= sent).count();
    assert_eq!(
        read,
        due,
        "replies missing: {:?}",
        &answer.replies[read..due]
    );

    // Invariants that hold whatever the model says.
    for frame in &got {
        assert!(frame.body.len() <= spec.max_body, "a reply over the limit");
        assert_eq!(frame.version, VERSION);
    }
    if spec.auth {
        // Nothing but HEARTBEAT echoes, ERRORs and LOGIN answers before the
        // first successful LOGIN.
        for frame in got.iter().take_while(|f| f.command != Command::LOGIN) {
            assert!(
                frame.command == Command::HEARTBEAT || frame.command == Command::ERROR,
                "{frame:?} before a successful LOGIN"
            );
        }
    }
    // Memory: nothing near an announced length that has not arrived.
    let grew = crate::alloc::peak().saturating_sub(baseline);
    let bound = 1024 * 1024 + 8 * stream.len();
    assert!(
        grew <= bound,
        "heap grew by {grew} bytes in a session of {} bytes",
        stream.len()
    );
}

/// A session, to warm the servers up (pools, runtime) before measuring.
pub fn warm_up() {
    for server in 0..SPECS.len() as u8 {
        run(&SessionInput {
            server,
            ops: vec![
                Op::Login,
                Op::Frame {
                    command: 1,
                    body: b"warm".to_vec(),
                },
                Op::Read,
            ],
        });
    }
}
