//! The read deadline (SPEC §5): an idle client and one that drips a frame
//! byte by byte are closed; HEARTBEATs more often than the deadline keep a
//! connection open.

use std::rc::Rc;
use std::time::Duration;

use gopro::{Command, Frame};
use tokio::time::{sleep, Instant};

use super::super::args::Ctx;
use super::super::conn::{describe, Conn, Got};
use super::super::runner::Outcome;

fn read_timeout(cx: &Ctx) -> Duration {
    cx.read_timeout.expect("needs --read-timeout")
}

/// How long after the read timeout a server may take to close.
fn slack(d: Duration) -> Duration {
    d + Duration::from_secs(1)
}

/// A client (`who`) closed at `after` must not have been closed well
/// before the read timeout `d`.
fn not_too_early(who: &str, after: Duration, d: Duration) -> Outcome {
    if after < d / 2 {
        return Err(format!(
            "{who} was closed after {after:?}, well before the read timeout of {d:?}"
        )
        .into());
    }
    Ok(())
}

pub(super) async fn idle_closed(cx: Rc<Ctx>) -> Outcome {
    let d = read_timeout(&cx);
    let mut c = Conn::open(&cx).await?;
    let started = Instant::now();
    c.wait_at_most(d + slack(d));
    c.expect_closed(true)
        .await
        .map_err(|e| format!("a client that sends nothing, read timeout {d:?}: {e}"))?;
    not_too_early("an idle client", started.elapsed(), d)
}

pub(super) async fn slow_drip_closed(cx: Rc<Ctx>) -> Outcome {
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
                if c.write_raw(&frame[sent..sent + 1]).await.is_err() {
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
    not_too_early("a dripping client", started.elapsed(), d)
}

pub(super) async fn heartbeats_keep_alive(cx: Rc<Ctx>) -> Outcome {
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
