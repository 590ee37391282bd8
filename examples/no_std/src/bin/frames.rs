//! The codec with `alloc`: `Decoder::decode` takes `Frame`s out of a
//! `BytesMut`, `Encoder::encode` appends the replies to another. The
//! allocator is only good for measuring the image: an arena that starts over
//! once every block is free, which the long-lived receive buffer below never
//! lets happen, so it runs dry after a few KiB of replies. A real device
//! uses a general allocator, such as the `embedded-alloc` crate's.
#![no_std]
#![no_main]

extern crate alloc;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use gopro::{Codec, Command, Frame};
use gopro_no_std_example::{receive, send, MAX_BODY, RX_LEN};

const ARENA: usize = 16 * 1024;

struct Arena {
    memory: UnsafeCell<[u8; ARENA]>,
    next: AtomicUsize,
    live: AtomicUsize,
}

// One core, no interrupts allocating: the atomics only keep the compiler honest.
unsafe impl Sync for Arena {}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = self.memory.get() as usize;
        let start = (base + self.next.load(Ordering::Relaxed)).next_multiple_of(layout.align());
        let end = start - base + layout.size();
        if end > ARENA {
            return core::ptr::null_mut();
        }
        self.next.store(end, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        start as *mut u8
    }

    unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
        if self.live.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.next.store(0, Ordering::Relaxed);
        }
    }
}

#[global_allocator]
static HEAP: Arena = Arena {
    memory: UnsafeCell::new([0; ARENA]),
    next: AtomicUsize::new(0),
    live: AtomicUsize::new(0),
};

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let codec = Codec::builder().max_body(MAX_BODY).build();
    let mut decoder = codec.decoder().clone();
    let mut rx = BytesMut::with_capacity(RX_LEN);
    let mut tx = BytesMut::new();
    let mut chunk = [0u8; 64];
    loop {
        let n = receive(&mut chunk);
        rx.extend_from_slice(&chunk[..n]);
        loop {
            let reply = match decoder.decode(&mut rx) {
                Ok(Some(frame)) => match frame.command {
                    Command::HEARTBEAT => frame,
                    Command::MESSAGE => {
                        let mut body = BytesMut::from(&b"Server says: "[..]);
                        body.extend_from_slice(&frame.body);
                        Frame::new(Command::MESSAGE, body)
                    }
                    _ => Frame::error("unknown command"),
                },
                Ok(None) => break,
                Err(e) => {
                    // The stream cannot be trusted: say why, start over (SPEC §2).
                    rx.clear();
                    decoder = codec.decoder().clone();
                    Frame::error(e.kind())
                }
            };
            if codec.encoder().encode(&reply, &mut tx).is_ok() {
                send(&tx);
            }
            tx.clear();
        }
    }
}
