//! Opening connections: to the first of a list of addresses that answers
//! (host names resolved at each attempt, so that DNS changes are
//! followed), and the back-off between attempts when reconnecting.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use super::ClientError;
use crate::stream::Stream;
use crate::tls::{self, ClientTls};

/// Connects to the first of `addrs`, starting at `start` and going round,
/// that answers (and finishes its TLS handshake) within `limit`; returns it
/// with its index.
pub(super) async fn open(
    addrs: &[String],
    start: usize,
    limit: Duration,
    tls: Option<&ClientTls>,
) -> Result<(Stream, usize), ClientError> {
    let mut last = None;
    for i in 0..addrs.len() {
        let index = (start + i) % addrs.len();
        let addr = &addrs[index];
        match timeout(limit, open_one(addr, tls)).await {
            Ok(Ok(stream)) => {
                // Debug: a client that connects often (a benchmark, a short-lived
                // CLI call) should not fill the info log; reconnects are info.
                tracing::debug!(%addr, "gopro client: connected");
                return Ok((stream, index));
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(ClientError::Timeout {
                    waiting_to: "connect",
                    after: limit,
                })
            }
        }
    }
    Err(last.unwrap_or(ClientError::Config(
        crate::settings::ConfigError::TooSmall {
            setting: "addresses",
            value: 0,
            min: 1,
        },
    )))
}

/// One connection, with its handshake when the client speaks TLS.
async fn open_one(addr: &str, tls: Option<&ClientTls>) -> Result<Stream, ClientError> {
    let connect_error = |source| ClientError::Connect {
        addr: addr.to_string(),
        source,
    };
    let tcp = TcpStream::connect(addr).await.map_err(connect_error)?;
    tcp.set_nodelay(true).map_err(connect_error)?;
    match tls {
        None => Ok(Stream::plain(tcp)),
        Some(settings) => settings.handshake(tcp, addr).await.map(tls::client_stream),
    }
}

/// Exponential back-off with jitter: attempt `n` waits between half and
/// all of `initial × 2ⁿ`, never more than `max`.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    seed: u64,
}

impl Backoff {
    /// Waits from `initial`, doubling, up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0);
        Backoff {
            initial,
            max,
            attempt: 0,
            seed: hasher.finish() | 1,
        }
    }

    /// A connection was made: the next loss starts from the beginning.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_mul(1 << self.attempt.min(20))
            .min(self.max);
        self.attempt += 1;
        // xorshift64: jitter needs no more than that.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let fraction = 0.5 + (self.seed >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        base.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<_> = (0..8).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100), "{delays:?}");
        assert!(delays[0] >= Duration::from_millis(50), "{delays:?}");
        assert!(delays[1] >= Duration::from_millis(100), "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(2)),
            "{delays:?}"
        );
        assert!(delays[7] >= Duration::from_secs(1), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
