//! The cases, a file per theme, and what they share: the list in the order
//! they are reported, the frames they send and expect, and the checks that
//! several cases make with another limit or another request.

mod deadlines;
mod echo;
mod framing;
mod login;
mod refusals;
mod stall;

use bytes::Bytes;
use gopro::{Command, Frame, Header, HEADER_LEN};

use super::args::Ctx;
use super::conn::Conn;
use super::runner::{case, Case, Fail, Needs, Outcome, Tier};
pub(super) use stall::STALLED;

/// Every case, in the order they are reported. Cases that wait for the
/// server's deadlines run last, at the same time, so that they cost about
/// one read timeout in all.
#[rustfmt::skip]
pub(super) fn cases() -> Vec<Case> {
    use Needs::*;
    use Tier::*;
    use deadlines::*;
    use echo::*;
    use framing::*;
    use login::*;
    use refusals::*;
    use stall::*;
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

/// A header with bad magic (SPEC §7: 47 30 01 00 00 00 00 00).
const BAD_MAGIC: [u8; HEADER_LEN] = [0x47, 0x30, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00];

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

/// Sends `frame` and expects it back, as HEARTBEAT echoes it.
async fn echoed(c: &mut Conn, frame: &Frame) -> Result<(), String> {
    c.send_frames(std::slice::from_ref(frame)).await?;
    c.expect(frame).await
}

/// A HEARTBEAT with a body of exactly `limit` is echoed (SPEC §7).
async fn heartbeat_at_limit(mut c: Conn, limit: usize) -> Outcome {
    echoed(&mut c, &Frame::new(Command::HEARTBEAT, pattern(limit))).await?;
    Ok(())
}

/// Expects each request's reply, in order: a HEARTBEAT echoed, a MESSAGE
/// answered.
async fn expect_replies(c: &mut Conn, requests: &[Frame]) -> Result<(), String> {
    let count = requests.len();
    for (i, request) in requests.iter().enumerate() {
        let want = if request.command == Command::HEARTBEAT {
            request.clone()
        } else {
            message_reply(&request.body)
        };
        c.expect(&want)
            .await
            .map_err(|e| format!("reply {} of {count}: {e}", i + 1))?;
    }
    Ok(())
}

/// Sends `request` and the sentinel: an ERROR (with `reason` if given),
/// then the sentinel's echo, since the connection stays open.
async fn error_then_open(c: &mut Conn, request: Frame, reason: Option<&str>) -> Outcome {
    c.send_frames(&[request, sentinel()]).await?;
    c.expect_error(reason).await?;
    c.expect(&sentinel()).await.map_err(|e| match reason {
        Some(reason) => format!("after ERROR {reason:?}: {e}"),
        None => format!("after the ERROR: {e}"),
    })?;
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

/// A LOGIN (with `--auth` or made-up credentials), then the sentinel, on a
/// new connection.
async fn login_then_sentinel(cx: &Ctx) -> Result<Conn, String> {
    let mut c = Conn::open(cx).await?;
    let credentials = cx.auth.clone().unwrap_or_else(|| "gopro-check".into());
    c.send_frames(&[Frame::new(Command::LOGIN, credentials), sentinel()])
        .await?;
    Ok(c)
}
