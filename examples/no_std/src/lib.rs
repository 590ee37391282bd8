//! What both firmware images share: the "device" they run on. A real one
//! reads a UART or a TCP stack's receive window; here the bytes come from a
//! static buffer the optimiser cannot see through, so that the codec's code
//! is kept and measured, not folded away.
#![no_std]

use core::hint::black_box;

/// The receive buffer's size: one 1 KiB frame and its header.
pub const RX_LEN: usize = 1024 + gopro::HEADER_LEN;
/// The largest body the device accepts (a small device's limit, checked
/// on the header before the body arrives).
pub const MAX_BODY: usize = 1024;

/// Bytes "received": as far as the optimiser knows, anything.
pub fn receive(buf: &mut [u8]) -> usize {
    let n = black_box(buf.len());
    for b in buf.iter_mut() {
        *b = black_box(0);
    }
    n
}

/// Bytes "sent".
pub fn send(bytes: &[u8]) {
    black_box(bytes);
}

/// A panic stops the device; the codec itself never panics on input.
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
