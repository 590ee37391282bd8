//! What an idle connection costs the server in heap memory, and what a
//! connection stalled inside a frame costs: no buffers are held for either
//! beyond the bytes actually received.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

mod common;

use gopro::server::Server;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONNECTIONS: usize = 500;

/// Heap bytes per connection once `CONNECTIONS` connections that sent
/// `prefix` have been accepted and have settled.
fn heap_per_connection(prefix: &[u8]) -> f64 {
    let (addr, handle, server_thread) = common::server::on_thread(
        || {},
        || Server::builder().max_connections(CONNECTIONS + 10),
    );
    // Warm up: one connection through the whole path, so that one-time
    // allocations (pools, timer wheel levels) are not counted.
    {
        use std::io::{Read, Write};
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&gopro::Frame::heartbeat().to_bytes()).unwrap();
        let mut reply = [0u8; 8];
        c.read_exact(&mut reply).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = LIVE.load(Ordering::SeqCst);
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        use std::io::Write;
        let mut c = TcpStream::connect(addr).unwrap();
        if !prefix.is_empty() {
            c.write_all(prefix).unwrap();
        }
        held.push(c);
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = LIVE.load(Ordering::SeqCst);
    handle.shutdown();
    drop(held);
    server_thread.join().unwrap();
    (after - before) as f64 / CONNECTIONS as f64
}

#[test]
fn idle_and_stalled_connections_hold_no_buffers() {
    let idle = heap_per_connection(&[]);
    // A header announcing a 10 MiB body (accepted) and one body byte.
    let stalled = heap_per_connection(&[0x47, 0x4F, 1, 1, 0x00, 0xA0, 0x00, 0x00, b'x']);
    eprintln!(
        "heap per idle connection: {idle:.0} bytes; per stalled connection: {stalled:.0} bytes"
    );
    assert!(idle < 1100.0, "{idle} bytes per idle connection");
    assert!(
        stalled < idle + 256.0,
        "{stalled} bytes per stalled connection"
    );
}
