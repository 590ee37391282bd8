//! LOGIN: the reply the SPEC adds, and with `--auth` what the server
//! allows before it (HEARTBEAT, a smaller body limit), wrong credentials,
//! and the login taking effect for the frames behind it.

use std::rc::Rc;

use gopro::{Command, Frame};

use super::super::args::Ctx;
use super::super::conn::{describe, Conn, Got};
use super::super::runner::{Fail, Outcome};
use super::{
    error_then_close, error_then_open, header_over, heartbeat_at_limit, login_then_sentinel,
    message_reply, pattern, sentinel,
};

pub(super) async fn login_ok(cx: Rc<Ctx>) -> Outcome {
    let mut c = login_then_sentinel(&cx).await?;
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

fn auth(cx: &Ctx) -> &str {
    cx.auth.as_deref().expect("needs --auth")
}

fn wrong_credentials(cx: &Ctx) -> String {
    format!("not-{}", auth(cx))
}

pub(super) async fn prelogin_heartbeat(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    c.send_frames(&[sentinel()]).await?;
    c.expect(&sentinel()).await?;
    Ok(())
}

pub(super) async fn prelogin_message(cx: Rc<Ctx>) -> Outcome {
    let mut c = Conn::open(&cx).await?;
    error_then_open(
        &mut c,
        Frame::new(Command::MESSAGE, "hi"),
        Some("not authenticated"),
    )
    .await
}

pub(super) async fn prelogin_at_limit(cx: Rc<Ctx>) -> Outcome {
    heartbeat_at_limit(Conn::open(&cx).await?, cx.prelogin_max_body).await
}

pub(super) async fn prelogin_over_limit(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn login_wrong(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn login_failures_close(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn login_good(cx: Rc<Ctx>) -> Outcome {
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

pub(super) async fn login_pipelined(cx: Rc<Ctx>) -> Outcome {
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
