//! Buffers shared by the connections of a worker thread.
//!
//! A connection takes a buffer when bytes arrive and gives it back whenever
//! it holds no partial frame, so an idle connection holds no buffer at all.

use std::cell::RefCell;

use bytes::BytesMut;

/// Size of a fresh buffer: a read of this size takes a whole batch of
/// small pipelined frames.
pub(crate) const BUFFER_SIZE: usize = 8 * 1024;
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
    // A buffer advanced past what was handled shows only the room after it,
    // however large its allocation. Asking for one byte more room than that
    // moves its start back to the beginning of the allocation, which it then
    // shows whole; for a buffer never advanced it fails, and what it shows is
    // the whole allocation already. (Connections give back no buffer that
    // shares its allocation with a frame body: see `Connection::slow_path`.)
    let room = buf.capacity();
    let _ = buf.try_reclaim(room + 1);
    // Only buffers of the pool's own size are kept: one that grew (for a
    // large frame, or many replies) is freed, so that the pool holds at most
    // `MAX_POOLED` times `BUFFER_SIZE` bytes a thread, none of them outside
    // the memory budget for long.
    if buf.capacity() != BUFFER_SIZE {
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
        assert!(buf.capacity() < BUFFER_SIZE);
        give(buf);
        assert_eq!(take().capacity(), BUFFER_SIZE);
    }

    #[test]
    fn a_buffer_with_room_left_in_a_large_allocation_is_freed_not_pooled() {
        // 16 KiB of room left after a frame in a 1 MiB allocation: the room
        // alone would pass for a pooled buffer's.
        let mut buf = BytesMut::zeroed(1 << 20);
        buf.advance((1 << 20) - 2 * BUFFER_SIZE);
        buf.clear();
        assert_eq!(buf.capacity(), 2 * BUFFER_SIZE);
        give(buf);
        assert_eq!(POOL.with_borrow(Vec::len), 0);
    }

    #[test]
    fn the_pool_keeps_at_most_its_count() {
        let taken: Vec<BytesMut> = (0..MAX_POOLED + 1).map(|_| take()).collect();
        for buf in taken {
            give(buf);
        }
        assert_eq!(POOL.with_borrow(Vec::len), MAX_POOLED);
    }

    #[test]
    fn a_buffer_never_advanced_is_pooled() {
        give(BytesMut::with_capacity(BUFFER_SIZE));
        assert_eq!(POOL.with_borrow(Vec::len), 1);
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
