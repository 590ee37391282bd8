//! The server handle, over `gopro::blocking::Server`: start, port,
//! counters, stop. Its settings are in `server_config`, its callbacks in
//! `callback`.

use std::ffi::c_char;
use std::sync::Mutex;

use gopro::server::{Server, StatsHandle};
use gopro::tls::ServerTls;

use crate::callback::check_not_in_callback;
use crate::ffi;
use crate::server_config::gopro_server_config;
use crate::status::{gopro_status, Fail};

/// A running server, made by `gopro_server_start` and freed by
/// `gopro_server_free`. Thread-safe, except that it may not be stopped or
/// freed from one of its own callbacks.
pub struct gopro_server {
    inner: Mutex<Option<gopro::blocking::Server>>,
    port: u16,
    /// The metrics port, 0 without `gopro_server_config_set_metrics_listen`.
    metrics_port: u16,
    stats: StatsHandle,
    /// The TLS settings it serves with (sharing their certificate), for
    /// `gopro_server_reload_tls`.
    tls: Option<ServerTls>,
}

/// A server's counters at one moment, filled in by `gopro_server_stats`.
/// Counts are since the server started; `connections`, `bytes_buffered`
/// and `memory_budget` are values now.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct gopro_stats {
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted (those refused as busy not included).
    pub connections_accepted: u64,
    /// Whole frames received.
    pub frames_in: u64,
    /// Frames sent (replies, ERROR and GOAWAY included).
    pub frames_out: u64,
    /// Bytes held now for frames and replies beyond each connection's
    /// pooled read buffer: what the memory budget counts.
    pub bytes_buffered: u64,
    /// The memory budget, in bytes.
    pub memory_budget: u64,
    /// Connections refused with `server busy` (connection limit).
    pub errors_busy: u64,
    /// Streams closed for a protocol error (bad magic, unsupported version,
    /// body too large).
    pub errors_protocol: u64,
    /// Connections closed because a frame did not arrive within the read
    /// timeout.
    pub errors_read_timeout: u64,
    /// Connections closed because the peer did not take its replies within
    /// the write timeout.
    pub errors_write_timeout: u64,
    /// Handler failures (a callback returned a status other than
    /// `GOPRO_STATUS_OK`), answered with ERROR.
    pub errors_handler: u64,
    /// Failed LOGINs.
    pub errors_login: u64,
    /// Reads or writes that failed (resets and the like).
    pub errors_io: u64,
    /// TLS handshakes completed (a TLS server). Added after the first
    /// version of the struct, as is every field below.
    pub tls_handshakes: u64,
    /// Connections to a TLS server closed before their handshake finished:
    /// failed or late handshakes, plaintext clients, garbage.
    pub errors_tls: u64,
    /// PROXY headers accepted (a server with
    /// `gopro_server_config_set_proxy_protocol`).
    pub proxy_headers: u64,
    /// Connections refused for the PROXY protocol: from an address that is
    /// not a trusted proxy, without a valid header, or not in time.
    pub errors_proxy: u64,
}

impl From<gopro::server::Stats> for gopro_stats {
    fn from(s: gopro::server::Stats) -> gopro_stats {
        let e = s.errors;
        gopro_stats {
            connections: s.connections as u64,
            connections_accepted: s.connections_accepted,
            frames_in: s.frames_in,
            frames_out: s.frames_out,
            bytes_buffered: s.bytes_buffered as u64,
            memory_budget: s.memory_budget as u64,
            errors_busy: e.busy,
            errors_protocol: e.protocol,
            errors_read_timeout: e.read_timeout,
            errors_write_timeout: e.write_timeout,
            errors_handler: e.handler,
            errors_login: e.login,
            errors_io: e.io,
            tls_handshakes: s.tls_handshakes,
            errors_tls: e.tls,
            proxy_headers: s.proxy_headers,
            errors_proxy: s.proxy_refused,
        }
    }
}

/// Starts a server listening on `addr` (`"host:port"`, NUL-terminated; port
/// 0 picks a free port, see `gopro_server_port`) with the settings in
/// `config` (NULL for the defaults), serving in the background on the
/// library's runtime threads. Stores the new server in `*out`; the caller
/// stops it with `gopro_server_stop` and frees it with `gopro_server_free`.
///
/// Fails with `GOPRO_STATUS_BIND_FAILED` if the address cannot be bound,
/// `GOPRO_STATUS_INVALID_ARGUMENT` for an invalid setting (such as a
/// memory budget below the body limit + 8), with the reason in
/// `gopro_last_error_message`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_start(
    addr: *const c_char,
    config: *const gopro_server_config,
    out: *mut *mut gopro_server,
) -> gopro_status {
    ffi_boundary!({
        let addr = unsafe { ffi::str(addr, "addr") }?;
        // SAFETY: NULL is allowed (defaults); otherwise a live config.
        let config = unsafe { config.as_ref() };
        let out = ffi::out(out, "out")?;
        check_not_in_callback()?;
        let builder = config
            .map_or_else(Server::builder, |c| c.builder.clone())
            .listen(addr);
        let tls = config.and_then(|c| c.tls.clone());
        let server = gopro::blocking::Server::start(builder).map_err(Fail::from)?;
        let port = server.local_addr().port();
        let metrics_port = server.metrics_addr().map_or(0, |a| a.port());
        let stats = server.stats();
        out.write(ffi::into_handle(gopro_server {
            inner: Mutex::new(Some(server)),
            port,
            metrics_port,
            stats,
            tls,
        }));
        Ok(())
    })
}

