//! What a running server has done: connections, frames, bytes held, errors.
//!
//! Connections count frames in plain fields and add them here once per
//! batch, so the per-frame path touches no shared cache line.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::budget::Budget;

/// The counters every connection of one server adds to.
#[derive(Default)]
pub(crate) struct Counters {
    pub open: AtomicUsize,
    pub accepted: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub busy: AtomicU64,
    pub protocol: AtomicU64,
    pub read_timeout: AtomicU64,
    pub write_timeout: AtomicU64,
    pub handler: AtomicU64,
    pub login: AtomicU64,
    pub io: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls: AtomicU64,
    pub proxy_ok: AtomicU64,
    pub proxy_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
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
        Stats {
            connections: c.open.load(Ordering::Relaxed),
            connections_accepted: get(&c.accepted),
            frames_in: get(&c.frames_in),
            frames_out: get(&c.frames_out),
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
                proxy: get(&c.proxy_refused),
            },
            tls_handshakes: get(&c.tls_handshakes),
            proxy_headers: get(&c.proxy_ok),
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
    /// Bytes held for frames and replies beyond each connection's pooled
    /// buffer: what the memory budget counts.
    pub bytes_buffered: usize,
    /// The memory budget.
    pub memory_budget: usize,
    /// Errors, by kind.
    pub errors: ErrorCounts,
    /// TLS handshakes completed (on a TLS port).
    pub tls_handshakes: u64,
    /// PROXY headers accepted (with the PROXY protocol on).
    pub proxy_headers: u64,
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
    /// Connections refused for the PROXY protocol: from an untrusted
    /// address, without a valid header, or not in time.
    pub proxy: u64,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.errors;
        write!(
            f,
            "connections={} accepted={} frames_in={} frames_out={} bytes_buffered={} memory_budget={} \
             tls_handshakes={} proxy_headers={} errors: busy={} protocol={} read_timeout={} write_timeout={} handler={} login={} io={} tls={} proxy={}",
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
            e.proxy
        )
    }
}
