//! The built-in HEARTBEAT and MESSAGE paths allocate nothing per frame once
//! warm: buffers are reused, bodies are not copied into new allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

mod common;

use gopro::server::Server;
use gopro::{Command, Encoder, Frame};

struct Counting;

static MEASURING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SERVER_THREAD: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if MEASURING.load(Ordering::Relaxed) && SERVER_THREAD.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if MEASURING.load(Ordering::Relaxed) && SERVER_THREAD.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_heartbeat_and_message_allocate_nothing_per_frame() {
    let (addr, handle, server_thread) = common::server::on_thread(
        || SERVER_THREAD.with(|s| s.set(true)),
        || Server::builder().raise_nofile_limit(false),
    );

    // One batch: 32 heartbeats and 32 messages with 32-byte bodies, pipelined.
    let mut requests = Vec::new();
    let mut replies = Vec::new();
    for i in 0..32u8 {
        requests.push(Frame::new(Command::HEARTBEAT, vec![i; 32]));
        requests.push(Frame::new(Command::MESSAGE, vec![i; 32]));
        replies.push(Frame::new(Command::HEARTBEAT, vec![i; 32]));
        let mut said = b"Server says: ".to_vec();
        said.extend_from_slice(&[i; 32]);
        replies.push(Frame::new(Command::MESSAGE, said));
    }
    let mut batch = bytes::BytesMut::new();
    Encoder::new().encode_all(&requests, &mut batch).unwrap();
    let mut expected = bytes::BytesMut::new();
    Encoder::new().encode_all(&replies, &mut expected).unwrap();
    let mut got = vec![0u8; expected.len()];

    // Accepting a connection allocates (its task): proof that the counter counts.
    MEASURING.store(true, Ordering::SeqCst);
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    client.set_nodelay(true).unwrap();
    let mut round = |client: &mut std::net::TcpStream| {
        client.write_all(&batch).unwrap();
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got[..], &expected[..]);
    };
    round(&mut client);
    MEASURING.store(false, Ordering::SeqCst);
    let warm_up = ALLOCATIONS.swap(0, Ordering::SeqCst);
    assert!(warm_up > 0, "the counting allocator saw nothing");
    for _ in 0..500 {
        round(&mut client);
    }
    const BATCHES: usize = 2000;
    MEASURING.store(true, Ordering::SeqCst);
    for _ in 0..BATCHES {
        round(&mut client);
    }
    MEASURING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let frames = BATCHES * requests.len();
    handle.shutdown();
    drop(client);
    server_thread.join().unwrap();
    // Zero is expected; a handful would be the runtime's own bookkeeping.
    assert!(
        allocations <= 8,
        "{allocations} allocations for {frames} frames"
    );
    eprintln!("{allocations} allocations for {frames} frames");
}
