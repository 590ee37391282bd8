//! What a running server has done: connections, frames, bytes held, errors.
//!
//! Connections count frames in plain fields and add them here once per
//! batch, so the per-frame path touches no shared cache line.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::budget::Budget;
use crate::Command;

/// The kinds of command frames are counted by, as the metrics label them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Heartbeat,
    Message,
    Login,
    Error,
    Goaway,
    /// Codes 5–15.
    Reserved,
    /// Codes 16–255.
    Application,
}

/// How many [`Class`]es there are.
pub(crate) const CLASSES: usize = 7;

impl Class {
    #[inline]
    pub(crate) fn of(command: Command) -> Class {
        match command.0 {
            0 => Class::Heartbeat,
            1 => Class::Message,
            2 => Class::Login,
            3 => Class::Error,
            4 => Class::Goaway,
            c if c < Command::FIRST_APPLICATION => Class::Reserved,
            _ => Class::Application,
        }
    }
}

/// Frames counted by class in a connection's locals while it handles one
/// batch, then added to the server's counters at once.
#[derive(Default)]
pub(crate) struct Tally([u64; CLASSES]);

impl Tally {
    #[inline]
    pub(crate) fn add(&mut self, class: Class, n: u64) {
        self.0[class as usize] += n;
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.0.iter().all(|&n| n == 0)
    }
}

/// A batch's frames received and sent, by class. A MESSAGE answered by the
/// built-in handler on the synchronous path (the common case) is one frame
/// in and one out of its class, and is counted once, in `messages`: one
/// add on that path, where looking up a class for each frame in and out
/// cost 4 % more instructions per reply.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) frames_in: Tally,
    pub(crate) frames_out: Tally,
    /// MESSAGEs in, each answered by one MESSAGE out.
    pub(crate) messages: u64,
}

impl Batch {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.messages == 0 && self.frames_in.is_empty()
    }
}

/// The counters every connection of one server adds to.
#[derive(Default)]
pub(crate) struct Counters {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    /// Frames received and sent, by [`Class`].
    pub frames_in: [AtomicU64; CLASSES],
    pub frames_out: [AtomicU64; CLASSES],
    /// GoPro bytes read and written (after TLS decryption, before encryption).
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub busy: AtomicU64,
    pub protocol: AtomicU64,
    pub read_timeout: AtomicU64,
    pub write_timeout: AtomicU64,
    pub handler: AtomicU64,
    pub login: AtomicU64,
    pub io: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls: AtomicU64,
    /// PROXY protocol headers accepted, and connections refused for it.
    pub proxy_ok: AtomicU64,
    pub proxy_refused: AtomicU64,
    /// How long application handlers took.
    pub handler_latency: Latency,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds a batch's frames: one atomic add per class present.
    #[inline]
    pub(crate) fn add_batch(&self, batch: &Batch) {
        for (counters, tally) in [
            (&self.frames_in, &batch.frames_in),
            (&self.frames_out, &batch.frames_out),
        ] {
            for (class, (counter, &n)) in counters.iter().zip(&tally.0).enumerate() {
                let n = if class == Class::Message as usize {
                    n + batch.messages
                } else {
                    n
                };
                Counters::add(counter, n);
            }
        }
    }

    /// Counts one frame at once: for the slow path, which sends its
    /// replies one by one.
    pub(crate) fn add_one(counters: &[AtomicU64; CLASSES], class: Class) {
        counters[class as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// The upper bounds of the handler latency histogram's buckets; a last
/// bucket takes what is longer.
pub const LATENCY_BOUNDS: [Duration; 19] = {
    const fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }
    [
        us(10),
        us(25),
        us(50),
        us(100),
        us(250),
        us(500),
        us(1_000),
        us(2_500),
        us(5_000),
        us(10_000),
        us(25_000),
        us(50_000),
        us(100_000),
        us(250_000),
        us(500_000),
        us(1_000_000),
        us(2_500_000),
        us(5_000_000),
        us(10_000_000),
    ]
};

/// The number of buckets: one per bound, and one for longer.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS.len() + 1;

/// A fixed-bucket histogram of atomics: recording one call is two relaxed
/// adds, and only application handlers (which already cost a boxed future
/// or a call into another language) are recorded.
#[derive(Default)]
pub(crate) struct Latency {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_ns: AtomicU64,
}

impl Latency {
    pub(crate) fn record(&self, took: Duration) {
        let bucket = LATENCY_BOUNDS.partition_point(|&bound| bound < took);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HandlerLatency {
        let buckets = std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed));
        HandlerLatency {
            buckets,
            count: buckets.iter().sum(),
            sum: Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed)),
        }
    }
}

