//! The memory budget's bookkeeping: what one connection holds of the
//! server's shared budget (see [`Budget`](crate::server::budget)).
//!
//! Frames that fit a pooled buffer cost the budget nothing. A larger frame
//! is claimed whole before more of it is read (with its reply, when the
//! server itself makes it), and a reply buffer that grows past a pooled
//! buffer is charged for the growth; both are given back once no frame needs
//! them. Only connections that move large frames ever hold any, so the
//! record is boxed and most connections carry only a null pointer.

use super::{Connection, MESSAGE_PREFIX};
use crate::server::pool;
use crate::stream::Transport;
use crate::{Command, HEADER_LEN};

/// A connection's share of the memory budget.
#[derive(Default)]
pub(super) struct Held {
    /// Claimed for the frame in progress.
    pub(super) frame: usize,
    /// Claimed for that frame's reply, when the server itself makes it.
    pub(super) reply: usize,
    /// Charged for the reply buffer's growth past a pooled buffer.
    pub(super) replies: usize,
}

impl<T: Transport> Connection<T> {
    /// Claims from the memory budget the whole of a frame too large for a
    /// pooled buffer before more of it is read; `Err` with the bytes still
    /// to claim when the budget cannot cover them now.
    #[inline]
    pub(super) fn claim(&mut self) -> Result<(), usize> {
        let Some(header) = self.decoder.pending_header() else {
            return Ok(());
        };
        let frame = header.frame_len();
        if frame <= pool::BUFFER_SIZE {
            return Ok(());
        }
        // An echo's reply is as large as the request, and made while the
        // request is still held: claim both at once.
        let echo = (header.command == Command::HEARTBEAT || header.command == Command::MESSAGE)
            && self.config.handlers[header.command.0 as usize].is_none();
        let need = if echo {
            frame + HEADER_LEN + header.length as usize + MESSAGE_PREFIX.len()
        } else {
            frame
        };
        let budget = &self.config.shared.budget;
        let need = need.min(budget.limit().max(frame));
        let has = self.held.as_ref().map_or(0, |h| h.frame + h.reply);
        if need <= has {
            return Ok(());
        }
        let more = need - has;
        if budget.try_claim(more) {
            self.add_claim(more);
            Ok(())
        } else {
            Err(more)
        }
    }

    /// Books `more` claimed bytes: the frame's first, the rest for its reply.
    pub(super) fn add_claim(&mut self, more: usize) {
        let frame = self.decoder.pending_header().map_or(0, |h| h.frame_len());
        let held = self.held.get_or_insert_default();
        let to_frame = frame.saturating_sub(held.frame).min(more);
        held.frame += to_frame;
        held.reply += more - to_frame;
    }

    /// Gives back the claims once no frame needs them, or when `force`d.
    #[inline]
    pub(super) fn release_claim(&mut self, force: bool) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        let claimed = held.frame + held.reply;
        if claimed > 0 && (force || self.decoder.pending_header().is_none()) {
            self.config.shared.budget.release(claimed);
            held.frame = 0;
            held.reply = 0;
        }
    }

    /// Counts the reply buffer's growth past a pooled buffer against the
    /// memory budget, from the reply's claim first.
    pub(super) fn charge_replies(&mut self) {
        let size = self.wbuf.capacity().saturating_sub(pool::BUFFER_SIZE);
        let held = self.held.get_or_insert_default();
        if size > held.replies {
            let grown = size - held.replies;
            let claimed = grown.min(held.reply);
            held.reply -= claimed;
            held.replies = size;
            self.config.shared.budget.charge(grown - claimed);
        }
    }

    /// Gives back what the reply buffer was charged.
    pub(super) fn release_charge(&mut self) {
        if let Some(held) = self.held.as_mut() {
            if held.replies > 0 {
                self.config.shared.budget.release(held.replies);
                held.replies = 0;
            }
        }
    }
}
