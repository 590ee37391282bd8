//! The reply buffer: every reply is encoded straight into one write
//! buffer, taken from the pool when the first reply of a batch is added.
//!
//! HEARTBEAT runs are copied as they came, MESSAGE replies are put together
//! from a header and prefix on the stack and the request's body, and a reply
//! over the body limit becomes an ERROR (SPEC §2). Writing the buffer out is
//! in [`write`](super::write).

use bytes::{BufMut, BytesMut};
use tracing::debug;

use super::{Connection, Peer, MESSAGE_PREFIX};
use crate::server::handler::Reply;
use crate::server::pool;
use crate::server::stats::Class;
use crate::stream::Transport;
use crate::{Command, Encoder, HEADER_LEN, VERSION};

impl<T: Transport> Connection<T> {
    /// The buffer replies go into, taken from the pool on first use.
    #[inline]
    pub(super) fn out(&mut self) -> &mut BytesMut {
        if self.wbuf.capacity() == 0 {
            self.wbuf = pool::take();
        }
        &mut self.wbuf
    }

    #[inline]
    pub(super) fn encoder(&self) -> Encoder {
        Encoder::with_max_body(self.config.max_body)
    }

    /// Copies a run of HEARTBEAT frames from the read buffer to the replies.
    #[inline]
    pub(super) fn push_echo(&mut self, buf: &[u8], echo: &mut std::ops::Range<usize>) {
        if echo.start != echo.end {
            self.out().extend_from_slice(&buf[echo.clone()]);
            if self.wbuf.capacity() > pool::BUFFER_SIZE {
                self.charge_replies();
            }
            *echo = 0..0;
        }
    }

    /// Adds a reply made of `prefix` and `body`, without building a frame;
    /// replies over the body limit become ERROR (SPEC §2). Returns the
    /// class of the frame added, for the counters.
    #[inline]
    pub(super) fn push_parts(&mut self, command: Command, prefix: &[u8], body: &[u8]) -> Class {
        let encoder = self.encoder();
        let out = self.out();
        out.reserve(HEADER_LEN + prefix.len() + body.len());
        if let Err(e) = encoder.encode_parts(VERSION, command, &[prefix, body], out) {
            return self.push_error(&format!("reply not sent: {e}"));
        }
        if self.wbuf.capacity() > pool::BUFFER_SIZE {
            self.charge_replies();
        }
        Class::of(command)
    }

    /// The MESSAGE reply, `"Server says: "` + body: header and prefix are
    /// put together on the stack and copied as one piece.
    #[inline]
    pub(super) fn push_message(&mut self, body: &[u8]) -> Class {
        const PREFIXED: usize = HEADER_LEN + MESSAGE_PREFIX.len();
        let length = MESSAGE_PREFIX.len() + body.len();
        let Ok(header) = self.encoder().header(VERSION, Command::MESSAGE, length) else {
            return self.push_parts(Command::MESSAGE, MESSAGE_PREFIX, body);
        };
        let mut head = [0u8; PREFIXED];
        head[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        head[HEADER_LEN..].copy_from_slice(MESSAGE_PREFIX);
        let out = self.out();
        out.reserve(PREFIXED + body.len());
        out.put_slice(&head);
        out.put_slice(body);
        if self.wbuf.capacity() > pool::BUFFER_SIZE {
            self.charge_replies();
        }
        Class::Message
    }

    /// Adds a handler's reply; `None` if it sends nothing.
    pub(super) fn push_reply(&mut self, command: Command, reply: Reply) -> Option<Class> {
        match reply {
            Reply::None => None,
            Reply::Body(body) => Some(self.push_parts(command, &[], &body)),
            Reply::Frame(frame) => {
                let encoder = self.encoder();
                Some(match encoder.encode(&frame, self.out()) {
                    Ok(()) => {
                        self.charge_replies();
                        Class::of(frame.command)
                    }
                    Err(e) => self.push_error(&format!("reply not sent: {e}")),
                })
            }
        }
    }

    pub(super) fn push_error(&mut self, reason: &str) -> Class {
        debug!(peer = %Peer(&self.stream), "ERROR {reason}");
        // Reasons are short; cut one that is not, on a character boundary.
        let mut end = reason.len().min(self.config.max_body).min(4096);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.push_parts(Command::ERROR, &[], &reason.as_bytes()[..end])
    }
}
