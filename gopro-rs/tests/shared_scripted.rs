//! The shared client against servers scripted here, where the timing of
//! each reply is the test's: a GOAWAY that leaves requests unhandled, a
//! per-call timeout while the server still answers, and a server killed
//! with requests on the wire.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::process::{gopro_serve, gopro_serve_at, Proc};
use gopro::client::{Client, ClientError};
use gopro::{Command, Decoder, Encoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One side of a scripted connection: reads whole frames, writes replies.
struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Conn {
    async fn read(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        while frames.len() < n {
            if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                frames.push(frame);
                continue;
            }
            let read =
                tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf))
                    .await
                    .expect("the client's requests come")
                    .unwrap();
            assert!(read > 0, "the client closed");
        }
        frames
    }

    async fn write(&mut self, command: Command, body: &[u8]) {
        let mut out = BytesMut::new();
        Encoder::default()
            .encode_parts(gopro::VERSION, command, &[body], &mut out)
            .unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    async fn answer(&mut self, frame: &Frame) {
        let body = [b"re ".as_slice(), &frame.body].concat();
        self.write(frame.command, &body).await;
    }

    /// Waits until the client closes.
    async fn until_closed(&mut self) {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest).await;
    }
}

/// A listener whose connections, in the order accepted, are played by the
/// scripts; a reconnecting client comes back to the same address.
async fn scripted<F, Fut>(connections: usize, script: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn(usize, Conn) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        for n in 0..connections {
            let (stream, _) = listener.accept().await.unwrap();
            let conn = Conn {
                stream,
                decoder: Decoder::default(),
                buf: BytesMut::new(),
            };
            script(n, conn).await;
        }
    });
    (addr, task)
}

fn re(body: &str) -> Bytes {
    Bytes::from(format!("re {body}"))
}

/// The first connection takes three requests, answers the first and goes
/// away (GOAWAY): the other two were not handled. The second answers them.
async fn goaway_after_one(n: usize, mut conn: Conn) {
    if n == 0 {
        let frames = conn.read(3).await;
        conn.answer(&frames[0]).await;
        conn.write(Command::GOAWAY, b"restarting").await;
    } else {
        for frame in conn.read(2).await {
            conn.answer(&frame).await;
        }
        conn.until_closed().await;
    }
}

async fn reconnecting(addr: &str) -> Client {
    Client::builder()
        .reconnect(true)
        .timeout(Duration::from_secs(10))
        .connect(addr)
        .await
        .unwrap()
}

/// Requests "0", "1" and "2" at once; their replies' bodies, in order.
async fn three_requests(client: &Client) -> Result<Vec<Bytes>, ClientError> {
    let (a, b, c) = tokio::join!(
        client.request(1, "0"),
        client.request(1, "1"),
        client.request(1, "2")
    );
    Ok(vec![a?.body, b?.body, c?.body])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_goaway_resends_exactly_what_was_not_handled() {
    let (addr, server) = scripted(2, goaway_after_one).await;
    let client = reconnecting(&addr).await;
    let replies = three_requests(&client).await;
    assert_eq!(replies.unwrap(), [re("0"), re("1"), re("2")]);
    let s = client.stats();
    assert_eq!((s.resent, s.reconnects, s.lost), (2, 1, 0), "{s:?}");
    client.close();
    server.await.unwrap();
}

/// A's reply comes at 0.8 × the timeout, B's at 1.4 ×: B's caller gets
/// `Timeout` at 1 ×, yet the server keeps answering within the response
/// timeout (1.1 × since A's reply), so the connection stays, B's late reply
/// is discarded, and the next call gets its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_leaves_the_connection_to_a_server_still_answering() {
    let timeout = Duration::from_secs(2);
    let (addr, server) = scripted(1, move |_, mut conn| async move {
        let frames = conn.read(2).await;
        tokio::time::sleep(timeout.mul_f64(0.8)).await;
        conn.answer(&frames[0]).await;
        tokio::time::sleep(timeout.mul_f64(0.6)).await;
        conn.answer(&frames[1]).await;
        let next = conn.read(1).await;
        conn.answer(&next[0]).await;
        conn.until_closed().await;
    })
    .await;
    let client = Client::builder()
        .timeout(timeout)
        .connect(&addr)
        .await
        .unwrap();
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.request(1, "a").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = client.request(1, "b").await;
    assert!(
        matches!(b, Err(ClientError::Timeout { waiting_to, .. }) if waiting_to == "get a reply"),
        "{b:?}"
    );
    assert_eq!(a.await.unwrap().unwrap().body, re("a"));
    assert_eq!(client.request(1, "c").await.unwrap().body, re("c"));
    assert_eq!(client.stats().reconnects, 0);
    assert!(!client.is_closed());
    client.close();
    server.await.unwrap();
}

/// SIGSTOP, returning once the process is stopped (the signal takes effect
/// when the process is next scheduled).
fn stop(server: &Proc) {
    server.signal("STOP");
    let stat = format!("/proc/{}/stat", server.child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&stat).unwrap();
        let state = text.rsplit(')').next().unwrap().split_whitespace().next();
        if state == Some("T") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Eight requests are on the wire (the server stopped, its socket holding
/// them unread) when the server is killed: each fails with `Lost` (it may
/// have been handled), none is sent again, and the client works once a
/// server is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_fails_each_request_on_the_wire_as_lost() {
    let mut server = gopro_serve(&[]);
    let addr = server.addr.to_string();
    let client = reconnecting(&addr).await;
    client.heartbeat().await.unwrap();
    stop(&server);
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.request(1, format!("{i}")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(calls.iter().all(|c| !c.is_finished()));
    server.signal("KILL");
    server.wait(Duration::from_secs(5));
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(
            matches!(outcome, Err(ClientError::Lost { .. })),
            "{outcome:?}"
        );
    }
    let s = client.stats();
    assert_eq!((s.lost, s.resent), (8, 0), "{s:?}");
    let again = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || gopro_serve_at(&addr)
    })
    .await
    .unwrap();
    let reply = client.request(1, "back").await.unwrap();
    assert_eq!(reply.body, "Server says: back");
    client.close();
    drop(again);
}

/// What a subscriber saw: each event's fields, as `name=value` text.
#[derive(Clone, Default)]
struct Events(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The client's `tracing` events mark the connect, the GOAWAY, the re-sent
/// requests and the reconnect, each with the server's address or the count.
#[test]
fn connect_goaway_resend_and_reconnect_are_traced() {
    let events = Events::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One thread: the client's connection task runs where the subscriber is.
    let addr = tracing::subscriber::with_default(events.clone(), || {
        runtime.block_on(async {
            let (addr, server) = scripted(2, goaway_after_one).await;
            let client = reconnecting(&addr).await;
            three_requests(&client).await.unwrap();
            client.close();
            server.await.unwrap();
            addr
        })
    });
    let events = events.0.lock().unwrap().clone();
    let seen = |message: &str, detail: &str| {
        events
            .iter()
            .any(|e| e.contains(message) && e.contains(detail))
    };
    assert!(
        seen("gopro client: connected", &format!("addr={addr}")),
        "{events:#?}"
    );
    assert!(
        seen("the server is going away", "restarting"),
        "{events:#?}"
    );
    assert!(
        seen("sending again the requests left unanswered", "requests=2"),
        "{events:#?}"
    );
    assert!(
        seen("gopro client: reconnected", &format!("addr={addr}")),
        "{events:#?}"
    );
    let connects = events
        .iter()
        .filter(|e| e.contains("gopro client: connected"))
        .count();
    assert_eq!(connects, 2, "{events:#?}");
}
