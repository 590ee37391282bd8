//! The defaults of the core, as `GOPRO_DEFAULT_*` defines in the header.
//!
//! cbindgen writes a define only for a literal, so each value is written
//! here once as one, and checked at compile time against the core's
//! constant: a change of a default in the core fails this build instead of
//! leaving the header stale. Durations are in milliseconds.

/// The default body limit: 10 MiB. A body of exactly this size is accepted.
pub const GOPRO_DEFAULT_MAX_BODY: usize = 10485760;

/// The server's default read timeout (ms): a whole frame must arrive within it.
pub const GOPRO_DEFAULT_READ_TIMEOUT_MS: u64 = 60000;
/// The server's default write timeout (ms): a batch of replies must be taken within it.
pub const GOPRO_DEFAULT_WRITE_TIMEOUT_MS: u64 = 10000;
/// The server's default shutdown grace period (ms).
pub const GOPRO_DEFAULT_GRACE_MS: u64 = 10000;
/// The server's default number of connections served at once.
pub const GOPRO_DEFAULT_MAX_CONNECTIONS: usize = 10000;
/// The server's default body limit before a successful LOGIN (with an
/// authenticator): 16 KiB.
pub const GOPRO_DEFAULT_PRELOGIN_MAX_BODY: usize = 16384;
/// The server's default number of failed LOGINs in a row before it closes
/// the connection.
pub const GOPRO_DEFAULT_MAX_LOGIN_FAILURES: u32 = 3;
/// The server's default reply bytes buffered per connection before they are
/// written out: 1 MiB.
pub const GOPRO_DEFAULT_MAX_BUFFERED_REPLIES: usize = 1048576;
/// The server's default memory budget: 256 MiB.
pub const GOPRO_DEFAULT_MEMORY_BUDGET: usize = 268435456;
/// The server's default time a TLS client has to finish its handshake (ms).
pub const GOPRO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10000;
/// The server's default number of scrapes its metrics port serves at once.
pub const GOPRO_DEFAULT_METRICS_MAX_SCRAPERS: usize = 64;
/// The server's default time a metrics scraper has to send its request's
/// headers (ms).
pub const GOPRO_DEFAULT_METRICS_HEADER_TIMEOUT_MS: u64 = 10000;

/// The client's default time allowed to connect (ms).
pub const GOPRO_DEFAULT_CONNECT_TIMEOUT_MS: u32 = 10000;
/// The client's default time allowed for each later call (ms).
pub const GOPRO_DEFAULT_TIMEOUT_MS: u32 = 30000;
/// The client's default bound on requests in flight on its connection.
pub const GOPRO_DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// The client's default bound on the bytes of requests in flight: 16 MiB.
pub const GOPRO_DEFAULT_MAX_QUEUED_BYTES: usize = 16777216;
/// The client's default wait before its second reconnection attempt (ms);
/// each later wait doubles, with jitter.
pub const GOPRO_DEFAULT_RECONNECT_DELAY_MS: u64 = 100;
/// The client's default longest wait between reconnection attempts (ms).
pub const GOPRO_DEFAULT_RECONNECT_MAX_DELAY_MS: u64 = 2000;

/// Whether `gopro_server_start` raises the open-files soft limit to the
/// hard limit unless told otherwise (`gopro_server_config_set_raise_nofile_limit`).
pub const GOPRO_DEFAULT_RAISE_NOFILE_LIMIT: bool = true;

/// Whether `gopro_server_start` binds with SO_REUSEPORT unless told
/// otherwise (`gopro_server_config_set_reuse_port`).
pub const GOPRO_DEFAULT_REUSE_PORT: bool = false;

const _: () = assert!(GOPRO_DEFAULT_MAX_BODY == gopro::DEFAULT_MAX_BODY);

#[cfg(feature = "runtime")]
const _: () = {
    use gopro::{client, server};
    assert!(GOPRO_DEFAULT_READ_TIMEOUT_MS as u128 == server::DEFAULT_READ_TIMEOUT.as_millis());
    assert!(GOPRO_DEFAULT_WRITE_TIMEOUT_MS as u128 == server::DEFAULT_WRITE_TIMEOUT.as_millis());
    assert!(GOPRO_DEFAULT_GRACE_MS as u128 == server::DEFAULT_GRACE.as_millis());
    assert!(GOPRO_DEFAULT_MAX_CONNECTIONS == server::DEFAULT_MAX_CONNECTIONS);
    assert!(GOPRO_DEFAULT_PRELOGIN_MAX_BODY == server::DEFAULT_PRELOGIN_MAX_BODY);
    assert!(GOPRO_DEFAULT_MAX_LOGIN_FAILURES == server::DEFAULT_MAX_LOGIN_FAILURES);
    assert!(GOPRO_DEFAULT_MAX_BUFFERED_REPLIES == server::DEFAULT_MAX_BUFFERED_REPLIES);
    assert!(GOPRO_DEFAULT_MEMORY_BUDGET == server::DEFAULT_MEMORY_BUDGET);
    assert!(GOPRO_DEFAULT_RAISE_NOFILE_LIMIT == server::DEFAULT_RAISE_NOFILE_LIMIT);
    assert!(GOPRO_DEFAULT_REUSE_PORT == server::DEFAULT_REUSE_PORT);
    assert!(GOPRO_DEFAULT_METRICS_MAX_SCRAPERS == server::DEFAULT_METRICS_MAX_SCRAPERS);
    assert!(
        GOPRO_DEFAULT_METRICS_HEADER_TIMEOUT_MS as u128
            == server::DEFAULT_METRICS_HEADER_TIMEOUT.as_millis()
    );
    assert!(
        GOPRO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS as u128
            == server::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_millis()
    );
    assert!(
        GOPRO_DEFAULT_CONNECT_TIMEOUT_MS as u128 == client::DEFAULT_CONNECT_TIMEOUT.as_millis()
    );
    assert!(GOPRO_DEFAULT_TIMEOUT_MS as u128 == client::DEFAULT_TIMEOUT.as_millis());
    assert!(GOPRO_DEFAULT_MAX_IN_FLIGHT == client::DEFAULT_MAX_IN_FLIGHT);
    assert!(GOPRO_DEFAULT_MAX_QUEUED_BYTES == client::DEFAULT_MAX_QUEUED_BYTES);
    assert!(
        GOPRO_DEFAULT_RECONNECT_DELAY_MS as u128 == client::DEFAULT_RECONNECT_DELAY.as_millis()
    );
    assert!(
        GOPRO_DEFAULT_RECONNECT_MAX_DELAY_MS as u128
            == client::DEFAULT_RECONNECT_MAX_DELAY.as_millis()
    );
};