/// Stores the port the server listens on in `*out_port` (useful after
/// listening on port 0). `GOPRO_STATUS_CLOSED` once stopped.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_port(
    server: *const gopro_server,
    out_port: *mut u16,
) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        ffi::get(out_port, "out_port", || s.while_running(s.port))
    })
}

/// Stores the port the server's metrics are served on
/// (`http://HOST:PORT/metrics`, see `gopro_server_config_set_metrics_listen`)
/// in `*out_port`: the one chosen when listening on port 0, and 0 when the
/// server serves no metrics. `GOPRO_STATUS_CLOSED` once stopped.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_metrics_port(
    server: *const gopro_server,
    out_port: *mut u16,
) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        ffi::get(out_port, "out_port", || s.while_running(s.metrics_port))
    })
}

/// Stores the server's counters now in `*out`: connections, frames, bytes
/// held against the memory budget, and errors by kind. Frames are counted
/// once per batch a connection handles, so a batch in progress is not
/// counted yet. Also works after `gopro_server_stop`, giving the final
/// counts. Thread-safe and cheap (no lock); may be called from a callback.
///
/// `out_size` is the size of the caller's struct: pass `sizeof *out`.
/// `gopro_stats` only grows, by fields added at its end, so a program built
/// against an older header keeps working with a newer library and the
/// other way round: the library writes the first `out_size` bytes at the
/// most (the fields it knows that fit), never past them, and zeroes the
/// fields of a larger (newer) struct that it does not know. An `out_size`
/// under the size of the first version of the struct (13 counters, 104
/// bytes) gives `GOPRO_STATUS_INVALID_ARGUMENT`, and nothing is written.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_stats(
    server: *const gopro_server,
    out: *mut gopro_stats,
    out_size: usize,
) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        let out = unsafe { ffi::out_buf(out.cast::<u8>(), out_size, "out") }?;
        write_sized(&s.stats.snapshot().into(), out)
    })
}

/// The size of the first published `gopro_stats`, the least a caller may
/// pass; it stays as it is when fields are added.
const STATS_V1_SIZE: usize = 13 * size_of::<u64>();
const _: () = assert!(STATS_V1_SIZE <= size_of::<gopro_stats>());

/// Writes `stats` into a caller's struct of `out.len()` bytes: the part
/// that fits, then zeroes for a newer struct's fields.
fn write_sized(stats: &gopro_stats, out: &mut [u8]) -> Result<(), Fail> {
    ffi::write_prefix(stats, STATS_V1_SIZE, out)
}

/// Reads the certificate and key files of the server's TLS settings
/// (`gopro_tls_config_set_cert_files`) again and uses them for the next
/// handshakes; connections already open keep theirs. Call it when the
/// files were replaced (a renewed certificate). On failure the certificate
/// in use stays and `GOPRO_STATUS_TLS_CONFIG` is returned with the reason
/// (a file that cannot be read, a key that does not fit), as it is for a
/// server without TLS or whose certificate was given as PEM bytes (use
/// `gopro_server_reload_tls_pem`). Thread-safe; may be called from a
/// callback.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_reload_tls(server: *const gopro_server) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        s.tls()?.reload()?;
        Ok(())
    })
}

/// Uses the certificate chain `cert`/`cert_len` and key `key`/`key_len`
/// (PEM bytes, copied) for the server's next handshakes, whether it
/// started with files or bytes (a later `gopro_server_reload_tls` reads
/// the files again). On failure the certificate in use stays and
/// `GOPRO_STATUS_TLS_CONFIG` is returned with the reason. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_reload_tls_pem(
    server: *const gopro_server,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        let (cert, key) = unsafe { crate::tls::pem_pair(cert, cert_len, key, key_len) }?;
        s.tls()?.reload_pem(cert, key)?;
        Ok(())
    })
}

/// Stops the server gracefully (SPEC §6) and waits until it has stopped: it
/// stops accepting, lets connections finish the frames they have received
/// and send their replies, sends GOAWAY and closes them; connections still
/// busy after the grace period are closed. No callback runs after it
/// returns. Stopping twice is OK. Must not be called from a callback.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_stop(server: *const gopro_server) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        check_not_in_callback()?;
        s.stop();
        Ok(())
    })
}

/// Stops the server if it is running (as `gopro_server_stop`) and frees it.
/// NULL is ignored. Must not be called from a callback.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_free(server: *mut gopro_server) {
    ffi_boundary_void!({
        if check_not_in_callback().is_ok() {
            if let Some(s) = unsafe { server.as_ref() } {
                s.stop();
            }
            unsafe { ffi::free_handle(server) }
        }
    })
}

impl gopro_server {
    /// `value`, or `GOPRO_STATUS_CLOSED` once the server is stopped.
    fn while_running<T>(&self, value: T) -> Result<T, Fail> {
        if self
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none()
        {
            return Err(Fail::new(gopro_status::Closed, "the server was stopped"));
        }
        Ok(value)
    }

    fn tls(&self) -> Result<&ServerTls, Fail> {
        self.tls.as_ref().ok_or_else(|| {
            Fail::new(
                gopro_status::TlsConfig,
                "the server was started without TLS (gopro_server_config_set_tls)",
            )
        })
    }

    fn stop(&self) {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = taken {
            server.stop();
        }
    }
}
