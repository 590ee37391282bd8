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
use crate::status::{gopro_status, Fail};

/// Client settings, made by `gopro_client_config_new` and freed by
/// `gopro_client_config_free`; `gopro_client_connect_with` copies them, so a
/// config may be freed, changed or reused once a client is connected. One
/// thread at a time.
pub struct gopro_client_config {
    builder: ClientBuilder,
    /// The client's body limit, which the C client checks first (the core's
    /// rule, `gopro::client::check_body`).
    max_body: usize,
}

/// Creates client settings with the defaults of the Rust `ClientBuilder`:
/// connect timeout `GOPRO_DEFAULT_CONNECT_TIMEOUT_MS`, call timeout
/// `GOPRO_DEFAULT_TIMEOUT_MS`, body limit `GOPRO_DEFAULT_MAX_BODY`, no
/// keep-alive. The caller frees it with `gopro_client_config_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_new(
    out: *mut *mut gopro_client_config,
) -> gopro_status {
    ffi_boundary!({
        let out = ffi::out(out, "out")?;
        out.write(ffi::into_handle(gopro_client_config {
            builder: ClientBuilder::default(),
            max_body: gopro::DEFAULT_MAX_BODY,
        }));
        Ok(())
    })
}

/// Time allowed to connect, in milliseconds (more than 0).
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_connect_timeout(
    config: *mut gopro_client_config,
    ms: u64,
) -> gopro_status {
    set(config, ClientSetting::ConnectTimeout, |c| {
        c.builder.clone().connect_timeout(Duration::from_millis(ms))
    })
}

/// Time allowed for every call on the client (writing the request and
/// reading its reply), in milliseconds (more than 0). A call that runs out
/// of time returns `GOPRO_STATUS_TIMEOUT` and closes the connection, since
/// a late reply would be taken for the next one's.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_timeout(
    config: *mut gopro_client_config,
    ms: u64,
) -> gopro_status {
    set(config, ClientSetting::Timeout, |c| {
        c.builder.clone().timeout(Duration::from_millis(ms))
    })
}

/// The largest body sent or accepted.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_max_body(
    config: *mut gopro_client_config,
    max_body: usize,
) -> gopro_status {
    set(config, ClientSetting::MaxBody, |c| {
        c.max_body = max_body;
        c.builder.clone().max_body(max_body)
    })
}

/// Sends a HEARTBEAT whenever the connection has been quiet for `ms`
/// milliseconds (more than 0); choose it below the server's read timeout.
/// Off unless set.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_set_keep_alive(
    config: *mut gopro_client_config,
    ms: u64,
) -> gopro_status {
    set(config, ClientSetting::KeepAlive, |c| {
        c.builder.clone().keep_alive(Duration::from_millis(ms))
    })
}

/// Frees client settings. NULL is ignored. Clients connected with them are
/// not affected.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_config_free(config: *mut gopro_client_config) {
    ffi_boundary_void!(unsafe { ffi::free_handle(config) })
}

/// Connects to `addr` (`"host:port"`, NUL-terminated) with the settings of
/// `config` (NULL for the defaults) and stores a new client in `*out`.
/// Fails with `GOPRO_STATUS_CONNECT_FAILED` or `GOPRO_STATUS_TIMEOUT`. The
/// caller owns the client and frees it with `gopro_client_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_connect_with(
    addr: *const c_char,
    config: *const gopro_client_config,
    out: *mut *mut gopro_client,
) -> gopro_status {
    ffi_boundary!({
        let addr = unsafe { ffi::str(addr, "addr") }?;
        // SAFETY: NULL is allowed (defaults); otherwise a live config.
        let config = unsafe { config.as_ref() };
        let out = ffi::out(out, "out")?;
        let (builder, max_body) = config.map_or_else(
            || (ClientBuilder::default(), gopro::DEFAULT_MAX_BODY),
            |c| (c.builder.clone(), c.max_body),
        );
        out.write(gopro_client::connect(addr, builder, max_body)?);
        Ok(())
    })
}

/// Applies one setting and keeps it if the core's rule for it
/// (`ClientBuilder::check`) accepts it; a refused value leaves the config
/// as it was.
fn set(
    config: *mut gopro_client_config,
    setting: ClientSetting,
    f: impl FnOnce(&mut gopro_client_config) -> ClientBuilder,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        let max_body = c.max_body;
        let next = f(c);
        if let Err(e) = next.check(setting) {
            c.max_body = max_body;
            return Err(Fail::from(e));
        }
        c.builder = next;
        Ok(())
    })
}