/// The counters and the budget of one server; made anew by each bind.
pub(crate) struct Shared {
    pub counters: Counters,
    pub budget: Budget,
    /// Set when shutdown is asked for, just before the shutdown token is
    /// cancelled: a connection reads this flag on each wake-up, where
    /// polling the token takes two locks every connection shares.
    pub shutting_down: AtomicBool,
}

impl Shared {
    pub(crate) fn new(memory_budget: usize) -> Arc<Shared> {
        Arc::new(Shared {
            counters: Counters::default(),
            budget: Budget::new(memory_budget),
            shutting_down: AtomicBool::new(false),
        })
    }
}

/// Reads a running server's [`Stats`]; cheap to clone, usable from any
/// thread, valid after the server has stopped.
#[derive(Clone)]
pub struct StatsHandle(pub(crate) Arc<Shared>);

impl StatsHandle {
    /// The counters now. Frames are added once per batch a connection
    /// handles, so a batch in progress is not counted yet.
    pub fn snapshot(&self) -> Stats {
        let c = &self.0.counters;
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let frames_in = ByCommand::load(&c.frames_in);
        let frames_out = ByCommand::load(&c.frames_out);
        Stats {
            connections: c.open.load(Ordering::Relaxed),
            connections_accepted: get(&c.accepted),
            frames_in: frames_in.total(),
            frames_out: frames_out.total(),
            frames_in_by_command: frames_in,
            frames_out_by_command: frames_out,
            bytes_in: get(&c.bytes_in),
            bytes_out: get(&c.bytes_out),
            bytes_buffered: self.0.budget.used(),
            memory_budget: self.0.budget.limit(),
            errors: ErrorCounts {
                busy: get(&c.busy),
                protocol: get(&c.protocol),
                read_timeout: get(&c.read_timeout),
                write_timeout: get(&c.write_timeout),
                handler: get(&c.handler),
                login: get(&c.login),
                io: get(&c.io),
                tls: get(&c.tls),
            },
            tls_handshakes: get(&c.tls_handshakes),
            proxy_headers: get(&c.proxy_ok),
            proxy_refused: get(&c.proxy_refused),
            handler_latency: c.handler_latency.snapshot(),
        }
    }
}

impl fmt::Debug for StatsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

/// A server's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now.
    pub connections: usize,
    /// Connections accepted since the server started (refused ones not included).
    pub connections_accepted: u64,
    /// Whole frames received.
    pub frames_in: u64,
    /// Frames sent (replies, ERROR and GOAWAY included).
    pub frames_out: u64,
    /// Frames received, by command.
    pub frames_in_by_command: ByCommand,
    /// Frames sent, by command (GOAWAYs sent are `goaway`).
    pub frames_out_by_command: ByCommand,
    /// Bytes of frames read (after TLS decryption).
    pub bytes_in: u64,
    /// Bytes of frames written (before TLS encryption).
    pub bytes_out: u64,
    /// Bytes held for frames and replies beyond each connection's pooled
    /// buffer: what the memory budget counts.
    pub bytes_buffered: usize,
    /// The memory budget.
    pub memory_budget: usize,
    /// Errors, by kind.
    pub errors: ErrorCounts,
    /// TLS handshakes completed (on a TLS port); the failed ones are
    /// [`ErrorCounts::tls`].
    pub tls_handshakes: u64,
    /// PROXY protocol headers accepted.
    pub proxy_headers: u64,
    /// Connections refused by the PROXY protocol: from an address that is
    /// not a trusted proxy, without a valid header, or not in time.
    pub proxy_refused: u64,
    /// How long application handlers (commands 16–255) took.
    pub handler_latency: HandlerLatency,
}

