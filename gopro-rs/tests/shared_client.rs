//! One client shared by many tasks: each caller gets its own reply,
//! cancellations lose nothing, the bounds hold, and a reconnecting client
//! rides through server restarts, failover and LOGIN.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use common::process::{go_serve, gopro_serve};
use common::server::{start, start_default, Running};
use gopro::client::{Callback, Client, ClientError, Gathered};
use gopro::server::{Server, ServerBuilder};
use gopro::{Command, Frame};

fn says(body: &str) -> Bytes {
    Bytes::from(format!("Server says: {body}"))
}

/// `tasks` tasks, each making `calls` requests with bodies of their own;
/// every reply is checked. Returns how many succeeded.
async fn callers(client: &Client, tasks: usize, calls: usize) -> usize {
    let ok = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (client, ok) = (client.clone(), ok.clone());
            tokio::spawn(async move {
                for c in 0..calls {
                    let body = format!("task {t} call {c} {}", "x".repeat((t * 7 + c) % 50));
                    let reply = client
                        .request(Command::MESSAGE, body.clone())
                        .await
                        .unwrap();
                    assert_eq!(reply.command, Command::MESSAGE);
                    assert_eq!(reply.body, says(&body), "task {t} got another's reply");
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    ok.load(Ordering::Relaxed)
}

#[test]
fn a_client_is_clone_send_sync() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<Client>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_connection_and_get_their_own_replies() {
    let (server, stats) = start_at(Server::builder(), "127.0.0.1:0").await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    assert_eq!(callers(&client, 64, 50).await, 64 * 50);
    assert_eq!(stats.snapshot().connections_accepted, 1);
    let s = client.stats();
    assert_eq!((s.requests, s.replies, s.lost), (3200, 3200, 0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_a_client_of_the_go_server() {
    let go = go_serve(&[]);
    let client = Client::connect(&go.addr.to_string()).await.unwrap();
    assert_eq!(callers(&client, 16, 20).await, 16 * 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellations_and_timeouts_never_hand_a_reply_to_the_wrong_caller() {
    // A handler that takes a while now and then, so that calls are
    // cancelled while written and unanswered.
    let server = start(
        Server::builder().handler(16u8, |frame: gopro::Frame| async move {
            if frame.body.first() == Some(&b's') {
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            Ok::<_, String>(frame.body)
        }),
    )
    .await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    let right = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32u64)
        .map(|t| {
            let (client, right, cancelled) = (client.clone(), right.clone(), cancelled.clone());
            tokio::spawn(async move {
                let mut seed = t * 2654435761 + 1;
                for c in 0..200 {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let slow = if seed % 3 == 0 { "s" } else { "f" };
                    let body = Bytes::from(format!("{slow} {t} {c}"));
                    let call = client.request(16, body.clone());
                    let result = match seed % 4 {
                        // Dropped after a random short wait.
                        0 => match tokio::time::timeout(Duration::from_micros(seed % 4000), call)
                            .await
                        {
                            Ok(result) => result,
                            Err(_) => {
                                cancelled.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                        // Raced against another future, as `select!` does.
                        1 => tokio::select! {
                            result = call => result,
                            () = tokio::time::sleep(Duration::from_micros(seed % 2000)) => {
                                cancelled.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                        _ => call.await,
                    };
                    let reply = result.expect("a call that was not cancelled succeeds");
                    assert_eq!(reply.body, body, "a reply went to the wrong caller");
                    right.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let (right, cancelled) = (
        right.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
    );
    assert_eq!(right + cancelled, 32 * 200);
    assert!(
        cancelled > 100,
        "too few cancellations to mean anything: {cancelled}"
    );
    // Still one working connection.
    assert!(!client.is_closed());
    assert_eq!(callers(&client, 4, 10).await, 40);
    assert_eq!(client.stats().reconnects, 0);
    server.stop().await;
}

#[tokio::test]
async fn a_per_call_timeout_leaves_the_connection_to_the_others() {
    let server = start(
        Server::builder().handler(16u8, |frame: gopro::Frame| async move {
            if frame.body == "slow" {
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            Ok::<_, String>(frame.body)
        }),
    )
    .await;
    let client = Client::builder()
        .timeout(Duration::from_millis(1000))
        .connect(&server.addr.to_string())
        .await
        .unwrap();
    let impatient = tokio::time::timeout(Duration::from_millis(100), client.request(16, "slow"));
    assert!(impatient.await.is_err());
    // The slow reply comes, is discarded, and the next caller gets its own.
    assert_eq!(client.request(16, "next").await.unwrap().body, "next");
    assert_eq!(client.stats().replies, 2);
    server.stop().await;
}

/// A server that accepts and never reads: the client's bounds must hold.
async fn never_reads() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    (addr, task)
}

/// `closed()` waits for the connection task: after `close()`, and once a
/// connection ends for good without reconnecting; every request owed has
/// had its outcome by then.
#[tokio::test]
async fn closed_waits_until_the_connection_task_has_ended() {
    let (addr, _server) = never_reads().await;
    let client = Client::connect(&addr).await.unwrap();
    let outcomes = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let outcomes = outcomes.clone();
        let done: gopro::client::Callback = Box::new(move |result| {
            assert!(
                matches!(result, Err(ClientError::Closed { .. })),
                "{result:?}"
            );
            outcomes.fetch_add(1, Ordering::SeqCst);
        });
        client.submit(Command::HEARTBEAT, "", done).await.unwrap();
    }
    let still_open = tokio::time::timeout(Duration::from_millis(50), client.closed());
    assert!(still_open.await.is_err(), "open: closed() waits");
    client.close();
    tokio::time::timeout(Duration::from_secs(5), client.closed())
        .await
        .expect("closed() returns once the task has ended");
    assert_eq!(outcomes.load(Ordering::SeqCst), 5);

    // Ended by the server (GOAWAY), with no reconnection.
    let (server, _stats) = start_at(Server::builder(), "127.0.0.1:0").await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    client.heartbeat().await.unwrap();
    server.stop().await;
    tokio::time::timeout(Duration::from_secs(5), client.closed())
        .await
        .expect("closed() returns once the server has gone");
    assert!(client.is_closed());
}

#[tokio::test]
async fn at_max_in_flight_callers_wait() {
    let (addr, _server) = never_reads().await;
    let client = Client::builder()
        .max_in_flight(8)
        .timeout(Duration::from_secs(10))
        .connect(&addr)
        .await
        .unwrap();
    for i in 0..8 {
        assert!(matches!(
            client.try_send(Command::MESSAGE, format!("{i}").as_bytes()),
            Some(Ok(()))
        ));
    }
    assert!(
        client.try_send(Command::MESSAGE, b"9th").is_none(),
        "the 9th waits"
    );
    let waiting = tokio::time::timeout(
        Duration::from_millis(100),
        client.send(Command::MESSAGE, "9th"),
    );
    assert!(
        waiting.await.is_err(),
        "send waits while the client is full"
    );
    assert_eq!(client.in_flight().await, 8);
}

#[tokio::test]
async fn at_max_queued_bytes_callers_wait_and_memory_stays_bounded() {
    let (addr, _server) = never_reads().await;
    let cap = 1 << 20;
    let client = Client::builder()
        .max_queued_bytes(cap)
        .timeout(Duration::from_secs(10))
        .connect(&addr)
        .await
        .unwrap();
    let body = vec![7u8; 64 * 1024 - gopro::HEADER_LEN];
    let mut sent = 0;
    while let Some(result) = client.try_send(Command::MESSAGE, &body) {
        result.unwrap();
        sent += 1;
        assert!(sent <= 16, "more than the cap was queued");
    }
    assert_eq!(sent, 16, "exactly the cap: 16 frames of 64 KiB in 1 MiB");
    // A caller asking for more waits; one larger than the cap waits too,
    // and would go alone once the others are answered.
    let more = tokio::time::timeout(
        Duration::from_millis(100),
        client.send(Command::MESSAGE, body.clone()),
    );
    assert!(more.await.is_err());
}

/// Starts an in-process server on `addr` (a port may be given again after
/// the last one there stopped).
async fn start_at(builder: ServerBuilder, addr: &str) -> (Running, gopro::server::StatsHandle) {
    let server = builder.listen(addr).bind().await.unwrap();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let stats = server.stats();
    let task = tokio::spawn(server.run());
    (Running { addr, handle, task }, stats)
}

/// Calls from `tasks` tasks until `stop`; returns (right, errors).
fn load(
    client: &Client,
    tasks: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(usize, Vec<String>)>> {
    (0..tasks)
        .map(|t| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut right, mut errors) = (0, Vec::new());
                let mut c = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("{t}/{c}");
                    c += 1;
                    match client.request(Command::MESSAGE, body.clone()).await {
                        Ok(reply) => {
                            assert_eq!(reply.body, says(&body), "a wrong reply");
                            right += 1;
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                (right, errors)
            })
        })
        .collect()
}

async fn totals(tasks: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>) -> (usize, Vec<String>) {
    let (mut right, mut errors) = (0, Vec::new());
    for task in tasks {
        let (r, e) = task.await.unwrap();
        right += r;
        errors.extend(e);
    }
    (right, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_goaway_loses_nothing() {
    let first = start_default().await;
    let addr = first.addr.to_string();
    let client = Client::builder()
        .reconnect(true)
        .timeout(Duration::from_secs(10))
        .connect(&addr)
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = load(&client, 16, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await; // GOAWAY to the client
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (second, _) = start_at(Server::builder(), &addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (right, errors) = totals(tasks).await;
    assert!(
        errors.is_empty(),
        "{} errors, the first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(right > 100, "{right}");
    let s = client.stats();
    assert!(s.reconnects >= 1, "{s:?}");
    assert_eq!(s.lost, 0);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_addresses_the_client_fails_over_to_the_second() {
    let a = start_default().await;
    let (b, b_stats) = start_at(Server::builder(), "127.0.0.1:0").await;
    let client = Client::builder()
        .reconnect(true)
        .timeout(Duration::from_secs(10))
        .connect_any([a.addr.to_string(), b.addr.to_string()])
        .await
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tasks = load(&client, 8, stop.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.stop().await; // a is gone for good
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (right, errors) = totals(tasks).await;
    assert!(
        errors.is_empty(),
        "{} errors, the first: {:?}",
        errors.len(),
        errors.first()
    );
    assert!(right > 50);
    assert!(client.stats().reconnects >= 1);
    // Served by b now.
    let before = b_stats.snapshot().frames_in;
    client.heartbeat().await.unwrap();
    assert_eq!(b_stats.snapshot().frames_in, before + 1);
    b.stop().await;
}

fn auth() -> ServerBuilder {
    Server::builder().authenticator(|credentials: Bytes| async move {
        if credentials == "user:pw" {
            Ok(())
        } else {
            Err("bad credentials")
        }
    })
}

/// `send`s are gathered and handed over together, yet the wire keeps the
/// order of the calls: a MESSAGE sent before a LOGIN reaches a server that
/// wants LOGIN first before the LOGIN does, and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathered_sends_keep_their_place_before_other_calls() {
    let server = start(auth()).await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    client.send(Command::MESSAGE, "too early").await.unwrap();
    client.login("user:pw").await.unwrap();
    let err = client.recv().await.unwrap_err();
    assert_eq!(err.kind(), "server", "{err}");
    client.send(Command::MESSAGE, "in time").await.unwrap();
    assert_eq!(client.recv().await.unwrap().body, says("in time"));
}

/// With room for 8 requests, one task sends 2000 in a row while another
/// receives on the same handle: a send that has to wait for room hands the
/// gathered ones over first, so their replies come and free the room; and
/// the replies come in the order of the sends, however the two tasks' hand-
/// overs of the gathered batches interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathered_sends_go_out_when_the_client_is_full() {
    let (server, _) = start_at(Server::builder(), "127.0.0.1:0").await;
    let client = Arc::new(
        Client::builder()
            .max_in_flight(8)
            .timeout(Duration::from_secs(5))
            .connect(&server.addr.to_string())
            .await
            .unwrap(),
    );
    let sender = Arc::clone(&client);
    let sending = tokio::spawn(async move {
        for i in 0..2000 {
            sender.send(Command::MESSAGE, format!("{i}")).await.unwrap();
        }
    });
    for i in 0..2000 {
        // (A receive before the send it answers has nothing to wait for.)
        while client.in_flight().await == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(client.recv().await.unwrap().body, says(&i.to_string()));
    }
    sending.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_sent_first_on_every_connection() {
    let first = start(auth()).await;
    let addr = first.addr.to_string();
    let err = Client::builder()
        .login("user:wrong")
        .connect(&addr)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Server { reason } if reason.contains("bad credentials")),
        "{err}"
    );
    let client = Client::builder()
        .login("user:pw")
        .reconnect(true)
        .connect(&addr)
        .await
        .unwrap();
    client.request(Command::MESSAGE, "before").await.unwrap();
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (second, _) = start_at(auth(), &addr).await;
    // Without the LOGIN replayed this would be ERROR "not authenticated".
    let reply = client.request(Command::MESSAGE, "after").await.unwrap();
    assert_eq!(reply.body, says("after"));
    // (Under load a reconnect may reach the first server before its
    // listener is closed, and be closed by it: more than one is fine.)
    assert!(client.stats().reconnects >= 1);
    second.stop().await;
}

#[test]
fn sigkill_mid_load_fails_what_may_have_been_handled_and_recovers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut server = gopro_serve(&[]);
    let addr = server.addr.to_string();
    rt.block_on(async {
        let client = Client::builder()
            .reconnect(true)
            .timeout(Duration::from_secs(3))
            .connect(&addr)
            .await
            .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = load(&client, 16, stop.clone());
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.signal("KILL");
        server.wait(Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = tokio::task::spawn_blocking({
            let addr = addr.clone();
            move || common::process::gopro_serve_at(&addr)
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let (right, errors) = totals(tasks).await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "a call hung past its timeout"
        );
        assert!(right > 100, "{right}");
        // Only the requests on the wire when the server died failed, each
        // saying it may have been handled, or timed out waiting.
        for e in &errors {
            assert!(
                e.contains("may have been handled") || e.contains("timed out"),
                "{e}"
            );
        }
        assert!(
            errors.len() <= 16 * 2,
            "{} errors: {:?}",
            errors.len(),
            &errors[..3.min(errors.len())]
        );
        let s = client.stats();
        assert!(s.reconnects >= 1, "{s:?}");
        client.heartbeat().await.unwrap();
        drop(again);
    });
}

// Requests gathered with a callback each (`Client::try_gather`) and handed
// to the connection together (`Client::submit_gathered`), as the Python
// asyncio client does once per turn of its loop.

type Outcome = (usize, Result<Frame, ClientError>);

/// A callback that reports its outcome, tagged with `i`, on `tx`.
fn report(tx: &mpsc::Sender<Outcome>, i: usize) -> Callback {
    let tx = tx.clone();
    Box::new(move |result| {
        let _ = tx.send((i, result));
    })
}

fn next(rx: &mpsc::Receiver<Outcome>) -> Outcome {
    rx.recv_timeout(Duration::from_secs(10))
        .expect("a callback was never called")
}

/// The next `n` outcomes, waited for off the runtime's threads.
async fn outcomes(rx: mpsc::Receiver<Outcome>, n: usize) -> Vec<Outcome> {
    tokio::task::spawn_blocking(move || (0..n).map(|_| next(&rx)).collect())
        .await
        .unwrap()
}

/// Gathers a MESSAGE "x" for each of `tags`, each of which must fit.
fn gather_each(
    client: &Client,
    gathered: &mut Gathered,
    tx: &mpsc::Sender<Outcome>,
    tags: std::ops::Range<usize>,
) {
    for i in tags {
        let full = client.try_gather(gathered, Command::MESSAGE, b"x", report(tx, i));
        assert!(full.unwrap().is_none(), "request {i} did not fit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gathered_request_gets_its_own_reply() {
    let server = start_default().await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    let (tx, rx) = mpsc::channel();
    let mut gathered = Gathered::default();
    for i in 0..100 {
        let body = format!("call {i}");
        let full = client
            .try_gather(
                &mut gathered,
                Command::MESSAGE,
                body.as_bytes(),
                report(&tx, i),
            )
            .unwrap();
        assert!(full.is_none());
    }
    assert_eq!(gathered.len(), 100);
    // Nothing goes before the hand-over.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(client.stats().requests, 0);
    client.submit_gathered(&mut gathered);
    assert!(gathered.is_empty());
    for (i, result) in outcomes(rx, 100).await {
        let reply = result.unwrap();
        assert_eq!(reply.body, format!("Server says: call {i}"), "request {i}");
    }
    assert_eq!(client.stats().requests, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_client_gives_the_callback_back() {
    let server = start_default().await;
    let client = Client::builder()
        .max_in_flight(2)
        .connect(&server.addr.to_string())
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut gathered = Gathered::default();
    gather_each(&client, &mut gathered, &tx, 0..2);
    let full = client.try_gather(&mut gathered, Command::MESSAGE, b"x", report(&tx, 2));
    assert!(
        full.unwrap().is_some(),
        "a third request fits in a client of two"
    );
    assert_eq!(gathered.len(), 2);
    client.submit_gathered(&mut gathered);
    let got = outcomes(rx, 2).await;
    assert!(got.iter().all(|(i, r)| *i < 2 && r.is_ok()));
    // The room came back with the replies.
    gather_each(&client, &mut gathered, &tx, 3..4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_gathered_requests_all_time_out() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(socket);
    });
    let client = Client::builder()
        .timeout(Duration::from_millis(200))
        .connect(&addr)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut gathered = Gathered::default();
    gather_each(&client, &mut gathered, &tx, 0..3);
    client.submit_gathered(&mut gathered);
    for (i, (at, result)) in outcomes(rx, 3).await.into_iter().enumerate() {
        assert_eq!(at, i);
        assert!(
            matches!(result, Err(ClientError::Timeout { .. })),
            "request {i}: {result:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathered_requests_never_sent_are_told_so() {
    let server = start_default().await;
    let client = Client::connect(&server.addr.to_string()).await.unwrap();
    let (tx, rx) = mpsc::channel();
    // Dropped before the hand-over.
    let mut gathered = Gathered::default();
    gather_each(&client, &mut gathered, &tx, 0..2);
    drop(gathered);
    for i in 0..2 {
        let (at, result) = next(&rx);
        assert_eq!(at, i);
        assert!(
            matches!(result, Err(ClientError::Closed { .. })),
            "{result:?}"
        );
    }
    // Handed over once the client is closed.
    let mut gathered = Gathered::default();
    gather_each(&client, &mut gathered, &tx, 2..3);
    client.close();
    client.submit_gathered(&mut gathered);
    let (_, result) = next(&rx);
    assert!(
        matches!(result, Err(ClientError::Closed { .. })),
        "{result:?}"
    );
    // And a request made after the close is refused at once.
    let mut gathered = Gathered::default();
    let refused = client.try_gather(&mut gathered, Command::MESSAGE, b"x", report(&tx, 3));
    assert!(matches!(refused, Err(ClientError::Closed { .. })));
    assert!(gathered.is_empty());
}

/// A server on a thread of its own that answers each read's HEARTBEATs with
/// one write, and says how many requests each read brought.
fn counting_server() -> (String, std::sync::mpsc::Receiver<usize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut pending = 0;
        loop {
            match socket.read(&mut buf[pending..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending += n,
            }
            // Empty HEARTBEATs: 8 bytes each, echoed as they are.
            let whole = pending / 8 * 8;
            if whole == 0 {
                continue;
            }
            if socket.write_all(&buf[..whole]).is_err() || tx.send(whole / 8).is_err() {
                return;
            }
            buf.copy_within(whole..pending, 0);
            pending -= whole;
        }
    });
    (addr, rx)
}

/// Callers answered together queue their next requests before the
/// connection task writes: they go in one write, not one each (on one
/// worker thread, where a woken task would otherwise run next).
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn callers_answered_together_are_written_together() {
    let (addr, reads) = counting_server();
    let client = Client::connect(&addr).await.unwrap();
    let (tasks, calls) = (64, 5);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..calls {
                    client.heartbeat().await.unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    client.close();
    client.closed().await;
    let per_read: Vec<usize> = reads.try_iter().collect();
    assert_eq!(per_read.iter().sum::<usize>(), tasks * calls);
    // The first requests come as the tasks start, one by one (nobody has
    // been answered yet); from the first answers on, the callers come back
    // together: at least 16 requests a read on average.
    let mut first_wave = 0;
    let later: Vec<usize> = per_read
        .iter()
        .copied()
        .skip_while(|n| {
            first_wave += n;
            first_wave <= tasks
        })
        .collect();
    assert!(
        later.len() * 16 <= later.iter().sum::<usize>(),
        "requests per read: {per_read:?}"
    );
}
