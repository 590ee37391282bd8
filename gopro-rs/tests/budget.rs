//! The server-wide memory budget and the server's counters.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gopro::server::{Server, ServerError, StatsHandle};
use gopro::{Command, Frame};

const MIB: usize = 1024 * 1024;

/// Starts a server from `builder` on its own runtime; returns its address,
/// its stats and a function that stops it.
fn start(builder: gopro::server::ServerBuilder) -> (SocketAddr, StatsHandle, impl FnOnce()) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = builder.listen("127.0.0.1:0").bind().await.unwrap();
            tx.send((
                server.local_addr(),
                server.stats(),
                server.shutdown_handle(),
            ))
            .unwrap();
            server.run().await;
        });
    });
    let (addr, stats, handle) = rx.recv().unwrap();
    (addr, stats, move || {
        handle.shutdown();
        thread.join().unwrap();
    })
}

/// Sends `count` MESSAGE frames of `size` bytes and checks every reply.
fn echo_big(addr: SocketAddr, size: usize, count: usize, seed: u8) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    for i in 0..count {
        let fill = seed.wrapping_add(i as u8);
        let frame = Frame::new(Command::MESSAGE, vec![fill; size]);
        stream.write_all(&frame.to_bytes()).unwrap();
        let mut header = [0u8; 8];
        stream.read_exact(&mut header).unwrap();
        let header = gopro::Header::parse(&header).unwrap();
        assert_eq!(header.command, Command::MESSAGE);
        assert_eq!(header.length as usize, size + 13);
        let mut body = vec![0u8; size + 13];
        stream.read_exact(&mut body).unwrap();
        assert_eq!(&body[..13], b"Server says: ");
        assert!(body[13..].iter().all(|&b| b == fill), "wrong reply body");
    }
}

#[test]
fn the_budget_must_hold_one_whole_frame() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime
        .block_on(
            Server::builder()
                .listen("127.0.0.1:0")
                .max_body(MIB)
                .memory_budget(MIB + 7)
                .bind(),
        )
        .err()
        .expect("a budget below max_body + 8 is refused");
    assert!(
        matches!(
            err,
            ServerError::Config(gopro::settings::ConfigError::MemoryBudgetTooSmall {
                budget,
                needed
            }) if budget == MIB + 7 && needed == MIB + 8
        ),
        "{err}"
    );
    assert!(err.to_string().contains("memory_budget"), "{err}");
    // Exactly max_body + 8 is enough, and serves a frame of max_body.
    let (addr, stats, stop) = start(
        Server::builder()
            .max_body(MIB - 13)
            .memory_budget(MIB - 13 + 8),
    );
    echo_big(addr, MIB - 26, 2, 1);
    stop();
    assert_eq!(stats.snapshot().bytes_buffered, 0);
}

/// Many connections send large frames at once: the bytes held never pass
/// the budget, every frame is answered, and everything is given back.
#[test]
fn many_large_frames_wait_for_the_budget_instead_of_allocating() {
    let budget = 4 * MIB;
    let (addr, stats, stop) = start(Server::builder().max_body(MIB).memory_budget(budget));
    let done = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = std::thread::spawn({
        let (done, peak, stats) = (done.clone(), peak.clone(), stats.clone());
        move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(stats.snapshot().bytes_buffered, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    });
    let clients: Vec<_> = (0..16)
        .map(|c| std::thread::spawn(move || echo_big(addr, MIB - 13, 3, c as u8 * 16)))
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    eprintln!("peak bytes buffered: {peak} (budget {budget})");
    assert!(peak <= budget, "{peak} bytes held, budget {budget}");
    // An echo of 1 MiB claims 2 MiB: request and reply together.
    assert!(peak >= 2 * MIB, "the budget was never used: {peak}");
    // Connections close on their own: wait until the server saw them go.
    let started = Instant::now();
    while stats.snapshot().connections > 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    let s = stats.snapshot();
    assert_eq!(s.bytes_buffered, 0, "{s:?}");
    assert_eq!((s.frames_in, s.frames_out), (48, 48), "{s:?}");
    assert_eq!(s.connections_accepted, 16);
    assert_eq!(s.memory_budget, budget);
    stop();
}

/// Replies the server did not make itself (a handler's) may overdraw the
/// budget; new large frames then wait until it is paid back.
#[test]
fn handler_replies_are_counted_and_given_back() {
    let (addr, stats, stop) = start(
        Server::builder()
            .max_body(2 * MIB)
            .memory_budget(2 * MIB + 8)
            .handler(200u8, |frame: Frame| async move {
                Ok::<_, String>(gopro::server::Reply::Body(
                    vec![7u8; frame.body.len() * 2].into(),
                ))
            }),
    );
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                for _ in 0..3 {
                    let frame = Frame::new(200u8, vec![1u8; MIB - 100]);
                    stream.write_all(&frame.to_bytes()).unwrap();
                    let mut reply = vec![0u8; 8 + 2 * (MIB - 100)];
                    stream.read_exact(&mut reply).unwrap();
                    assert!(reply[8..].iter().all(|&b| b == 7));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let started = Instant::now();
    while stats.snapshot().connections > 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(stats.snapshot().bytes_buffered, 0);
    stop();
}

#[test]
fn errors_are_counted_by_kind() {
    let (addr, stats, stop) = start(
        Server::builder()
            .max_connections(2)
            .read_timeout(Duration::from_millis(300))
            .handler(100u8, |_frame: Frame| async move {
                Err::<gopro::server::Reply, _>("no".to_string())
            }),
    );
    let roundtrip = |bytes: &[u8]| {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    };
    // Bad magic: ERROR, then close.
    let out = roundtrip(b"XXXXXXXX");
    assert!(out.len() > 8 && out[3] == Command::ERROR.0);
    // A handler error, then a read timeout mid-frame.
    let mut bytes = Frame::new(100u8, "x").to_bytes().to_vec();
    bytes.extend_from_slice(&[0x47, 0x4F, 1]);
    let out = roundtrip(&bytes);
    assert!(out.windows(2).any(|w| w == b"no"));
    // Two connections held open, a third refused.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&Frame::heartbeat().to_bytes()).unwrap();
            let mut reply = [0u8; 8];
            s.read_exact(&mut reply).unwrap();
            s
        })
        .collect();
    let out = roundtrip(b"");
    assert!(out.windows(11).any(|w| w == b"server busy"));
    drop(held);
    let started = Instant::now();
    loop {
        let s = stats.snapshot();
        // The mid-frame timeout; the two held connections may time out too
        // on a slow machine before they are dropped (without a reply).
        if s.connections == 0 && s.errors.read_timeout >= 1 {
            assert_eq!(s.errors.protocol, 1, "{s:?}");
            assert_eq!(s.errors.handler, 1, "{s:?}");
            assert_eq!(s.errors.busy, 1, "{s:?}");
            // The refused connection is not counted as accepted.
            assert_eq!(s.connections_accepted, 4, "{s:?}");
            // HEARTBEAT x2 + the handler's frame.
            assert_eq!(s.frames_in, 3, "{s:?}");
            // Their 3 replies, the bad-magic ERROR and the timeout ERROR.
            assert_eq!(s.frames_out, 5, "{s:?}");
            assert!(s.to_string().contains("protocol=1"), "{s}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop();
}
