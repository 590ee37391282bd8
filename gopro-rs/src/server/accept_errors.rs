//! Backing off when accept fails: out of file descriptors (EMFILE, ENFILE)
//! or memory, a listener that retried at once would spin, and one warning
//! per failure would flood the log for as long as it lasts.
//!
//! The decisions (how long to wait, whether a warning is due) take the time
//! as an argument, so that they are tested with a made-up clock; `failed`
//! and `succeeded` read the clock and write the log.

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
    /// Which listener, for the log: "" for the server's, "metrics: " for
    /// the metrics endpoint's.
    listener: &'static str,
    delay: Duration,
    /// Failures not reported yet.
    unreported: u64,
    /// Failures since the last successful accept.
    in_a_row: u64,
    /// Whether a warning was written during this run of failures (then its
    /// end is told too).
    announced: bool,
    /// When the last warning was written. Kept across successful accepts,
    /// so that accepts failing and succeeding by turns (a process at its
    /// descriptor limit) still warn once per `REPORT_EVERY`.
    reported_at: Option<Instant>,
}

/// What to do about one failed accept.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Failure {
    /// How long to wait before the next accept.
    pub wait: Duration,
    /// When a warning is due: the failures it reports (this one included).
    pub report: Option<u64>,
}

impl AcceptErrors {
    pub(super) fn new(listener: &'static str) -> AcceptErrors {
        AcceptErrors {
            listener,
            delay: FIRST_DELAY,
            unreported: 0,
            in_a_row: 0,
            announced: false,
            reported_at: None,
        }
    }

    /// An accept failed at `now`: the wait, and whether to warn.
    pub(super) fn failed_at(&mut self, now: Instant) -> Failure {
        self.unreported += 1;
        self.in_a_row += 1;
        let due = self
            .reported_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        let report = due.then(|| {
            self.reported_at = Some(now);
            self.announced = true;
            std::mem::take(&mut self.unreported)
        });
        let wait = self.delay;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Failure { wait, report }
    }

    /// An accept succeeded: the next failure starts from the first wait.
    /// The failures in a row that end here, when their start was reported.
    pub(super) fn recovered(&mut self) -> Option<u64> {
        let ended = (self.announced && self.in_a_row > 0).then_some(self.in_a_row);
        self.delay = FIRST_DELAY;
        self.in_a_row = 0;
        self.announced = false;
        ended
    }

    /// An accept failed: logs the warning when one is due, and says how
    /// long to wait before the next one.
    pub(super) fn failed(&mut self, e: &io::Error) -> Duration {
        let Failure { wait, report } = self.failed_at(Instant::now());
        if let Some(failures) = report {
            warn!(
                failures,
                backoff = ?wait,
                "{}accept failed: {e} ({failures} time(s) since the last report; retrying with back-off up to {MAX_DELAY:?})",
                self.listener,
            );
        }
        wait
    }

    /// An accept succeeded.
    #[inline]
    pub(super) fn succeeded(&mut self) {
        if self.in_a_row > 0 {
            if let Some(failures) = self.recovered() {
                info!(
                    failures,
                    "{}accepting again after {failures} failed accept(s)", self.listener
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_wait_doubles_from_50_ms_up_to_a_second_and_stays() {
        let mut errors = AcceptErrors::new("");
        let t0 = Instant::now();
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..10 {
            let failure = errors.failed_at(now);
            now += failure.wait;
            waits.push(failure.wait);
        }
        let expected = [50, 100, 200, 400, 800, 1000, 1000, 1000, 1000, 1000].map(ms);
        assert_eq!(waits, expected);
        // A success starts it over; the next run of failures doubles again.
        assert_eq!(errors.recovered(), Some(10));
        let again: Vec<_> = (0..3).map(|_| errors.failed_at(now).wait).collect();
        assert_eq!(again, [50, 100, 200].map(ms));
    }

    #[test]
    fn one_warning_per_10_s_with_the_failures_since_the_last() {
        let mut errors = AcceptErrors::new("");
        let t0 = Instant::now();
        // The first failure is reported at once, alone.
        assert_eq!(errors.failed_at(t0).report, Some(1));
        // Then none until 10 s have passed: one nanosecond short is too soon.
        let mut silent = 0;
        for n in 1..=8 {
            assert_eq!(errors.failed_at(t0 + ms(n * 1000)).report, None);
            silent += 1;
        }
        let just_before = t0 + REPORT_EVERY - Duration::from_nanos(1);
        assert_eq!(errors.failed_at(just_before).report, None);
        silent += 1;
        // At 10 s: the failures since the first report, this one included.
        let at = t0 + REPORT_EVERY;
        assert_eq!(errors.failed_at(at).report, Some(silent + 1));
        // The next window counts from that report.
        assert_eq!(errors.failed_at(at + ms(9_999)).report, None);
        assert_eq!(errors.failed_at(at + REPORT_EVERY).report, Some(2));
    }

    #[test]
    fn failing_and_succeeding_by_turns_still_warns_once_per_10_s() {
        // A process at its descriptor limit: a connection closes, one
        // accept succeeds, the next fails again, every 50 ms.
        let mut errors = AcceptErrors::new("");
        let t0 = Instant::now();
        let mut reports = Vec::new();
        let mut recoveries = 0;
        for n in 0..=400u64 {
            let now = t0 + ms(n * 50);
            let failure = errors.failed_at(now);
            assert_eq!(failure.wait, ms(50), "a success starts the wait over");
            if let Some(count) = failure.report {
                reports.push((now - t0, count));
            }
            recoveries += u64::from(errors.recovered().is_some());
        }
        // 20 s of it: warnings at 0, 10 and 20 s, counting every failure.
        let expected = [(ms(0), 1), (ms(10_000), 200), (ms(20_000), 200)];
        assert_eq!(reports, expected);
        assert_eq!(
            recoveries, 3,
            "the end of a run is told only when its start was"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_logging_calls_read_the_runtime_clock() {
        let mut errors = AcceptErrors::new("");
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(errors.failed(&e), ms(50));
        assert_eq!(errors.failed(&e), ms(100));
        assert_eq!(errors.unreported, 1);
        tokio::time::advance(REPORT_EVERY).await;
        errors.failed(&e);
        assert_eq!(errors.unreported, 0, "reported once 10 s had passed");
        errors.succeeded();
        assert_eq!(errors.failed(&e), ms(50));
    }
}
