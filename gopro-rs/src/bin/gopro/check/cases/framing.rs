//! Core: fragmentation and pipelining (SPEC §1 and §4).

use std::rc::Rc;
use std::time::Duration;

use gopro::{Command, Frame, HEADER_LEN};
use tokio::time::sleep;

use super::super::args::Ctx;
use super::super::conn::{wire, Conn};
use super::super::runner::Outcome;
use super::{expect_replies, message_reply, pattern};

pub(super) async fn fragment_one_byte(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn fragment_header_body(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn fragment_partial_next(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn pipeline(cx: Rc<Ctx>) -> Outcome {
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
    expect_replies(&mut c, &requests).await?;
    Ok(())
}

pub(super) async fn pipeline_large(cx: Rc<Ctx>) -> Outcome {
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
    expect_replies(&mut c, &requests).await?;
    Ok(())
}
