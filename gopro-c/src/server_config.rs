//! Server settings: `gopro_server_config_*`, over the core's
//! `ServerBuilder`.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use bytes::Bytes;
use gopro::server::{Server, ServerBuilder};
use gopro::settings::ServerSetting;
use gopro::tls::ServerTls;

use crate::callback::{gopro_authenticate_fn, gopro_handler_fn, Callback};
use crate::ffi;
use crate::status::{gopro_status, Fail};
use crate::tls::gopro_tls_config;

/// Server settings, made by `gopro_server_config_new` and freed by
/// `gopro_server_config_free`; `gopro_server_start` copies them, so a config
/// may be freed, changed or reused once a server has started. One thread at
/// a time.
pub struct gopro_server_config {
    pub(crate) builder: ServerBuilder,
    /// The TLS settings given to the builder too: the server keeps this
    /// clone (which shares the certificate) to reload it.
    pub(crate) tls: Option<ServerTls>,
}

/// Creates server settings with the defaults of the Rust `ServerBuilder`
/// (the `GOPRO_DEFAULT_*` defines): read timeout
/// `GOPRO_DEFAULT_READ_TIMEOUT_MS`, write timeout
/// `GOPRO_DEFAULT_WRITE_TIMEOUT_MS`, body limit `GOPRO_DEFAULT_MAX_BODY`,
/// `GOPRO_DEFAULT_MAX_CONNECTIONS` connections, grace
/// `GOPRO_DEFAULT_GRACE_MS`, `GOPRO_DEFAULT_PRELOGIN_MAX_BODY` before LOGIN
/// with an authenticator, `GOPRO_DEFAULT_MAX_LOGIN_FAILURES` failed LOGINs,
/// `GOPRO_DEFAULT_MAX_BUFFERED_REPLIES` reply bytes buffered per
/// connection, memory budget `GOPRO_DEFAULT_MEMORY_BUDGET`, the open-files
/// limit raised, no SO_REUSEPORT; HEARTBEAT echoed, MESSAGE answered `"Server says: "` +
/// body, every LOGIN accepted. The caller frees it with
/// `gopro_server_config_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_new(
    out: *mut *mut gopro_server_config,
) -> gopro_status {
    ffi_boundary!({
        let out = ffi::out(out, "out")?;
        out.write(ffi::into_handle(gopro_server_config {
            builder: Server::builder(),
            tls: None,
        }));
        Ok(())
    })
}

/// How long a whole frame may take to arrive, counted from the end of the
/// previous one (or from accept), in milliseconds (more than 0). Idle and
/// slow-drip connections are closed when it passes.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_read_timeout(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, Some(ServerSetting::ReadTimeout), |b| {
        Ok(b.read_timeout(Duration::from_millis(ms)))
    })
}

/// How long a peer may take to accept a batch of replies before its
/// connection is closed, in milliseconds (more than 0).
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_write_timeout(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, Some(ServerSetting::WriteTimeout), |b| {
        Ok(b.write_timeout(Duration::from_millis(ms)))
    })
}

/// The largest body accepted in a request and sent in a reply.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_body(
    config: *mut gopro_server_config,
    max_body: usize,
) -> gopro_status {
    set(config, Some(ServerSetting::MaxBody), |b| {
        Ok(b.max_body(max_body))
    })
}

/// Connections served at once (at least 1); more are answered ERROR
/// `server busy` and closed.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_connections(
    config: *mut gopro_server_config,
    max: usize,
) -> gopro_status {
    set(config, Some(ServerSetting::MaxConnections), |b| {
        Ok(b.max_connections(max))
    })
}

/// How long `gopro_server_stop` lets connections finish their frames before
/// closing them, in milliseconds.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_grace(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, Some(ServerSetting::Grace), |b| {
        Ok(b.grace(Duration::from_millis(ms)))
    })
}

/// The body limit before a successful LOGIN (only with an authenticator).
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_prelogin_max_body(
    config: *mut gopro_server_config,
    max_body: usize,
) -> gopro_status {
    set(config, Some(ServerSetting::PreloginMaxBody), |b| {
        Ok(b.prelogin_max_body(max_body))
    })
}

/// Failed LOGINs in a row after which the connection is closed.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_login_failures(
    config: *mut gopro_server_config,
    max: u32,
) -> gopro_status {
    set(config, Some(ServerSetting::MaxLoginFailures), |b| {
        Ok(b.max_login_failures(max))
    })
}

