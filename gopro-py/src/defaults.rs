//! The defaults of the Python signatures, each taken from the core's
//! constant, in the unit Python gives it (seconds as a float).
//!
//! pyo3 writes a default that is not a literal as `...` in the text
//! signature that `inspect.signature` reads, so the values are also given
//! to Python as `gopro._gopro._DEFAULTS` (parameter name to value), from
//! these same constants: the stub test compares the stub's literal
//! defaults with them.

use pyo3::prelude::*;
use pyo3::types::PyDict;

/// The address a server listens on, and a client connects to.
pub(crate) const LISTEN: &str = gopro::server::DEFAULT_LISTEN;
/// The body limit of the codec, the clients and the server.
pub(crate) const MAX_BODY: usize = gopro::DEFAULT_MAX_BODY;
/// A client call's time allowed, in seconds.
pub(crate) const TIMEOUT: f64 = gopro::client::DEFAULT_TIMEOUT.as_secs_f64();
/// A client's time allowed to connect, in seconds.
pub(crate) const CONNECT_TIMEOUT: f64 = gopro::client::DEFAULT_CONNECT_TIMEOUT.as_secs_f64();
/// A client's bound on requests in flight.
pub(crate) const MAX_IN_FLIGHT: usize = gopro::client::DEFAULT_MAX_IN_FLIGHT;
/// A client's bound on the bytes of requests in flight.
pub(crate) const MAX_QUEUED_BYTES: usize = gopro::client::DEFAULT_MAX_QUEUED_BYTES;
/// A client's first wait between reconnection attempts, in seconds.
pub(crate) const RECONNECT_DELAY: f64 = gopro::client::DEFAULT_RECONNECT_DELAY.as_secs_f64();
/// A client's longest wait between reconnection attempts, in seconds.
pub(crate) const RECONNECT_MAX_DELAY: f64 =
    gopro::client::DEFAULT_RECONNECT_MAX_DELAY.as_secs_f64();
/// A server's read timeout, in seconds.
pub(crate) const READ_TIMEOUT: f64 = gopro::server::DEFAULT_READ_TIMEOUT.as_secs_f64();
/// A server's write timeout, in seconds.
pub(crate) const WRITE_TIMEOUT: f64 = gopro::server::DEFAULT_WRITE_TIMEOUT.as_secs_f64();
/// A server's shutdown grace period, in seconds.
pub(crate) const GRACE: f64 = gopro::server::DEFAULT_GRACE.as_secs_f64();
/// Connections a server serves at once.
pub(crate) const MAX_CONNECTIONS: usize = gopro::server::DEFAULT_MAX_CONNECTIONS;
/// A server's body limit before LOGIN.
pub(crate) const PRELOGIN_MAX_BODY: usize = gopro::server::DEFAULT_PRELOGIN_MAX_BODY;
/// Failed LOGINs in a row before a server closes the connection.
pub(crate) const MAX_LOGIN_FAILURES: u32 = gopro::server::DEFAULT_MAX_LOGIN_FAILURES;
/// Reply bytes a connection buffers before writing them out.
pub(crate) const MAX_BUFFERED_REPLIES: usize = gopro::server::DEFAULT_MAX_BUFFERED_REPLIES;
/// A server's memory budget, in bytes.
pub(crate) const MEMORY_BUDGET: usize = gopro::server::DEFAULT_MEMORY_BUDGET;
/// A server's time allowed for a TLS handshake, in seconds.
pub(crate) const TLS_HANDSHAKE_TIMEOUT: f64 =
    gopro::server::DEFAULT_TLS_HANDSHAKE_TIMEOUT.as_secs_f64();
/// Scrapes a server's metrics port serves at once.
pub(crate) const METRICS_MAX_SCRAPERS: usize = gopro::server::DEFAULT_METRICS_MAX_SCRAPERS;
/// A metrics scraper's time allowed for its request's headers, in seconds.
pub(crate) const METRICS_HEADER_TIMEOUT: f64 =
    gopro::server::DEFAULT_METRICS_HEADER_TIMEOUT.as_secs_f64();

/// Whether a server raises its open-files soft limit to the hard limit.
pub(crate) const RAISE_NOFILE_LIMIT: bool = gopro::server::DEFAULT_RAISE_NOFILE_LIMIT;

/// Whether a server binds its address with SO_REUSEPORT.
pub(crate) const REUSE_PORT: bool = gopro::server::DEFAULT_REUSE_PORT;

/// `_DEFAULTS`: every default above by the name of the parameters it is
/// the default of.
pub(crate) fn table(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("addr", LISTEN)?;
    dict.set_item("listen", LISTEN)?;
    dict.set_item("max_body", MAX_BODY)?;
    dict.set_item("version", gopro::VERSION)?;
    dict.set_item("timeout", TIMEOUT)?;
    dict.set_item("connect_timeout", CONNECT_TIMEOUT)?;
    dict.set_item("max_in_flight", MAX_IN_FLIGHT)?;
    dict.set_item("max_queued_bytes", MAX_QUEUED_BYTES)?;
    dict.set_item("reconnect_delay", RECONNECT_DELAY)?;
    dict.set_item("reconnect_max_delay", RECONNECT_MAX_DELAY)?;
    dict.set_item("reconnect", false)?;
    dict.set_item("read_timeout", READ_TIMEOUT)?;
    dict.set_item("write_timeout", WRITE_TIMEOUT)?;
    dict.set_item("grace", GRACE)?;
    dict.set_item("max_connections", MAX_CONNECTIONS)?;
    dict.set_item("prelogin_max_body", PRELOGIN_MAX_BODY)?;
    dict.set_item("max_login_failures", MAX_LOGIN_FAILURES)?;
    dict.set_item("max_buffered_replies", MAX_BUFFERED_REPLIES)?;
    dict.set_item("memory_budget", MEMORY_BUDGET)?;
    dict.set_item("raise_nofile_limit", RAISE_NOFILE_LIMIT)?;
    dict.set_item("reuse_port", REUSE_PORT)?;
    dict.set_item("tls_handshake_timeout", TLS_HANDSHAKE_TIMEOUT)?;
    dict.set_item("metrics_max_scrapers", METRICS_MAX_SCRAPERS)?;
    dict.set_item("metrics_header_timeout", METRICS_HEADER_TIMEOUT)?;
    dict.set_item(
        "client_auth",
        crate::tls::client_auth_name(gopro::tls::ClientAuth::default()),
    )?;
    Ok(dict)
}
