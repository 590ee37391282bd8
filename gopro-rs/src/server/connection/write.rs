//! Writing the reply buffer out: at once when the socket takes it, else
//! within the write timeout, after which a peer that does not read its
//! replies is closed (SPEC §5).

use std::io;

use bytes::Buf;
use tokio::time::timeout;
use tracing::{debug, warn};

use super::{Connection, Flow, Peer};
use crate::server::pool;
use crate::server::stats::Counters;
use crate::stream::Transport;

impl<T: Transport> Connection<T> {
    /// Writes every buffered reply, waiting (within the write timeout) for a
    /// peer that is slow to read.
    pub(super) async fn flush(&mut self) -> Flow {
        if self.wbuf.is_empty() {
            return Flow::Continue;
        }
        let result = match self.write_now() {
            Ok(true) => Ok(()),
            Ok(false) => self.write_rest().await,
            Err(e) => Err(e),
        };
        self.release_wbuf();
        match result {
            Ok(()) => Flow::Continue,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                warn!(peer = %Peer(&self.stream), timeout = ?self.config.write_timeout, "peer is not reading its replies: closing");
                self.count_error(|c| &c.write_timeout);
                Flow::Close
            }
            Err(e) => {
                debug!(peer = %Peer(&self.stream), "write failed: {e}");
                self.count_error(|c| &c.io);
                Flow::Close
            }
        }
    }

    /// Writes what the socket takes now; `true` once everything is written.
    #[inline]
    pub(super) fn write_now(&mut self) -> io::Result<bool> {
        let mut written = 0;
        let result = loop {
            match self.stream.try_write(&self.wbuf) {
                Ok(n) => {
                    self.wbuf.advance(n);
                    written += n;
                    if self.wbuf.is_empty() {
                        // Over TLS, rustls may still hold the last bytes.
                        break self.stream.flush_now();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        Counters::add(&self.config.shared.counters.bytes_out, written as u64);
        result
    }

    /// Writes the rest within the write timeout (or until the server closes).
    pub(super) async fn write_rest(&mut self) -> io::Result<()> {
        let force = self.config.force.clone();
        let limit = self.config.write_timeout;
        tokio::select! {
            written = timeout(limit, self.stream.write_all(&self.wbuf)) => match written {
                Ok(result) => {
                    if result.is_ok() {
                        let n = self.wbuf.len() as u64;
                        Counters::add(&self.config.shared.counters.bytes_out, n);
                    }
                    result
                }
                Err(_) => Err(io::ErrorKind::TimedOut.into()),
            },
            () = force.cancelled() => Err(io::ErrorKind::ConnectionAborted.into()),
        }
    }

    #[inline]
    pub(super) fn release_wbuf(&mut self) {
        let mut buf = std::mem::take(&mut self.wbuf);
        if buf.capacity() > 0 {
            buf.clear();
            pool::give(buf);
        }
        self.release_charge();
    }
}
