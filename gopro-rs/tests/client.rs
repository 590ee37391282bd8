//! The client against the real server: replies, pipelining, and every error.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::server::{start, start_default};
use gopro::client::{Client, ClientError};
use gopro::server::Server;
use gopro::{Command, Frame};
use tokio::io::AsyncWriteExt;

fn addr(server: &common::server::Running) -> String {
    server.addr.to_string()
}

/// Asserts that `err` is of `kind` and says `text`.
fn assert_kind(err: &ClientError, kind: &str, text: &str) {
    assert_eq!(err.kind(), kind);
    assert!(err.to_string().contains(text), "{err}");
}

/// Asserts that `err` refuses a receive of one reply with none in flight.
fn assert_nothing_in_flight(err: &ClientError) {
    assert!(
        matches!(
            err,
            ClientError::NothingInFlight {
                wanted: 1,
                in_flight: 0
            }
        ),
        "{err}"
    );
}

/// A server for one connection, played by `script`; its address.
async fn scripted<F, Fut>(script: F) -> String
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        script(socket).await;
    });
    addr
}

/// A server that accepts and never answers.
async fn silent() -> String {
    scripted(|socket| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    })
    .await
}

/// A client with a 200 ms timeout, connected to a [`silent`] server.
async fn to_silent_server() -> Client {
    let addr = silent().await;
    Client::builder()
        .timeout(Duration::from_millis(200))
        .connect(&addr)
        .await
        .unwrap()
}

