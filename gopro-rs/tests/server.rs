//! The server over real sockets: replies, errors, limits, timeouts, shutdown.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::server::{message, says, start, start_default, Peer};
use gopro::server::{Server, DEFAULT_MAX_CONNECTIONS};
use gopro::{Command, Frame, Header};

#[tokio::test]
async fn heartbeat_and_message_are_echoed_byte_for_byte() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    peer.send_raw(&[0x47, 0x4F, 1, 0, 0, 0, 0, 0]).await;
    let mut hello = vec![0x47, 0x4F, 1, 1, 0, 0, 0, 16];
    hello.extend_from_slice(b"Hello TCP World!");
    peer.send_raw(&hello).await;
    let mut expected = vec![
        0x47, 0x4F, 1, 0, 0, 0, 0, 0, 0x47, 0x4F, 1, 1, 0, 0, 0, 0x1D,
    ];
    expected.extend_from_slice(b"Server says: Hello TCP World!");
    let mut got = vec![0u8; expected.len()];
    tokio::io::AsyncReadExt::read_exact(&mut peer.stream, &mut got)
        .await
        .unwrap();
    assert_eq!(got, expected);
    let hb = Frame::new(Command::HEARTBEAT, "with a body");
    assert_eq!(peer.request(&hb).await, hb);
    server.stop().await;
}

#[tokio::test]
async fn a_frame_fed_one_byte_at_a_time() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    for byte in message("drip").to_bytes().iter() {
        peer.send_raw(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(peer.recv().await.unwrap(), says(b"drip"));
    server.stop().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    let mut wire = Vec::new();
    for i in 0..1000 {
        if i % 3 == 0 {
            wire.extend_from_slice(&Frame::new(Command::HEARTBEAT, format!("hb-{i}")).to_bytes());
        } else {
            wire.extend_from_slice(&message(format!("m-{i}")).to_bytes());
        }
    }
    peer.send_raw(&wire).await;
    for i in 0..1000 {
        let reply = peer.recv().await.unwrap();
        if i % 3 == 0 {
            assert_eq!(reply, Frame::new(Command::HEARTBEAT, format!("hb-{i}")));
        } else {
            assert_eq!(reply, says(format!("m-{i}").as_bytes()));
        }
    }
    server.stop().await;
}

/// Runs of HEARTBEATs (echoed as one copy) mixed with every other kind of
/// reply, in chunks that cut frames (and headers) anywhere, with a reply
/// cap small enough to be reached in the middle of a run.
#[tokio::test]
async fn heartbeat_runs_between_other_replies_in_any_chunking() {
    let server = start(Server::builder().max_buffered_replies(300).handler(
        16u8,
        |frame: Frame| async move { Ok::<_, String>(frame.body) },
    ))
    .await;
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..600usize {
        let body = format!("{i}-").repeat(i % 7);
        let (request, reply) = match i % 11 {
            0..=5 => {
                let f = Frame::new(Command::HEARTBEAT, body.clone());
                (f.clone(), f)
            }
            6 | 7 => (message(body.clone()), says(body.as_bytes())),
            8 => (
                Frame::new(16u8, body.clone()),
                Frame::new(16u8, body.clone()),
            ),
            9 => (
                Frame::new(99u8, body.clone()),
                Frame::error("unknown command: 99"),
            ),
            _ => (
                Frame::new(Command::LOGIN, "u"),
                Frame::new(Command::LOGIN, "OK"),
            ),
        };
        wire.extend_from_slice(&request.to_bytes());
        expected.push(reply);
    }
    for chunk in [1, 3, 8, 13, 100, 4096, wire.len()] {
        let mut peer = Peer::connect(server.addr).await;
        // The replies (about 30 KB) fit the socket buffers: write it all,
        // with pauses so that the server reads the pieces apart, then read.
        for piece in wire.chunks(chunk) {
            peer.send_raw(piece).await;
            if chunk < 100 {
                tokio::task::yield_now().await;
            }
        }
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(
                &peer.recv().await.unwrap(),
                want,
                "reply {i}, chunks of {chunk}"
            );
        }
    }
    server.stop().await;
}