/// Frames counted by the kind of their command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ByCommand {
    /// HEARTBEAT (0).
    pub heartbeat: u64,
    /// MESSAGE (1).
    pub message: u64,
    /// LOGIN (2).
    pub login: u64,
    /// ERROR (3).
    pub error: u64,
    /// GOAWAY (4).
    pub goaway: u64,
    /// The reserved codes 5–15.
    pub reserved: u64,
    /// The application's codes 16–255.
    pub application: u64,
}

impl ByCommand {
    fn load(counters: &[AtomicU64; CLASSES]) -> ByCommand {
        let get = |class: Class| counters[class as usize].load(Ordering::Relaxed);
        ByCommand {
            heartbeat: get(Class::Heartbeat),
            message: get(Class::Message),
            login: get(Class::Login),
            error: get(Class::Error),
            goaway: get(Class::Goaway),
            reserved: get(Class::Reserved),
            application: get(Class::Application),
        }
    }

    /// Every frame counted.
    pub fn total(&self) -> u64 {
        self.labelled().iter().map(|(_, n)| n).sum()
    }

    /// The counts with the names the metrics label them with.
    pub fn labelled(&self) -> [(&'static str, u64); CLASSES] {
        [
            ("heartbeat", self.heartbeat),
            ("message", self.message),
            ("login", self.login),
            ("error", self.error),
            ("goaway", self.goaway),
            ("reserved", self.reserved),
            ("application", self.application),
        ]
    }
}

/// How long application handlers took: a histogram over
/// [`LATENCY_BOUNDS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandlerLatency {
    /// Calls per bucket (not cumulative): bucket `i` counts the calls that
    /// took more than bound `i - 1` and at most bound `i`; the last, those
    /// longer than every bound.
    pub buckets: [u64; LATENCY_BUCKETS],
    /// Calls recorded.
    pub count: u64,
    /// Their time together.
    pub sum: Duration,
}

/// Errors a server met, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorCounts {
    /// Connections refused with `server busy` (connection limit).
    pub busy: u64,
    /// Streams closed for a protocol error (bad magic, version, body too large).
    pub protocol: u64,
    /// Connections closed because a frame did not arrive in time.
    pub read_timeout: u64,
    /// Connections closed because the peer did not take its replies.
    pub write_timeout: u64,
    /// Handler errors and panics (answered with ERROR).
    pub handler: u64,
    /// Failed logins.
    pub login: u64,
    /// Reads or writes that failed (resets and the like).
    pub io: u64,
    /// Connections to a TLS port closed before their handshake finished:
    /// failed or late handshakes, plaintext clients, garbage.
    pub tls: u64,
}

impl ErrorCounts {
    /// The counts with the names the metrics label them with and the
    /// bindings key them by.
    pub fn labelled(&self) -> [(&'static str, u64); 8] {
        [
            ("busy", self.busy),
            ("protocol", self.protocol),
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("handler", self.handler),
            ("login", self.login),
            ("io", self.io),
            ("tls", self.tls),
        ]
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.errors;
        write!(
            f,
            "connections={} accepted={} frames_in={} frames_out={} bytes_buffered={} memory_budget={} \
             tls_handshakes={} proxy_headers={} errors: busy={} protocol={} read_timeout={} write_timeout={} handler={} login={} io={} tls={} proxy_refused={}",
            self.connections,
            self.connections_accepted,
            self.frames_in,
            self.frames_out,
            self.bytes_buffered,
            self.memory_budget,
            self.tls_handshakes,
            self.proxy_headers,
            e.busy,
            e.protocol,
            e.read_timeout,
            e.write_timeout,
            e.handler,
            e.login,
            e.io,
            e.tls,
            self.proxy_refused
        )
    }
}
