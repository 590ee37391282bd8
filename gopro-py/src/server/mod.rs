//! `Server`: the core's tokio server with Python handlers.
//!
//! Plain-function handlers are called on the server's worker threads, with
//! the GIL taken for the call. `async def` handlers (anything returning an
//! awaitable) run on an asyncio loop: the serving loop when the server is
//! served from asyncio (`async with server`, `await server.serve()`), else a
//! loop thread the server starts when the first coroutine needs it and
//! stops after its last connection has finished.

//! The files, a file per idea:
//!
//! - `handlers`: a Python handler called for a frame (the hot path) and
//!   the LOGIN check, their results as replies, their exceptions logged;
//! - `loop_thread`: where coroutine handlers run (`gopro._loop`);
//! - `info`: `current_connection()`, for handlers and the authenticator;
//! - `lifecycle`: binding on the server's thread, starting, stopping;
//! - `methods`: the Python surface (`#[pymethods]`).

mod handlers;
mod info;
mod lifecycle;
mod loop_thread;
mod methods;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use gopro::server::{ServerBuilder, ShutdownHandle, StatsHandle};
use pyo3::prelude::*;
use tokio::sync::watch;

pub(crate) use info::{current_connection, ConnectionInfo};

/// A server that has been started: how to stop it and when it has stopped.
struct Running {
    handle: ShutdownHandle,
    done: watch::Receiver<bool>,
}

/// Where a `Server` is in its life; it may be started again once stopped.
enum Phase {
    Idle,
    /// Binding; a shutdown asked for meanwhile is applied right after.
    Starting {
        shutdown: bool,
    },
    Running(Running),
}

/// What a `Server` holds behind its lock.
struct State {
    handlers: Vec<(u8, Arc<Py<PyAny>>)>,
    authenticator: Option<Arc<Py<PyAny>>>,
    phase: Phase,
    local_addr: Option<SocketAddr>,
    /// Where the last start serves its metrics, with `metrics_listen`.
    metrics_addr: Option<SocketAddr>,
    /// The counters of the last server started; readable after it stops.
    stats: Option<StatsHandle>,
}

/// A GoPro server with handlers written in Python.
///
/// `Server(listen, *, reuse_port, read_timeout, write_timeout, max_body,
/// max_connections, grace, prelogin_max_body, max_login_failures,
/// max_buffered_replies, memory_budget, raise_nofile_limit, tls,
/// tls_handshake_timeout, metrics_listen, metrics_max_scrapers,
/// metrics_header_timeout, proxy_protocol)`: the settings of the core's
/// `ServerBuilder`, with its defaults (times in seconds; `grace=0` stops at
/// once). `reuse_port`: bind with SO_REUSEPORT, so that several servers
/// (each with it on, in one process or several) listen on one port and
/// Linux spreads new connections among them; off, a port in use raises
/// `BindError` from `start`. `raise_nofile_limit`: whether binding raises
/// the open-files soft limit to the hard limit. `tls`: a `TlsServerConfig`, and the port speaks
/// TLS only (a plaintext client is told so in an ERROR and closed);
/// `tls_handshake_timeout` bounds each handshake. `metrics_listen`:
/// "host:port" to serve Prometheus metrics on at `/metrics`, to at most
/// `metrics_max_scrapers` scrapes at once (one more is closed), each
/// closed unless its request's headers come within
/// `metrics_header_timeout`. `proxy_protocol`: behind
/// a balancer speaking the PROXY protocol (v1 or v2), a list of its
/// addresses or networks (`["10.0.0.0/8", "127.0.0.1"]`; a lone str raises
/// `TypeError`): only they may connect, each connection starting with a
/// PROXY header, and `current_connection().peer` is the client the header
/// names. Refused settings raise `ConfigError` from the constructor (the
/// core's rules), with `.setting`.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Server {
    /// The address asked for, as given.
    listen: String,
    /// The settings; each start clones it and adds the Python handlers.
    base: ServerBuilder,
    /// The TLS settings in `base`, kept to reload the certificate: clones
    /// share it.
    tls: Option<gopro::tls::ServerTls>,
    state: Mutex<State>,
}