/// The batch scope wraps the synchronous handling of whole batches: every
/// handler that finishes at once is called inside it, and pipelined frames
/// share one entry.
#[tokio::test]
async fn handlers_run_inside_the_batch_scope_once_per_batch() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    thread_local! {
        static INSIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    let entries = Arc::new(AtomicUsize::new(0));
    let server = start(
        Server::builder()
            .batch_scope({
                let entries = entries.clone();
                move |batch: &mut dyn FnMut()| {
                    entries.fetch_add(1, Ordering::Relaxed);
                    INSIDE.with(|inside| inside.set(true));
                    batch();
                    INSIDE.with(|inside| inside.set(false));
                }
            })
            .handler(16u8, |frame: Frame| {
                let inside = INSIDE.with(|inside| inside.get());
                async move {
                    if inside {
                        Ok(frame.body)
                    } else {
                        Err("called outside the batch scope".to_string())
                    }
                }
            }),
    )
    .await;
    let mut peer = Peer::connect(server.addr).await;
    let mut wire = Vec::new();
    for i in 0..200 {
        wire.extend_from_slice(&Frame::new(16u8, format!("{i}")).to_bytes());
    }
    peer.send_raw(&wire).await;
    for i in 0..200 {
        assert_eq!(peer.recv().await.unwrap(), Frame::new(16u8, format!("{i}")));
    }
    let entries = entries.load(Ordering::Relaxed);
    assert!(
        (1..50).contains(&entries),
        "{entries} scope entries for 200 pipelined frames"
    );
    server.stop().await;
}

/// A handler answering from the read buffer: small bodies go through
/// `call_inline` (done at once, or a future to await), large ones through
/// `call`, and the replies stay in order either way.
#[tokio::test]
async fn handlers_may_answer_inline() {
    use gopro::server::{BoxFuture, Handler, Inline, Reply};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    struct Upper(Arc<AtomicUsize>, Arc<AtomicUsize>);
    impl Handler for Upper {
        fn call(&self, frame: Frame) -> BoxFuture<Result<Reply, String>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            Box::pin(async move { Ok(Reply::Body(frame.body.to_ascii_uppercase().into())) })
        }
        fn call_inline(&self, _command: Command, body: &[u8]) -> Inline {
            self.0.fetch_add(1, Ordering::Relaxed);
            let reply = Reply::Body(body.to_ascii_uppercase().into());
            if body.first() == Some(&b'w') {
                Inline::Wait(Box::pin(async move {
                    tokio::task::yield_now().await;
                    Ok(reply)
                }))
            } else if body.first() == Some(&b'e') {
                Inline::Done(Err("e is refused".into()))
            } else {
                Inline::Done(Ok(reply))
            }
        }
    }
    let (inline, called) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let server =
        start(Server::builder().handler(20u8, Upper(inline.clone(), called.clone()))).await;
    let mut peer = Peer::connect(server.addr).await;
    let big = "b".repeat(5000);
    let bodies = ["abc", "wait", "err", "xyz", &big, "done"];
    let mut wire = Vec::new();
    for body in bodies {
        wire.extend_from_slice(&Frame::new(20u8, body.to_string()).to_bytes());
    }
    peer.send_raw(&wire).await;
    for body in bodies {
        let reply = peer.recv().await.unwrap();
        if body == "err" {
            assert_eq!(reply, Frame::error("e is refused"));
        } else {
            assert_eq!(reply, Frame::new(20u8, body.to_ascii_uppercase()));
        }
    }
    assert_eq!(inline.load(Ordering::Relaxed), 5);
    assert_eq!(called.load(Ordering::Relaxed), 1);
    server.stop().await;
}

