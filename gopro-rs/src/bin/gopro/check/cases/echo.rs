//! Core: the echoes, byte for byte (SPEC §7 and §3).

use std::rc::Rc;

use gopro::{Command, Frame};

use super::super::args::Ctx;
use super::super::conn::{describe, Conn, Got};
use super::super::runner::Outcome;
use super::{echoed, heartbeat_at_limit, login_then_sentinel, message_reply, pattern, sentinel};

pub(super) async fn heartbeat_empty(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    // SPEC §7: 47 4F 01 00 00 00 00 00, echoed as is.
    c.send(&[0x47, 0x4F, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00])
        .await?;
    c.expect(&Frame::heartbeat()).await?;
    Ok(())
}

pub(super) async fn heartbeat_body(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    echoed(&mut c, &Frame::new(Command::HEARTBEAT, "beat")).await?;
    echoed(
        &mut c,
        &Frame::new(Command::HEARTBEAT, pattern(cx.max_body.min(1000))),
    )
    .await?;
    Ok(())
}

pub(super) async fn message_hello(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn message_empty(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    c.send_frames(&[Frame::new(Command::MESSAGE, "")]).await?;
    c.expect(&message_reply(b"")).await?;
    Ok(())
}

pub(super) async fn message_binary(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::ready(&cx).await?;
    // The body is opaque: every byte value, NUL and invalid UTF-8 included.
    let mut body: Vec<u8> = (0..=255u8).rev().chain(0..=255).collect();
    body.truncate(cx.max_body.saturating_sub(13));
    c.send_frames(&[Frame::new(Command::MESSAGE, body.clone())])
        .await?;
    c.expect(&message_reply(&body)).await?;
    Ok(())
}

pub(super) async fn login_then_heartbeat(cx: Rc<Ctx>) -> Outcome {
    // The reference logs a LOGIN and sends nothing; the SPEC sends LOGIN
    // "OK". Either way the next request is answered.
    let mut c = login_then_sentinel(&cx).await?;
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

pub(super) async fn body_at_limit(cx: Rc<Ctx>) -> Outcome {
    // SPEC §7: a body of exactly the limit is accepted (the example's
    // header is a MESSAGE's, whose echo would be over the limit; a
    // HEARTBEAT's echo is the same size).
    heartbeat_at_limit(Conn::ready(&cx).await?, cx.max_body).await
}