/// Bytes the server may hold for frames and replies, all connections
/// together, beyond the one pooled buffer (8 KiB) each active connection
/// reads into (default `GOPRO_DEFAULT_MEMORY_BUDGET`). A frame too large for that buffer is
/// claimed whole from the budget before more of it is read; while the
/// budget cannot cover it, its connection is not read from (TCP holds the
/// peer back), and claims are granted in order. Must be at least the body
/// limit + 8 (`gopro_server_config_set_max_body` + `GOPRO_HEADER_LEN`), so
/// that any frame can be received: otherwise `gopro_server_start` fails
/// with `GOPRO_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_memory_budget(
    config: *mut gopro_server_config,
    bytes: usize,
) -> gopro_status {
    // Checked by gopro_server_start, against the body limit then in force:
    // the two may be set in either order.
    set(config, None, |b| Ok(b.memory_budget(bytes)))
}

/// Reply bytes a connection buffers before it writes them out (default
/// `GOPRO_DEFAULT_MAX_BUFFERED_REPLIES`); while they are written no further
/// request of that connection is handled. A single larger reply is written
/// on its own, so any value works, a small one at the cost of more writes.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_buffered_replies(
    config: *mut gopro_server_config,
    max: usize,
) -> gopro_status {
    set(config, Some(ServerSetting::MaxBufferedReplies), |b| {
        Ok(b.max_buffered_replies(max))
    })
}

/// Whether `gopro_server_start` raises the process's open-files soft limit
/// to its hard limit, so that many connections can be served (default
/// `GOPRO_DEFAULT_RAISE_NOFILE_LIMIT`, true). Pass false when the application manages that limit itself.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_raise_nofile_limit(
    config: *mut gopro_server_config,
    raise: bool,
) -> gopro_status {
    set(config, Some(ServerSetting::RaiseNofileLimit), |b| {
        Ok(b.raise_nofile_limit(raise))
    })
}

/// Whether `gopro_server_start` binds its address with SO_REUSEPORT
/// (default `GOPRO_DEFAULT_REUSE_PORT`, false). On, several servers (in
/// one process or several) can listen on one port and Linux spreads new
/// connections among them, e.g. to start a new version before stopping the
/// old; every one of them must set it. Off, a port in use fails
/// `gopro_server_start` with `GOPRO_STATUS_BIND_FAILED`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_reuse_port(
    config: *mut gopro_server_config,
    on: bool,
) -> gopro_status {
    set(config, Some(ServerSetting::ReusePort), |b| {
        Ok(b.reuse_port(on))
    })
}

/// Speaks TLS on every connection with the settings of `tls`: its
/// certificate and key (required: else `GOPRO_STATUS_TLS_CONFIG`) are the
/// server's; its CA, if set, is the CA client certificates must chain to,
/// required or optional as `gopro_tls_config_set_client_auth` says. A
/// client must finish its handshake within the TLS handshake timeout; a
/// plaintext GoPro client gets an ERROR `this port requires TLS` and is
/// closed. The settings are copied (the files read again now), so `tls`
/// may be freed afterwards; a refused one leaves the config as it was.
/// Handlers learn who a client certificate names with
/// `gopro_connection_client_common_name` and
/// `gopro_connection_client_subject`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_tls(
    config: *mut gopro_server_config,
    tls: *const gopro_tls_config,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        let tls = unsafe { ffi::handle(tls, "tls") }?.server()?;
        let next = c.builder.clone().tls(tls.clone());
        next.check(ServerSetting::Tls)?;
        c.builder = next;
        c.tls = Some(tls);
        Ok(())
    })
}

/// How long a TLS client has to finish its handshake, in milliseconds
/// (more than 0; default `GOPRO_DEFAULT_TLS_HANDSHAKE_TIMEOUT_MS`); one
/// that is late is closed and counted in `errors_tls`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_tls_handshake_timeout(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, Some(ServerSetting::TlsHandshakeTimeout), |b| {
        Ok(b.tls_handshake_timeout(Duration::from_millis(ms)))
    })
}

/// Runs behind a balancer that speaks the PROXY protocol (v1 or v2, as
/// HAProxy's `send-proxy-v2` and nginx's `proxy_protocol on`): `trusted` is
/// a comma-separated list of the balancers' addresses or networks
/// (`"127.0.0.1/32,10.0.0.0/8"`, `"::1"`; NUL-terminated). Only they may
/// connect, and each of their connections must start with a PROXY header
/// within the read timeout; anybody else, and a missing or invalid header,
/// is closed without a reply and counted in `errors_proxy`. The client's
/// address the header gives is what `gopro_connection_peer` returns (and
/// the address it connected to, `gopro_connection_local`); a v2 LOCAL or
/// v1 UNKNOWN header (a health check) keeps the balancer's. A later call
/// replaces the list. An empty list or an item that is not an address or a
/// network gives `GOPRO_STATUS_INVALID_ARGUMENT` with the item named, and
/// leaves the config as it was.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_proxy_protocol(
    config: *mut gopro_server_config,
    trusted: *const c_char,
) -> gopro_status {
    set(config, Some(ServerSetting::ProxyProtocol), |b| {
        let trusted = unsafe { ffi::str(trusted, "trusted") }?;
        // The core trims each item and refuses an empty list with its own
        // message, so "" is that list rather than one empty item.
        let items = trusted.split(',').filter(|_| !trusted.is_empty());
        Ok(b.proxy_protocol(items))
    })
}

