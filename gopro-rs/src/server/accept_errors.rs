//! Backing off when accept fails: out of file descriptors (EMFILE, ENFILE)
//! or memory, a listener that retried at once would spin, and one warning
//! per failure would flood the log for as long as it lasts.

use std::io;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

/// The first wait after a failed accept; it doubles up to `MAX_DELAY`.
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// At most one warning this often, with the count of failures since.
const REPORT_EVERY: Duration = Duration::from_secs(10);

pub(super) struct AcceptErrors {
    delay: Duration,
    /// Failures not reported yet.
    unreported: u64,
    /// Failures since the last successful accept.
    in_a_row: u64,
    reported_at: Option<Instant>,
}

impl AcceptErrors {
    pub(super) fn new() -> AcceptErrors {
        AcceptErrors {
            delay: FIRST_DELAY,
            unreported: 0,
            in_a_row: 0,
            reported_at: None,
        }
    }

    /// An accept failed: how long to wait before the next one.
    pub(super) fn failed(&mut self, e: &io::Error) -> Duration {
        self.unreported += 1;
        self.in_a_row += 1;
        let now = Instant::now();
        if self
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            warn!(
                failures = self.unreported,
                backoff = ?self.delay,
                "accept failed: {e} ({} time(s) since the last report; retrying with back-off up to {MAX_DELAY:?})",
                self.unreported
            );
            self.unreported = 0;
            self.reported_at = Some(now);
        }
        let delay = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        delay
    }

    /// An accept succeeded: the next failure starts from the first wait.
    #[inline]
    pub(super) fn succeeded(&mut self) {
        if self.in_a_row > 0 {
            info!(
                failures = self.in_a_row,
                "accepting again after {} failed accept(s)", self.in_a_row
            );
            *self = AcceptErrors::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_wait_doubles_up_to_a_second_and_starts_over_after_a_success() {
        let mut errors = AcceptErrors::new();
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<_> = (0..8).map(|_| errors.failed(&e)).collect();
        assert_eq!(waits[0], Duration::from_millis(50));
        assert_eq!(waits[1], Duration::from_millis(100));
        assert_eq!(waits[4], Duration::from_millis(800));
        assert_eq!(waits[5], Duration::from_secs(1));
        assert_eq!(waits[7], Duration::from_secs(1));
        // One report for all of them: the next is due in 10 s.
        assert_eq!(errors.unreported, 7);
        tokio::time::advance(REPORT_EVERY).await;
        errors.failed(&e);
        assert_eq!(errors.unreported, 0);
        errors.succeeded();
        assert_eq!(errors.failed(&e), Duration::from_millis(50));
    }
}
