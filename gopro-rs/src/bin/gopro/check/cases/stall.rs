//! A client that never reads its replies (SPEC §5): it must not stall the
//! server for the others, and with a write timeout it must be closed.

use std::rc::Rc;
use std::time::Duration;

use gopro::{Command, Frame};
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::super::args::Ctx;
use super::super::conn::Conn;
use super::super::runner::Outcome;
use super::{pattern, sentinel};

/// Most request bytes a client that reads nothing may get the server to
/// take. Socket buffers account for a few MiB of it; a server that takes
/// this much is buffering the replies without bound.
const NEVER_READ_CAP: usize = 128 * 1024 * 1024;
/// A write blocked this long means the server stopped reading.
pub(in super::super) const STALLED: Duration = Duration::from_millis(500);

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
        match timeout(STALLED, c.write_raw(&chunk)).await {
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

pub(super) async fn never_reading_others_served(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn never_reading_closed(cx: Rc<Ctx>) -> Outcome {
    let limit = cx.write_timeout.expect("needs --write-timeout");
    let (mut c, _) = stall(&cx).await?;
    let started = Instant::now();
    let give_up = started + limit * 3 + cx.timeout;
    // A closed socket shows as a failed write (reset by the server); the
    // replies are never read, since reading would let the server go on.
    let more = Frame::new(Command::HEARTBEAT, "more").to_bytes();
    loop {
        match timeout_at(give_up, c.write_raw(&more)).await {
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
