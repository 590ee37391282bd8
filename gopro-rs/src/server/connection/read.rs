//! The read buffer: held only while a frame is partly received, sized to
//! what the frame still needs, and read into without an extra system call.
//!
//! A connection with nothing in flight holds no read buffer at all; one is
//! taken from the pool for each read and given back when the read left no
//! partial frame. A small partial frame left when the connection goes idle
//! moves into a buffer of its own size.

use std::io;

use bytes::BytesMut;

use super::Connection;
use crate::server::pool;
use crate::stream::Transport;
use crate::HEADER_LEN;

/// Reads ask for at least this much room, and at most this much at once.
pub(super) const MIN_READ: usize = 4 * 1024;
pub(super) const MAX_READ: usize = 256 * 1024;
/// A partial frame this small is moved out of the pooled read buffer into
/// one of its own size when the connection goes idle.
pub(super) const SMALL_PARTIAL: usize = 512;

/// What one read brought.
pub(super) struct Read {
    pub(super) len: usize,
    /// The read stopped short of its room: the socket holds no more now.
    pub(super) drained: bool,
}

impl<T: Transport> Connection<T> {
    /// The buffer to read into: the partial frame held, in a pooled buffer,
    /// with room for what that frame still needs. The room grows with what
    /// has arrived (at most doubling), so a header announcing a large body
    /// reserves nothing until its bytes come.
    #[inline]
    pub(super) fn read_buffer(&mut self) -> BytesMut {
        let mut buf = match self.rbuf.take() {
            Some(small) if small.capacity() < MIN_READ => {
                let mut buf = pool::take();
                buf.extend_from_slice(&small);
                buf
            }
            Some(buf) => buf,
            None => pool::take(),
        };
        let want = self
            .decoder
            .bytes_needed(&buf)
            .min(MAX_READ)
            .min(buf.len().max(pool::BUFFER_SIZE))
            .max(MIN_READ);
        if buf.capacity() - buf.len() < want {
            // At most doubling, and never past the end of the frame, which
            // is all the memory budget covers (reserve could double past it).
            let frame_end = buf.len() + self.decoder.bytes_needed(&buf);
            let target = (buf.capacity() * 2).min(frame_end).max(buf.len() + want);
            let mut bigger = BytesMut::with_capacity(target);
            bigger.extend_from_slice(&buf);
            buf.clear();
            pool::give(buf);
            return bigger;
        }
        buf
    }

    /// Reads at most `limit` bytes. A read that fills less than the room it
    /// was given drained the socket (see [`Stream::read_buf`](crate::stream::Stream::read_buf)).
    #[inline]
    pub(super) fn read_into(&mut self, buf: &mut BytesMut, limit: usize) -> io::Result<Read> {
        let room = limit.min(buf.capacity() - buf.len());
        let len = self.stream.read_buf(buf, limit)?;
        Ok(Read {
            len,
            drained: len > 0 && len < room,
        })
    }

    /// How much one read may bring: the rest of a frame the budget covers
    /// and a pooled buffer's worth after it, or a pooled buffer's worth in
    /// all. A buffer kept from an earlier large frame has more room than
    /// that, and must not take in a large frame before it is claimed.
    #[inline]
    pub(super) fn read_limit(&self, buf: &BytesMut) -> usize {
        let claimed = self.held.as_ref().map_or(0, |h| h.frame);
        match self.decoder.pending_header() {
            Some(h) if h.frame_len() > pool::BUFFER_SIZE && claimed >= h.frame_len() => {
                self.decoder.bytes_needed(buf) + pool::BUFFER_SIZE
            }
            _ => pool::BUFFER_SIZE.saturating_sub(buf.len()).max(HEADER_LEN),
        }
    }

    /// Keeps the read buffer only while it holds part of a frame. A small
    /// partial frame left when the connection goes `idle` moves into a
    /// buffer of its own size, so that a peer stalling mid-frame holds its
    /// bytes, not a whole buffer.
    #[inline]
    pub(super) fn keep_or_return(&mut self, mut buf: BytesMut, idle: bool) {
        if buf.is_empty() {
            pool::give(buf);
            self.release_claim(false);
        } else if idle && buf.len() <= SMALL_PARTIAL && buf.capacity() >= MIN_READ {
            self.rbuf = Some(BytesMut::from(&buf[..]));
            buf.clear();
            pool::give(buf);
            // Claimed again when more of the frame arrives.
            self.release_claim(true);
        } else {
            self.rbuf = Some(buf);
        }
    }

    pub(super) fn release_buffers(&mut self) {
        if let Some(mut buf) = self.rbuf.take() {
            buf.clear();
            pool::give(buf);
        }
        self.release_claim(true);
        self.release_wbuf();
    }
}