/// Routes request frames with command `command` to `handler`, called with
/// `user_data` (see `gopro_handler_fn` for the threads it runs on). Commands
/// 16–255 are the application's; HEARTBEAT (0) and MESSAGE (1) may be
/// overridden; others give `GOPRO_STATUS_INVALID_ARGUMENT`. Registering a
/// command again replaces its handler. `user_data` is not owned by the
/// library and must stay valid until the server using it has been stopped.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_handler(
    config: *mut gopro_server_config,
    command: u8,
    handler: gopro_handler_fn,
    user_data: *mut c_void,
) -> gopro_status {
    set(config, Some(ServerSetting::Handler), |b| {
        let f = handler.ok_or_else(|| Fail::null("handler"))?;
        Ok(b.handler(command, Callback { f, user_data }))
    })
}

/// Requires a successful LOGIN, checked by `authenticate` with `user_data`,
/// before any command but HEARTBEAT and LOGIN (SPEC §3). `user_data`: as
/// for `gopro_server_config_set_handler`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_authenticator(
    config: *mut gopro_server_config,
    authenticate: gopro_authenticate_fn,
    user_data: *mut c_void,
) -> gopro_status {
    set(config, Some(ServerSetting::Authenticator), |b| {
        let f = authenticate.ok_or_else(|| Fail::null("authenticate"))?;
        let callback = Callback { f, user_data };
        Ok(b.authenticator(move |credentials: Bytes| {
            std::future::ready(callback.call(&credentials))
        }))
    })
}

/// Serves the server's counters in the Prometheus text format at
/// `http://ADDR/metrics`, on a port of its own, while the server runs (off
/// by default). `addr` is `"host:port"`, NUL-terminated, and copied; port 0
/// picks a free port, which `gopro_server_metrics_port` tells. An address
/// that cannot be bound makes `gopro_server_start` fail with
/// `GOPRO_STATUS_BIND_FAILED`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_metrics_listen(
    config: *mut gopro_server_config,
    addr: *const c_char,
) -> gopro_status {
    set(config, Some(ServerSetting::MetricsListen), |b| {
        let addr = unsafe { ffi::str(addr, "addr") }?;
        Ok(b.metrics_listen(addr))
    })
}

/// How many scrapes the metrics port serves at once (at least 1; default
/// `GOPRO_DEFAULT_METRICS_MAX_SCRAPERS`, 64): a connection beyond them is
/// closed at once.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_metrics_max_scrapers(
    config: *mut gopro_server_config,
    max: usize,
) -> gopro_status {
    set(config, Some(ServerSetting::MetricsMaxScrapers), |b| {
        Ok(b.metrics_max_scrapers(max))
    })
}

/// How long a metrics scraper has to send a request's headers, in
/// milliseconds, from its connection (or its previous response) on (more
/// than 0; default `GOPRO_DEFAULT_METRICS_HEADER_TIMEOUT_MS`); then its
/// connection is closed.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_metrics_header_timeout(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, Some(ServerSetting::MetricsHeaderTimeout), |b| {
        Ok(b.metrics_header_timeout(Duration::from_millis(ms)))
    })
}

/// Frees server settings. NULL is ignored. Servers started with them are
/// not affected.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_free(config: *mut gopro_server_config) {
    ffi_boundary_void!(unsafe { ffi::free_handle(config) })
}

/// Applies one setting to a copy of the builder and keeps it if the core's
/// rule for that setting (`ServerBuilder::check`) accepts it; a refused
/// value leaves the config as it was. `None` for a setting whose rule ties
/// it to another, checked by `gopro_server_start`.
fn set(
    config: *mut gopro_server_config,
    setting: Option<ServerSetting>,
    f: impl FnOnce(ServerBuilder) -> Result<ServerBuilder, Fail>,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        let next = f(c.builder.clone())?;
        if let Some(setting) = setting {
            next.check(setting)?;
        }
        c.builder = next;
        Ok(())
    })
}