#[tokio::test]
async fn protocol_errors_get_a_reason_then_close_and_others_keep_going() {
    let server = start_default().await;
    let mut bystander = Peer::connect(server.addr).await;
    let cases: [(&[u8], &str); 4] = [
        (&[0x47, 0x30, 1, 0, 0, 0, 0, 0], "bad magic 0x4730"),
        (
            &[0x47, 0x4F, 1, 1, 0, 0xA0, 0, 1],
            "frame body of 10485761 bytes exceeds the limit of 10485760 bytes",
        ),
        (
            &[0x47, 0x4F, 1, 1, 1, 0, 0, 0],
            "frame body of 16777216 bytes exceeds the limit of 10485760 bytes",
        ),
        (
            &[0x47, 0x4F, 2, 0, 0, 0, 0, 0],
            "unsupported protocol version 2",
        ),
    ];
    for (bytes, reason) in cases {
        let mut peer = Peer::connect(server.addr).await;
        peer.send_raw(bytes).await;
        peer.expect_error(reason).await;
        peer.expect_closed().await;
        assert_eq!(
            bystander.request(&message("still here")).await,
            says(b"still here")
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn exactly_the_body_limit_is_served_and_one_more_is_refused() {
    let server = start(Server::builder().max_body(1000)).await;
    let mut peer = Peer::connect(server.addr).await;
    let at = Frame::new(Command::HEARTBEAT, vec![7u8; 1000]);
    assert_eq!(peer.request(&at).await, at);
    peer.send_raw(&Header::new(Command::HEARTBEAT, 1001).to_bytes())
        .await;
    peer.expect_error("frame body of 1001 bytes exceeds the limit of 1000 bytes")
        .await;
    peer.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn replies_obey_the_limit_too() {
    let server = start(Server::builder().max_body(100)).await;
    let mut peer = Peer::connect(server.addr).await;
    // 87 + 13 = 100: echoed; 88 + 13 = 101: refused with ERROR, connection stays.
    assert_eq!(
        peer.request(&message(vec![b'a'; 87])).await,
        says(&[b'a'; 87])
    );
    peer.send(&message(vec![b'a'; 88])).await;
    peer.expect_error("frame body of 101 bytes exceeds the limit of 100 bytes")
        .await;
    assert_eq!(peer.request(&message("ok")).await, says(b"ok"));
    server.stop().await;
}

#[tokio::test]
async fn ten_mib_bodies_round_trip() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    let body: Bytes = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let hb = Frame::new(Command::HEARTBEAT, body.clone());
    assert_eq!(peer.request(&hb).await, hb);
    let msg = message(body.slice(..body.len() - 13));
    assert_eq!(peer.request(&msg).await, says(&body[..body.len() - 13]));
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_reserved_commands_get_an_error_and_the_connection_stays() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    for code in [5u8, 15, 16, 42, 255, 3, 4] {
        peer.send(&Frame::new(code, "x")).await;
        peer.expect_error(&format!("unknown command: {code}")).await;
    }
    assert_eq!(peer.request(&Frame::heartbeat()).await, Frame::heartbeat());
    server.stop().await;
}

#[tokio::test]
async fn login_without_authenticator_is_ok() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    let reply = peer.request(&Frame::new(Command::LOGIN, "anyone")).await;
    assert_eq!(reply, Frame::new(Command::LOGIN, "OK"));
    server.stop().await;
}

#[tokio::test]
async fn application_handlers_errors_and_panics() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let builder = Server::builder()
        .handler(16, move |frame: Frame| {
            counted.fetch_add(1, Ordering::Relaxed);
            async move { Ok::<_, String>(frame.body) }
        })
        .handler(17, |_frame: Frame| async move {
            Err::<(), _>("the database is down")
        })
        .handler(18, |frame: Frame| async move {
            if frame.body == "sync" {
                panic!("boom");
            }
            tokio::task::yield_now().await;
            panic!("async boom");
            #[allow(unreachable_code)]
            Ok::<(), String>(())
        })
        .handler(19, |_frame: Frame| async move {
            Ok::<_, String>(Frame::new(Command(200), "custom"))
        })
        .handler(20, |_frame: Frame| async move { Ok::<_, String>(()) });
    let server = start(builder).await;
    let mut peer = Peer::connect(server.addr).await;
    assert_eq!(
        peer.request(&Frame::new(16, "echo me")).await,
        Frame::new(16, "echo me")
    );
    peer.send(&Frame::new(17, "")).await;
    peer.expect_error("the database is down").await;
    peer.send(&Frame::new(18, "sync")).await;
    peer.expect_error("handler for command 18 panicked").await;
    peer.send(&Frame::new(18, "async")).await;
    peer.expect_error("handler for command 18 panicked").await;
    assert_eq!(
        peer.request(&Frame::new(19, "")).await,
        Frame::new(200, "custom")
    );
    // No reply for 20: the next reply is the heartbeat's.
    peer.send(&Frame::new(20, "")).await;
    assert_eq!(peer.request(&Frame::heartbeat()).await, Frame::heartbeat());
    // The same with bodies too large to be handled from the read buffer.
    let big = "s".repeat(10_000);
    assert_eq!(
        peer.request(&Frame::new(16, big.clone())).await,
        Frame::new(16, big.clone())
    );
    peer.send(&Frame::new(17, big.clone())).await;
    peer.expect_error("the database is down").await;
    peer.send(&Frame::new(18, "a".repeat(10_000))).await;
    peer.expect_error("handler for command 18 panicked").await;
    peer.send(&Frame::new(20, big)).await;
    assert_eq!(peer.request(&Frame::heartbeat()).await, Frame::heartbeat());
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    // The server survived the panics.
    let mut other = Peer::connect(server.addr).await;
    assert_eq!(other.request(&message("alive")).await, says(b"alive"));
    server.stop().await;
}

#[tokio::test]
async fn registering_a_handler_for_a_reserved_code_is_refused() {
    for code in [2u8, 3, 4, 5, 15] {
        let result = Server::builder()
            .listen("127.0.0.1:0")
            .handler(code, |_f: Frame| async { Ok::<_, String>(()) })
            .bind()
            .await;
        let err = result.err().expect("refused");
        assert!(
            err.to_string().contains("cannot register a handler"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn authentication_rules() {
    let builder = Server::builder()
        .authenticator(|credentials: Bytes| async move {
            if credentials == "user:secret" {
                Ok(())
            } else {
                Err("wrong credentials")
            }
        })
        .prelogin_max_body(64);
    let server = start(builder).await;

    // Before login: refused but open; HEARTBEAT allowed.
    let mut peer = Peer::connect(server.addr).await;
    peer.send(&message("hi")).await;
    peer.expect_error("not authenticated").await;
    peer.send(&Frame::new(16, "app")).await;
    peer.expect_error("not authenticated").await;
    assert_eq!(peer.request(&Frame::heartbeat()).await, Frame::heartbeat());
    // A wrong login, then a right one, then everything works with the full limit.
    peer.send(&Frame::new(Command::LOGIN, "user:wrong")).await;
    peer.expect_error("wrong credentials").await;
    assert_eq!(
        peer.request(&Frame::new(Command::LOGIN, "user:secret"))
            .await,
        Frame::new(Command::LOGIN, "OK")
    );
    assert_eq!(peer.request(&message("hi")).await, says(b"hi"));
    let big = Frame::new(Command::HEARTBEAT, vec![1u8; 10_000]);
    assert_eq!(peer.request(&big).await, big);

    // The pre-login limit: 64 accepted, 65 refused and closed.
    let mut peer = Peer::connect(server.addr).await;
    let at = Frame::new(Command::HEARTBEAT, vec![1u8; 64]);
    assert_eq!(peer.request(&at).await, at);
    peer.send(&Frame::new(Command::HEARTBEAT, vec![1u8; 65]))
        .await;
    peer.expect_error("frame body of 65 bytes exceeds the limit of 64 bytes")
        .await;
    peer.expect_closed().await;

    // Three failures in a row close the connection.
    let mut peer = Peer::connect(server.addr).await;
    for _ in 0..2 {
        peer.send(&Frame::new(Command::LOGIN, "nope")).await;
        peer.expect_error("wrong credentials").await;
    }
    peer.send(&Frame::new(Command::LOGIN, "nope")).await;
    peer.expect_error("3 failed logins in a row").await;
    peer.expect_closed().await;
    server.stop().await;
}

#[tokio::test]
async fn slow_drip_is_closed_at_the_read_deadline_while_others_are_served() {
    let server = start(Server::builder().read_timeout(Duration::from_millis(600))).await;
    let mut slow = Peer::connect(server.addr).await;
    let started = tokio::time::Instant::now();
    let wire = message("never finished").to_bytes();
    let mut fast = Peer::connect(server.addr).await;
    for byte in wire.iter().take(8) {
        // Keep dripping; each byte is well within the timeout, the frame is not.
        slow.send_raw(&[*byte]).await;
        assert_eq!(fast.request(&message("quick")).await, says(b"quick"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slow.expect_error("read timeout").await;
    slow.expect_closed().await;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    server.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_read_timeout() {
    let server = start(Server::builder().read_timeout(Duration::from_millis(300))).await;
    let mut idle = Peer::connect(server.addr).await;
    // A frame resets the deadline; silence after it closes the connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idle.request(&Frame::heartbeat()).await, Frame::heartbeat());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idle.request(&Frame::heartbeat()).await, Frame::heartbeat());
    let started = tokio::time::Instant::now();
    idle.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_at_the_write_timeout() {
    let server = start(
        Server::builder()
            .write_timeout(Duration::from_millis(300))
            .max_buffered_replies(64 * 1024),
    )
    .await;
    let mut hog = Peer::connect(server.addr).await;
    let frame = Frame::new(Command::HEARTBEAT, vec![0u8; 64 * 1024]).to_bytes();
    // Keep sending, never read: the server's replies fill the socket buffers,
    // its write times out, and it closes; our writes then fail.
    let sent = tokio::time::timeout(Duration::from_secs(20), async {
        let mut sent = 0usize;
        loop {
            if tokio::io::AsyncWriteExt::write_all(&mut hog.stream, &frame)
                .await
                .is_err()
            {
                return sent;
            }
            sent += 1;
        }
    })
    .await
    .expect("the server closes a client that never reads");
    // The server stopped reading long before all of it: memory stayed bounded.
    assert!(sent < 2000, "sent {sent} frames");
    let mut other = Peer::connect(server.addr).await;
    assert_eq!(other.request(&message("fine")).await, says(b"fine"));
    server.stop().await;
}

#[tokio::test]
async fn a_client_vanishing_mid_frame_harms_no_one() {
    let server = start_default().await;
    for cut in [1usize, 7, 8, 12] {
        let mut peer = Peer::connect(server.addr).await;
        peer.send_raw(&message("half a frame").to_bytes()[..cut])
            .await;
        drop(peer);
    }
    let mut peer = Peer::connect(server.addr).await;
    assert_eq!(peer.request(&message("ok")).await, says(b"ok"));
    server.stop().await;
}

#[tokio::test]
async fn connection_limit_refuses_with_server_busy() {
    let server = start(Server::builder().max_connections(2)).await;
    let mut a = Peer::connect(server.addr).await;
    let mut b = Peer::connect(server.addr).await;
    assert_eq!(a.request(&Frame::heartbeat()).await, Frame::heartbeat());
    assert_eq!(b.request(&Frame::heartbeat()).await, Frame::heartbeat());
    let mut c = Peer::connect(server.addr).await;
    c.expect_error("server busy").await;
    c.expect_closed().await;
    drop(a);
    // The slot is given back once the server sees the close.
    let mut served = false;
    for _ in 0..50 {
        let mut d = Peer::connect(server.addr).await;
        d.send(&Frame::heartbeat()).await;
        if d.recv().await == Some(Frame::heartbeat()) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
    assert_eq!(b.request(&Frame::heartbeat()).await, Frame::heartbeat());
    assert_eq!(DEFAULT_MAX_CONNECTIONS, 10_000);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_answers_what_was_received_then_goaway() {
    let server = start_default().await;
    let mut peer = Peer::connect(server.addr).await;
    let mut idle = Peer::connect(server.addr).await;
    let mut wire = Vec::new();
    for i in 0..500 {
        wire.extend_from_slice(&message(format!("req-{i}")).to_bytes());
    }
    // Plus half of one more frame, which was not fully received.
    wire.extend_from_slice(&message("partial").to_bytes()[..10]);
    peer.send_raw(&wire).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!server.handle.is_shutdown());
    server.handle.shutdown();
    assert!(server.handle.is_shutdown());
    for i in 0..500 {
        assert_eq!(
            peer.recv().await.unwrap(),
            says(format!("req-{i}").as_bytes())
        );
    }
    let last = peer.recv().await.unwrap();
    assert_eq!(last.command, Command::GOAWAY);
    peer.expect_closed().await;
    let goaway = idle.recv().await.unwrap();
    assert_eq!(goaway.command, Command::GOAWAY);
    idle.expect_closed().await;
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_force_closes_after_the_grace_period() {
    let builder =
        Server::builder()
            .grace(Duration::from_millis(300))
            .handler(16, |_f: Frame| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok::<_, String>(())
            });
    let server = start(builder).await;
    let mut peer = Peer::connect(server.addr).await;
    peer.send(&Frame::new(16, "")).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = tokio::time::Instant::now();
    server.handle.shutdown();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    peer.expect_closed().await;
}

#[tokio::test]
async fn servers_from_clones_of_one_builder_stop_apart() {
    let builder = Server::builder().handler(16, |f: Frame| async move { Ok::<_, String>(f.body) });
    let first = start(builder.clone()).await;
    let second = start(builder).await;
    first.stop().await;
    let mut peer = Peer::connect(second.addr).await;
    assert_eq!(
        peer.request(&Frame::new(16, "alive")).await,
        Frame::new(16, "alive")
    );
    second.stop().await;
}

#[tokio::test]
async fn heartbeat_runs_across_the_buffer_cap_are_echoed_in_order() {
    // Runs of HEARTBEATs longer than the cap, between MESSAGEs: every reply
    // in order, byte for byte; then a HEARTBEAT over the body limit, which
    // ends a run and the connection.
    let server = start(Server::builder().max_buffered_replies(100).max_body(64)).await;
    let mut peer = Peer::connect(server.addr).await;
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..300 {
        let body = format!("h{i:03}");
        if i % 17 == 0 {
            wire.extend_from_slice(&message(body.clone()).to_bytes());
            expected.push(says(body.as_bytes()));
        } else {
            let frame = Frame::new(Command::HEARTBEAT, body);
            wire.extend_from_slice(&frame.to_bytes());
            expected.push(frame);
        }
    }
    peer.send_raw(&wire).await;
    for frame in expected {
        assert_eq!(peer.recv().await.unwrap(), frame);
    }
    let mut tail = Frame::new(Command::HEARTBEAT, "x").to_bytes().to_vec();
    tail.extend_from_slice(&Header::new(Command::HEARTBEAT, 65).to_bytes());
    tail.extend_from_slice(&[0; 65]);
    peer.send_raw(&tail).await;
    assert_eq!(
        peer.recv().await.unwrap(),
        Frame::new(Command::HEARTBEAT, "x")
    );
    assert_eq!(peer.recv().await.unwrap().command, Command::ERROR);
    assert_eq!(peer.recv().await, None);
    server.stop().await;
}

#[tokio::test]
async fn replies_past_the_buffer_cap_are_written_mid_batch_in_order() {
    // A cap smaller than one batch of replies: the server writes at the cap
    // and goes on handling the rest of what it read.
    let server = start(Server::builder().max_buffered_replies(100)).await;
    let mut peer = Peer::connect(server.addr).await;
    let mut wire = Vec::new();
    for i in 0..200 {
        wire.extend_from_slice(&message(format!("m{i:03}")).to_bytes());
    }
    peer.send_raw(&wire).await;
    for i in 0..200 {
        assert_eq!(
            peer.recv().await.unwrap(),
            says(format!("m{i:03}").as_bytes())
        );
    }
    server.stop().await;
}