#[tokio::test]
async fn request_heartbeat_login() {
    let server = start_default().await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    client.heartbeat().await.unwrap();
    let reply = client
        .request(Command::MESSAGE, "Hello TCP World!")
        .await
        .unwrap();
    assert_eq!(
        reply,
        Frame::new(Command::MESSAGE, "Server says: Hello TCP World!")
    );
    client.login("user:pw").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn pipelining_keeps_order_even_past_the_socket_buffers() {
    let server = start_default().await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    // Enough bytes that the server's replies fill the socket buffers before
    // all requests are written: the client must read while it writes. (And
    // within the client's 16 MiB bound on bytes in flight: past it, `send`
    // waits for `recv`.)
    let n = 900;
    let body = Bytes::from(vec![b'x'; 16 * 1024]);
    for i in 0..n {
        let command = if i % 2 == 0 {
            Command::HEARTBEAT
        } else {
            Command(77)
        };
        client.send(command, body.clone()).await.unwrap();
    }
    assert_eq!(client.in_flight().await, n);
    for i in 0..n {
        if i % 2 == 0 {
            assert_eq!(client.recv().await.unwrap().body, body);
        } else {
            let err = client.recv().await.unwrap_err();
            assert!(
                matches!(&err, ClientError::Server { reason } if reason == "unknown command: 77"),
                "{err}"
            );
        }
    }
    assert_eq!(client.in_flight().await, 0);
    assert_nothing_in_flight(&client.recv().await.unwrap_err());
    server.stop().await;
}

#[tokio::test]
async fn error_reply_keeps_the_connection_usable() {
    let server = start_default().await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    let err = client.request(42, "x").await.unwrap_err();
    assert_eq!(err.kind(), "server");
    assert_eq!(err.to_string(), "server error: unknown command: 42");
    client.heartbeat().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn login_failure_is_a_server_error() {
    let server = start(Server::builder().authenticator(|c: Bytes| async move {
        if c == "good" {
            Ok(())
        } else {
            Err("bad password")
        }
    }))
    .await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    let err = client.request(Command::MESSAGE, "hi").await.unwrap_err();
    assert!(err.to_string().contains("not authenticated"), "{err}");
    let err = client.login("bad").await.unwrap_err();
    assert!(err.to_string().contains("bad password"), "{err}");
    client.login("good").await.unwrap();
    client.request(Command::MESSAGE, "hi").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn connect_errors_are_typed() {
    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = Client::connect(&format!("127.0.0.1:{port}"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "connect");
    assert!(
        err.to_string().starts_with("cannot connect to 127.0.0.1:"),
        "{err}"
    );
    let err = Client::connect("not an address").await.unwrap_err();
    assert_eq!(err.kind(), "connect");
}

#[tokio::test]
async fn a_silent_server_times_out_and_is_given_up() {
    let client = to_silent_server().await;
    let started = std::time::Instant::now();
    let err = client.heartbeat().await.unwrap_err();
    assert_eq!(err.kind(), "timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("200ms"), "{err}");
    // The server has not answered the oldest request for the timeout: the
    // connection is given up, and later calls fail at once.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.is_closed());
    assert_eq!(client.heartbeat().await.unwrap_err().kind(), "closed");
}

#[tokio::test]
async fn a_server_that_closes_loses_the_requests_in_flight() {
    let addr = scripted(|socket| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(socket);
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    client.send(Command::HEARTBEAT, "a").await.unwrap();
    client.send(Command::HEARTBEAT, "b").await.unwrap();
    // Both were written: they may have been handled.
    for _ in 0..2 {
        let err = client.recv().await.unwrap_err();
        assert!(matches!(err, ClientError::Lost { .. }), "{err}");
        assert!(err.to_string().contains("may have been handled"), "{err}");
    }
    assert_eq!(client.stats().lost, 2);
    assert_eq!(client.heartbeat().await.unwrap_err().kind(), "closed");
}

#[tokio::test]
async fn garbage_from_the_server_is_a_protocol_error() {
    let addr = scripted(|mut socket| async move {
        socket
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    let err = client.heartbeat().await.unwrap_err();
    assert_eq!(err.kind(), "protocol");
    assert!(err.to_string().contains("bad magic"), "{err}");
}

#[tokio::test]
async fn oversized_requests_and_replies_are_refused() {
    let server = start_default().await;
    let client = Client::builder()
        .max_body(100)
        .connect(&addr(&server))
        .await
        .unwrap();
    let err = client
        .request(Command::MESSAGE, vec![0u8; 101])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::BodyTooLarge {
                length: 101,
                limit: 100
            }
        ),
        "{err:?}"
    );
    assert_kind(
        &err,
        "body_too_large",
        "101 bytes exceeds the client's limit of 100",
    );
    // 100 bytes go out, but the 113-byte echo is over this client's limit.
    let err = client
        .request(Command::MESSAGE, vec![0u8; 100])
        .await
        .unwrap_err();
    assert_kind(&err, "protocol", "113 bytes exceeds the limit of 100");
    server.stop().await;
}

#[tokio::test]
async fn goaway_tells_which_requests_were_not_handled() {
    // A server that answers the first of three requests, then goes away.
    let addr = scripted(|mut socket| async move {
        let mut buf = vec![0u8; 3 * 13];
        tokio::io::AsyncReadExt::read_exact(&mut socket, &mut buf)
            .await
            .unwrap();
        let mut out = Frame::new(16, "first").to_bytes().to_vec();
        out.extend_from_slice(&Frame::goaway("maintenance").to_bytes());
        socket.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    for body in ["first", "secnd", "third"] {
        client.send(16, body).await.unwrap();
    }
    assert_eq!(client.recv().await.unwrap().body, "first");
    let err = client.recv().await.unwrap_err();
    match &err {
        ClientError::GoAway { reason, unanswered } => {
            assert_eq!(*unanswered, 2);
            assert_eq!(reason, "maintenance");
        }
        other => panic!("expected GOAWAY, got {other}"),
    }
    assert!(
        err.to_string().contains("2 request(s) were not handled"),
        "{err}"
    );
    // Nothing more is sent on that connection.
    assert_eq!(client.heartbeat().await.unwrap_err().kind(), "goaway");
}

#[tokio::test]
async fn goaway_from_a_real_server_shutting_down() {
    let server = start_default().await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    client.heartbeat().await.unwrap();
    server.handle.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = client.heartbeat().await.unwrap_err();
    assert!(
        matches!(&err, ClientError::GoAway { reason, .. } if reason == "server shutting down"),
        "{err}"
    );
    server.task.await.unwrap();
}

#[tokio::test]
async fn keep_alive_holds_an_idle_connection_open() {
    let server = start(Server::builder().read_timeout(Duration::from_millis(400))).await;
    let kept = Client::builder()
        .keep_alive(Duration::from_millis(100))
        .connect(&addr(&server))
        .await
        .unwrap();
    let plain = Client::connect(&addr(&server)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // The keep-alive replies are skipped: the reply is the request's own.
    let reply = kept.request(Command::MESSAGE, "still here").await.unwrap();
    assert_eq!(reply.body, "Server says: still here");
    assert_eq!(plain.heartbeat().await.unwrap_err().kind(), "closed");
    server.stop().await;
}

#[test]
fn blocking_client_and_server() {
    let server = gopro::blocking::Server::start(
        Server::builder()
            .listen("127.0.0.1:0")
            .handler(16, |f: Frame| async move { Ok::<_, String>(f.body) }),
    )
    .unwrap();
    let client = gopro::blocking::Client::connect(&server.local_addr().to_string()).unwrap();
    client.heartbeat().unwrap();
    assert_eq!(client.request(16, "echo").unwrap().body, "echo");
    for i in 0..10 {
        client.send(Command::MESSAGE, format!("{i}")).unwrap();
    }
    for i in 0..10 {
        assert_eq!(client.recv().unwrap().body, format!("Server says: {i}"));
    }
    server.stop();
    assert!(client.heartbeat().is_err());
}

#[tokio::test]
async fn blocking_calls_inside_a_runtime_are_refused() {
    let err = gopro::blocking::Client::connect("127.0.0.1:1").unwrap_err();
    assert!(matches!(err, ClientError::BlockingInRuntime), "{err}");
    assert_eq!(err.kind(), "blocking_in_runtime");
}

#[tokio::test]
async fn batches_send_and_receive_many_with_one_lock() {
    let server = start_default().await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    let bodies: Vec<Bytes> = (0..3000).map(|i| Bytes::from(format!("b{i}"))).collect();
    client
        .send_many(bodies.iter().map(|b| (Command::MESSAGE, b.clone())))
        .await
        .unwrap();
    let mut replies = Vec::new();
    client.recv_many(3000, &mut replies).await.unwrap();
    assert_eq!(replies.len(), 3000);
    for (reply, body) in replies.iter().zip(&bodies) {
        assert_eq!(reply.body, [&b"Server says: "[..], body].concat());
    }
    // An ERROR reply stops the batch; the replies before it are kept and the
    // ones after it are still there.
    client
        .send_many([(1u8, "a"), (42, ""), (1, "c")])
        .await
        .unwrap();
    let mut replies = Vec::new();
    let err = client.recv_many(3, &mut replies).await.unwrap_err();
    assert!(matches!(err, ClientError::Server { ref reason } if reason == "unknown command: 42"));
    assert_eq!(
        replies,
        vec![Frame::new(Command::MESSAGE, "Server says: a")]
    );
    assert_eq!(client.recv().await.unwrap().body, "Server says: c");
    // More than is in flight is refused without waiting.
    assert_nothing_in_flight(&client.recv_many(1, &mut replies).await.unwrap_err());
    server.stop().await;
}

#[tokio::test]
async fn encoded_batches_are_checked_before_anything_is_sent() {
    let server = start_default().await;
    let client = Client::connect(&addr(&server)).await.unwrap();
    let mut wire = Vec::new();
    for i in 0..100 {
        wire.extend_from_slice(&Frame::new(Command::MESSAGE, format!("e{i}")).to_bytes());
    }
    assert_eq!(client.send_encoded(&wire).await.unwrap(), 100);
    let mut replies = Vec::new();
    client.recv_many(100, &mut replies).await.unwrap();
    assert_eq!(replies[99].body, "Server says: e99");
    // A cut frame, bad magic, another version: refused, nothing queued.
    for (bad, index, offset, kind) in [
        (
            &wire[..wire.len() - 1],
            99,
            wire.len() - 11,
            "unexpected_eof",
        ),
        (&b"XXXXXXXX"[..], 0, 0, "bad_magic"),
        (
            &Frame::new(0u8, "").with_version(2).to_bytes()[..],
            0,
            0,
            "unsupported_version",
        ),
    ] {
        let err = client.send_encoded(bad).await.unwrap_err();
        match &err {
            ClientError::InvalidEncoded {
                index: i,
                offset: o,
                source,
            } => assert_eq!((*i, *o, source.kind()), (index, offset, kind), "{err}"),
            other => panic!("{other}"),
        }
        assert_eq!(client.in_flight().await, 0);
    }
    // The cut frame says how much of it came and how much it needed.
    let err = client
        .send_encoded(&wire[..wire.len() - 1])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("10 of 11 bytes"), "{err}");
    assert_eq!(client.send_encoded(&[]).await.unwrap(), 0);
    client.heartbeat().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn recv_many_times_out_and_a_silent_server_is_given_up() {
    let client = to_silent_server().await;
    client
        .send_many([(Command::MESSAGE, "a"), (Command::MESSAGE, "b")])
        .await
        .unwrap();
    let mut replies = Vec::new();
    let started = std::time::Instant::now();
    let err = client.recv_many(2, &mut replies).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(replies.is_empty());
    // The replies are still owed: the next receive waits for them, until
    // the connection is given up for want of them.
    let err = client.recv().await.unwrap_err();
    assert!(matches!(err, ClientError::Lost { .. }), "{err}");
    assert!(err.to_string().contains("no reply"), "{err}");
    assert!(matches!(
        client.heartbeat().await.unwrap_err(),
        ClientError::Closed { .. }
    ));
}

#[tokio::test]
async fn try_send_and_try_recv_do_only_what_needs_no_wait() {
    // Three requests; their replies, in one write.
    let addr = scripted(|mut socket| async move {
        let mut requests = [0u8; 3 * 9];
        tokio::io::AsyncReadExt::read_exact(&mut socket, &mut requests)
            .await
            .unwrap();
        let mut out = Vec::new();
        for frame in [
            Frame::new(Command::MESSAGE, "a"),
            Frame::new(Command::MESSAGE, "b"),
            Frame::error("unknown command: 42"),
        ] {
            out.extend_from_slice(&frame.to_bytes());
        }
        socket.write_all(&out).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let client = Client::builder()
        .max_in_flight(3)
        .connect(&addr)
        .await
        .unwrap();
    assert!(
        client.try_recv().is_none(),
        "nothing in flight: recv says so"
    );
    for body in ["a", "b"] {
        client
            .try_send(Command::MESSAGE, body.as_bytes())
            .unwrap()
            .unwrap();
    }
    client.try_send(42, b"x").unwrap().unwrap();
    assert_eq!(client.in_flight().await, 3);
    // The client is full: a fourth would have to wait.
    assert!(client.try_send(Command::MESSAGE, b"d").is_none());
    assert_eq!(client.in_flight().await, 3);
    assert_eq!(client.recv().await.unwrap().body, "a");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.try_recv().unwrap().unwrap().body, "b");
    let err = client.try_recv().unwrap().unwrap_err();
    assert!(matches!(&err, ClientError::Server { reason } if reason == "unknown command: 42"));
    assert!(client.try_recv().is_none());
    assert_eq!(client.recv().await.unwrap_err().kind(), "nothing_in_flight");
    // The replies taken, there is room again.
    client.try_send(Command::MESSAGE, b"d").unwrap().unwrap();
    assert_eq!(client.in_flight().await, 1);
}

#[tokio::test]
async fn a_request_waiting_for_its_reply_holds_up_no_other_call() {
    let addr = silent().await;
    let client = Client::connect(&addr).await.unwrap();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.request(Command::MESSAGE, "x").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        client.try_send(Command::MESSAGE, b"y"),
        Some(Ok(()))
    ));
    assert!(client.try_recv().is_none());
    waiting.abort();
}

#[tokio::test]
async fn try_recv_of_garbage_closes_the_connection() {
    let addr = scripted(|mut socket| async move {
        let mut head = [0u8; 16];
        tokio::io::AsyncReadExt::read_exact(&mut socket, &mut head)
            .await
            .unwrap();
        let mut reply = Frame::new(Command::MESSAGE, "ok").to_bytes().to_vec();
        reply.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        socket.write_all(&reply).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    client.send(Command::MESSAGE, "1").await.unwrap();
    client.send(Command::MESSAGE, "2").await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.recv().await.unwrap().body, "ok");
    let err = client.try_recv().unwrap().unwrap_err();
    assert_eq!(err.kind(), "protocol");
    let err = client
        .try_send(Command::MESSAGE, b"3")
        .unwrap()
        .unwrap_err();
    // Later calls say why the connection ended.
    assert_eq!(err.kind(), "protocol");
    assert!(client.is_closed());
}

#[test]
fn keep_alive_waits_without_spinning_while_requests_are_in_flight() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let addr = silent().await;
            let client = Client::builder()
                .keep_alive(Duration::from_secs(1))
                .timeout(Duration::from_secs(60))
                .connect(&addr)
                .await
                .unwrap();
            client.send(Command::MESSAGE, "x").await.unwrap();
            client.flush().await.unwrap();
            // Ten intervals with a request unanswered: no HEARTBEAT may go
            // (its reply would come after the request's). With the clock
            // paused, a keep-alive task that spun meanwhile would keep it
            // from ever moving on.
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(client.in_flight().await, 1);
        });
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the keep-alive task kept the runtime busy");
}

#[tokio::test]
async fn replies_a_request_cannot_have_are_unexpected_replies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that answers every request with MESSAGE "no", whatever it was.
    let addr = scripted(|mut socket| async move {
        let mut header = [0u8; 8];
        while socket.read_exact(&mut header).await.is_ok() {
            let len = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len];
            socket.read_exact(&mut body).await.unwrap();
            let reply = Frame::new(Command::MESSAGE, "no").to_bytes();
            socket.write_all(&reply).await.unwrap();
        }
    })
    .await;
    let client = Client::connect(&addr).await.unwrap();
    for (err, request) in [
        (client.heartbeat().await.unwrap_err(), Command::HEARTBEAT),
        (client.login("user:pw").await.unwrap_err(), Command::LOGIN),
    ] {
        match &err {
            ClientError::UnexpectedReply { request: r, reply } => {
                assert_eq!(*r, request);
                assert_eq!(**reply, Frame::new(Command::MESSAGE, "no"));
            }
            other => panic!("{other}"),
        }
        assert_eq!(err.kind(), "unexpected_reply");
        assert!(err.to_string().contains("MESSAGE with 2 bytes"), "{err}");
    }
    // The connection stays usable: the replies were in step.
    assert_eq!(client.request(1u8, "x").await.unwrap().body, "no");
}

#[tokio::test]
async fn invalid_client_settings_are_refused_before_connecting() {
    use gopro::settings::ConfigError;
    for (builder, setting) in [
        (Client::builder().timeout(Duration::ZERO), "timeout"),
        (
            Client::builder().connect_timeout(Duration::ZERO),
            "connect_timeout",
        ),
        (Client::builder().keep_alive(Duration::ZERO), "keep_alive"),
    ] {
        // Nothing listens on the address: a refused setting never gets there.
        let err = builder.connect("127.0.0.1:1").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Config(ConfigError::ZeroDuration { setting: s }) if *s == setting),
            "{err}"
        );
        assert_eq!(err.kind(), "config");
        assert!(err.to_string().contains(setting), "{err}");
    }
    assert!(Client::builder()
        .timeout(Duration::from_millis(1))
        .validate()
        .is_ok());
}
