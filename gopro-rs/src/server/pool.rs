//! Buffers shared by the connections of a worker thread.
//!
//! A connection takes a buffer when bytes arrive and gives it back whenever
//! it holds no partial frame, so an idle connection holds no buffer at all.

use std::cell::RefCell;

use bytes::BytesMut;

/// Size of a fresh buffer: a read of this size takes a whole batch of
/// small pipelined frames.
pub(crate) const BUFFER_SIZE: usize = 8 * 1024;
/// Buffers that grew past this (for a large frame) are freed, not kept.
const MAX_POOLED_CAPACITY: usize = 64 * 1024;
/// Buffers kept per worker thread.
const MAX_POOLED: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer from this thread's pool, or a new one.
pub(crate) fn take() -> BytesMut {
    POOL.with_borrow_mut(|pool| pool.pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUFFER_SIZE))
}

/// Gives an empty buffer back.
pub(crate) fn give(mut buf: BytesMut) {
    debug_assert!(buf.is_empty());
    buf.clear();
    // Moves the start back to the beginning of the allocation (the buffer
    // was advanced past what was handled); fails, and the buffer is freed,
    // if a frame body still shares the allocation. One that grew too large
    // is freed too.
    // (The capacity is checked after reclaiming: a buffer advanced past a
    // large frame shows only the little room left after it until then.)
    if !buf.try_reclaim(BUFFER_SIZE) || buf.capacity() > MAX_POOLED_CAPACITY {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        if pool.len() < MAX_POOLED {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use bytes::Buf;

    use super::*;

    #[test]
    fn a_buffer_advanced_past_a_large_frame_is_freed_not_pooled() {
        // Advanced to its end, it shows no capacity, yet reclaiming it
        // would give back the whole large allocation.
        let mut buf = BytesMut::zeroed(1 << 20);
        buf.advance(1 << 20);
        assert!(buf.capacity() <= MAX_POOLED_CAPACITY);
        give(buf);
        assert_eq!(take().capacity(), BUFFER_SIZE);
    }

    #[test]
    fn a_small_buffer_is_pooled_with_its_room_back() {
        let mut buf = take();
        buf.extend_from_slice(&[7; BUFFER_SIZE]);
        buf.advance(BUFFER_SIZE);
        give(buf);
        assert_eq!(POOL.with_borrow(Vec::len), 1);
        assert_eq!(take().capacity(), BUFFER_SIZE);
    }
}
