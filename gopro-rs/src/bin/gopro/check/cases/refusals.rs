//! Refusals: what the server must not take, and how it says so.
//!
//! In the core cases the server closes, an ERROR first allowed; the
//! extension cases require the ERROR (SPEC §2), and that the connection
//! stays open when the framing is intact.

use std::rc::Rc;

use gopro::{Command, Frame};

use super::super::args::Ctx;
use super::super::conn::Conn;
use super::super::runner::{Fail, Outcome};
use super::{error_then_close, error_then_open, header_over, message_reply, pattern, BAD_MAGIC};

pub(super) async fn over_limit_closes(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn little_endian_closes(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn bad_magic_closes(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    c.send(&BAD_MAGIC).await?;
    c.expect_closed(true).await?;
    Ok(())
}

pub(super) async fn frame_then_bad_magic(cx: Rc<Ctx>) -> Outcome {
    // The frame before the garbage was whole: it is answered before the
    // connection is closed.
    let mut c = Conn::ready(&cx).await?;
    let beat = Frame::new(Command::HEARTBEAT, "before the garbage");
    let mut bytes = beat.to_bytes().to_vec();
    bytes.extend_from_slice(&BAD_MAGIC);
    c.send(&bytes).await?;
    c.expect(&beat).await?;
    c.expect_closed(true).await?;
    Ok(())
}

pub(super) async fn over_limit_error(cx: Rc<Ctx>) -> Outcome {
    let head = header_over(Command::MESSAGE, cx.max_body)?;
    let mut c = Conn::ready(&cx).await?;
    c.send(&head).await?;
    error_then_close(&mut c).await?;
    Ok(())
}

pub(super) async fn bad_magic_error(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    c.send(&BAD_MAGIC).await?;
    error_then_close(&mut c).await?;
    Ok(())
}

pub(super) async fn version_error(cx: Rc<Ctx>) -> Outcome {
    // SPEC §2: a version the server does not speak is a protocol error
    // (the reference reports the version and goes on).
    let mut c = Conn::ready(&cx).await?;
    c.send_frames(&[Frame::new(Command::HEARTBEAT, "version 2").with_version(2)])
        .await?;
    error_then_close(&mut c).await?;
    Ok(())
}

pub(super) async fn unknown_command(cx: Rc<Ctx>) -> Outcome {
    // A reserved code, which no application can have a handler for.
    let mut c = Conn::ready(&cx).await?;
    error_then_open(
        &mut c,
        Frame::new(Command(15), "?"),
        Some("unknown command: 15"),
    )
    .await
}

pub(super) async fn reply_at_limit(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn reply_over_limit(cx: Rc<Ctx>) -> Outcome {
    // SPEC §2: one byte more and the echo would be over the limit: ERROR
    // instead, and the framing is intact so the connection stays open.
    let Some(len) = cx.max_body.checked_sub(12) else {
        return Err(Fail::Skip("the body limit is under 12 bytes".into()));
    };
    let mut c = Conn::ready(&cx).await?;
    error_then_open(&mut c, Frame::new(Command::MESSAGE, pattern(len)), None).await
}
