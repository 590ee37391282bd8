//! Client settings: `gopro_client_config_*`, over the core's
//! `ClientBuilder`, and `gopro_client_connect_with`, which connects with
//! them. A config can grow a setting without changing any signature, as
//! `gopro_client_connect`'s arguments cannot.

use std::ffi::c_char;
use std::time::Duration;

use gopro::client::ClientBuilder;
use gopro::settings::ClientSetting;

use crate::client::gopro_client;
use crate::ffi;
use crate::status::gopro_status;
use crate::tls::gopro_tls_config;

/// Settings are in milliseconds in C.
fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// Client settings, made by `gopro_client_config_new` and freed by
/// `gopro_client_config_free`; `gopro_client_connect_with` copies them, so a
/// config may be freed, changed or reused once a client is connected. One
/// thread at a time.
pub struct gopro_client_config {
    builder: ClientBuilder,
    /// The servers' addresses, tried in turn.
    addrs: Vec<String>,
}

/// Creates client settings with the defaults of the Rust `ClientBuilder`:
/// connect timeout `GOPRO_DEFAULT_CONNECT_TIMEOUT_MS`, call timeout
/// `GOPRO_DEFAULT_TIMEOUT_MS`, body limit `GOPRO_DEFAULT_MAX_BODY`, no
/// keep-alive, `GOPRO_DEFAULT_MAX_IN_FLIGHT` requests and
/// `GOPRO_DEFAULT_MAX_QUEUED_BYTES` bytes in flight, no reconnection, no
/// login, and no address (add one with `gopro_client_config_add_address`).
/// The caller frees it with `gopro_client_config_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_new(
    out: *mut *mut gopro_client_config,
) -> gopro_status {
    ffi_boundary!({
        let out = ffi::out(out, "out")?;
        out.write(ffi::into_handle(gopro_client_config {
            builder: ClientBuilder::default(),
            addrs: Vec::new(),
        }));
        Ok(())
    })
}

/// Time allowed to connect, in milliseconds (more than 0).
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_connect_timeout(
    config: *mut gopro_client_config,
    value: u64,
) -> gopro_status {
    set(config, ClientSetting::ConnectTimeout, |b| {
        b.connect_timeout(ms(value))
    })
}

/// Time allowed for every call on the client (waiting for room, writing the
/// request and reading its reply), in milliseconds (more than 0). A call
/// that runs out of time returns `GOPRO_STATUS_TIMEOUT` and leaves the
/// connection to the other callers: its reply is discarded when it comes.
/// The connection is given up (`GOPRO_STATUS_CONNECTION_LOST` for the
/// requests in flight) only when the server leaves its oldest request
/// unanswered for a tenth longer than this.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_timeout(
    config: *mut gopro_client_config,
    value: u64,
) -> gopro_status {
    set(config, ClientSetting::Timeout, |b| b.timeout(ms(value)))
}

/// The largest body sent or accepted.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_max_body(
    config: *mut gopro_client_config,
    max_body: usize,
) -> gopro_status {
    set(config, ClientSetting::MaxBody, |b| b.max_body(max_body))
}

/// Sends a HEARTBEAT whenever the connection has been quiet for `ms`
/// milliseconds (more than 0); choose it below the server's read timeout.
/// Off unless set.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_keep_alive(
    config: *mut gopro_client_config,
    value: u64,
) -> gopro_status {
    set(config, ClientSetting::KeepAlive, |b| {
        b.keep_alive(ms(value))
    })
}

/// The largest number of requests in flight (written or queued, without a
/// reply yet) at once; more callers wait (`gopro_client_request`,
/// `gopro_client_submit`) within their timeout. At least 1.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_max_in_flight(
    config: *mut gopro_client_config,
    requests: usize,
) -> gopro_status {
    set(config, ClientSetting::MaxInFlight, |b| {
        b.max_in_flight(requests)
    })
}

/// The largest number of bytes of requests in flight at once (a request
/// larger than that goes alone); more callers wait. At least
/// `GOPRO_HEADER_LEN`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_max_queued_bytes(
    config: *mut gopro_client_config,
    bytes: usize,
) -> gopro_status {
    set(config, ClientSetting::MaxQueuedBytes, |b| {
        b.max_queued_bytes(bytes)
    })
}

/// Reconnects after the connection is lost (`on` true; off by default),
/// with exponential back-off and jitter: the first attempt at once, then
/// after about `GOPRO_DEFAULT_RECONNECT_DELAY_MS`, doubling up to
/// `GOPRO_DEFAULT_RECONNECT_MAX_DELAY_MS`. Meanwhile calls wait within
/// their timeout. Requests a server left unanswered with a GOAWAY are sent
/// again on the new connection; those in flight when a connection is lost
/// otherwise fail with `GOPRO_STATUS_CONNECTION_LOST` (they may have been
/// handled), unless their command was made repeatable
/// (`gopro_client_config_add_repeatable`).
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_reconnect(
    config: *mut gopro_client_config,
    on: bool,
) -> gopro_status {
    set(config, ClientSetting::Reconnect, |b| b.reconnect(on))
}

