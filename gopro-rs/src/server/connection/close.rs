//! Closing: after a protocol error (ERROR, then close), at the read
//! deadline, and at shutdown (the frames already received are answered,
//! then GOAWAY). Every close writes what is buffered first and lingers, so
//! that the last frames are not destroyed by a reset.

use std::io;
use std::time::Duration;

use tokio::time::timeout;
use tracing::{debug, info, warn};

use super::read::MIN_READ;
use super::{Connection, Flow, Peer};
use crate::server::pool;
use crate::server::stats::Counters;
use crate::stream::Transport;
use crate::{Command, Error, HEADER_LEN};

/// How long a closing connection keeps reading (and discarding) so that the
/// last frames it wrote are not destroyed by a reset.
const LINGER: Duration = Duration::from_millis(500);

/// The first two bytes of a TLS handshake record, read as a magic.
const TLS_RECORD: u16 = 0x1603;

impl<T: Transport> Connection<T> {
    /// The stream cannot be trusted: say why, then close (SPEC §2).
    pub(super) async fn protocol_error(&mut self, error: Error) -> Flow {
        if matches!(error, Error::BadMagic { found: TLS_RECORD }) {
            // A TLS record header (0x16 0x03): a TLS client on a plaintext
            // port, who could not read an ERROR frame.
            warn!(peer = %Peer(&self.stream), "TLS client on a plaintext port: closing");
            self.count_error(|c| &c.protocol);
            self.linger().await;
            return Flow::Close;
        }
        warn!(peer = %Peer(&self.stream), "protocol error: {error}");
        self.count_error(|c| &c.protocol);
        let class = self.push_error(&error.to_string());
        self.sent(class);
        self.close_after_flush().await
    }

    /// Writes what is buffered, then closes without destroying it.
    pub(super) async fn close_after_flush(&mut self) -> Flow {
        if self.flush().await == Flow::Continue {
            self.linger().await;
        }
        Flow::Close
    }

    /// Half-closes and discards input for a moment, so that closing with
    /// unread input does not reset the connection before the peer has read
    /// the last frames.
    pub(super) async fn linger(&mut self) {
        let _ = self.stream.shutdown().await;
        let mut scratch = pool::take();
        let _ = timeout(LINGER, async {
            loop {
                scratch.clear();
                // Raw bytes: what is discarded need not be decrypted.
                let tcp = self.stream.tcp();
                if tcp.readable().await.is_err() {
                    return;
                }
                match tcp.try_read_buf(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        })
        .await;
        scratch.clear();
        pool::give(scratch);
    }

    /// No whole frame arrived in time (SPEC §5).
    pub(super) async fn timed_out(&mut self) {
        self.count_error(|c| &c.read_timeout);
        let mid_frame = self.rbuf.is_some() || self.decoder.pending_header().is_some();
        if mid_frame {
            info!(peer = %Peer(&self.stream), timeout = ?self.config.read_timeout, "read timeout mid-frame: closing");
            let class = self.push_error(&format!(
                "read timeout: no whole frame within {:?}",
                self.config.read_timeout
            ));
            self.sent(class);
            let _ = self.close_after_flush().await;
        } else {
            debug!(peer = %Peer(&self.stream), "idle past the read timeout: closing");
        }
    }

    /// Shutdown (SPEC §6): handle the frames already received, reply, then
    /// GOAWAY; cut short when the grace period is over.
    pub(super) async fn shut_down(&mut self) {
        let force = self.config.force.clone();
        tokio::select! {
            () = self.finish() => {}
            () = force.cancelled() => {}
        }
    }

    pub(super) async fn finish(&mut self) {
        let mut buf = self.rbuf.take().unwrap_or_else(pool::take);
        // Frames that reached the socket before shutdown count as received.
        loop {
            if buf.capacity() - buf.len() < MIN_READ {
                buf.reserve(MIN_READ);
            }
            match self.stream.read_buf(&mut buf, usize::MAX) {
                Ok(n) if n > 0 => {
                    Counters::add(&self.config.shared.counters.bytes_in, n as u64);
                    if buf.len() > self.decoder.max_body() + HEADER_LEN {
                        break;
                    }
                }
                _ => break,
            }
        }
        // Handled as any batch; the replies go out with the GOAWAY.
        let flow = match self.process_in_scope(&mut buf) {
            Ok(()) => {
                self.keep_or_return(buf, true);
                Flow::Continue
            }
            Err(slow) => self.slow_path(buf, slow).await,
        };
        if flow == Flow::Continue {
            let class = self.push_parts(Command::GOAWAY, b"server shutting down", &[]);
            self.sent(class);
            let _ = self.close_after_flush().await;
        }
    }
}