/// The wait before the second reconnection attempt, in milliseconds (more
/// than 0); each later wait doubles, with jitter.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_reconnect_delay(
    config: *mut gopro_client_config,
    value: u64,
) -> gopro_status {
    set(config, ClientSetting::ReconnectDelay, |b| {
        b.reconnect_delay(ms(value))
    })
}

/// The longest wait between reconnection attempts, in milliseconds (at
/// least the reconnect delay).
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_reconnect_max_delay(
    config: *mut gopro_client_config,
    value: u64,
) -> gopro_status {
    set(config, ClientSetting::ReconnectMaxDelay, |b| {
        b.reconnect_max_delay(ms(value))
    })
}

/// Credentials (`credentials`/`len`, copied) sent as LOGIN first on every
/// connection, reconnections included, before any request.
/// `gopro_client_connect_with` fails with `GOPRO_STATUS_SERVER_ERROR` if
/// the server refuses them.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_login(
    config: *mut gopro_client_config,
    credentials: *const u8,
    len: usize,
) -> gopro_status {
    let credentials = match unsafe { ffi::bytes(credentials, len, "credentials") } {
        Ok(credentials) => bytes::Bytes::copy_from_slice(credentials),
        Err(fail) => return fail.record(),
    };
    set(config, ClientSetting::Login, |b| b.login(credentials))
}

/// Makes requests of `command` safe to send again on a new connection after
/// a connection was lost before their reply (HEARTBEAT always is): they are
/// re-sent instead of failing with `GOPRO_STATUS_CONNECTION_LOST`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_add_repeatable(
    config: *mut gopro_client_config,
    command: u8,
) -> gopro_status {
    set(config, ClientSetting::Repeatable, |b| b.repeatable(command))
}

/// Speaks TLS on every connection (reconnections included) with the
/// settings of `tls`: the server's certificate must chain to its CA (or,
/// without one, to the system's roots) and name the host connected to (or
/// its server name); its certificate and key, if set, are shown to servers
/// that ask for one. The handshake counts in the connect timeout; a failed
/// one makes `gopro_client_connect_with` return
/// `GOPRO_STATUS_TLS_HANDSHAKE`. The settings are copied (the CA and
/// certificate files read again now), so `tls` may be freed afterwards:
/// `GOPRO_STATUS_TLS_CONFIG` if they cannot be used, the config unchanged.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_tls(
    config: *mut gopro_client_config,
    tls: *const gopro_tls_config,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        let tls = unsafe { ffi::handle(tls, "tls") }?.client()?;
        let next = c.builder.clone().tls(tls);
        next.check(ClientSetting::Tls)?;
        c.builder = next;
        Ok(())
    })
}

/// Adds a server address (`"host:port"`, NUL-terminated, copied). The
/// client connects to the first that answers, and on reconnecting tries the
/// next ones in turn (failover without a balancer). Host names are resolved
/// at each attempt, so a DNS change is followed.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_add_address(
    config: *mut gopro_client_config,
    addr: *const c_char,
) -> gopro_status {
    ffi_boundary!({
        let addr = unsafe { ffi::str(addr, "addr") }?;
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        c.addrs.push(addr.to_string());
        Ok(())
    })
}

/// Frees client settings. NULL is ignored. Clients connected with them are
/// not affected.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_free(config: *mut gopro_client_config) {
    ffi_boundary_void!(unsafe { ffi::free_handle(config) })
}

/// Connects with the settings of `config` to the first of its addresses
/// that answers, and stores a new client in `*out`. Fails with
/// `GOPRO_STATUS_INVALID_ARGUMENT` if the config has no address,
/// `GOPRO_STATUS_CONNECT_FAILED` if no address answers,
/// `GOPRO_STATUS_TIMEOUT`, or `GOPRO_STATUS_SERVER_ERROR` if the login is
/// refused. The caller owns the client and frees it with
/// `gopro_client_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_connect_with(
    config: *const gopro_client_config,
    out: *mut *mut gopro_client,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(config, "config") }?;
        let out = ffi::out(out, "out")?;
        out.write(gopro_client::connect(&c.addrs, c.builder.clone())?);
        Ok(())
    })
}

/// Applies one setting to a copy of the builder and keeps it if the core's
/// rule for it (`ClientBuilder::check`) accepts it; a refused value leaves
/// the config as it was.
fn set(
    config: *mut gopro_client_config,
    setting: ClientSetting,
    f: impl FnOnce(ClientBuilder) -> ClientBuilder,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        let next = f(c.builder.clone());
        next.check(setting)?;
        c.builder = next;
        Ok(())
    })
}
