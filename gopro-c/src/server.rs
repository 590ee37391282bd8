//! The server handle, over `gopro::blocking::Server`, with C callbacks as
//! command handlers
//! and authenticator, and its counters.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use gopro::server::{Reply, Server, ServerBuilder, StatsHandle};
use gopro::{Command, Frame};

use crate::ffi;
use crate::status::{gopro_status, Fail};

/// A command handler, called for each request frame of the command it is
/// registered for, with that frame's `command`, and its body as
/// `body`/`body_len` (NULL when empty; valid only during the call).
///
/// Return `GOPRO_STATUS_OK` (0) to answer with what was set on `reply`:
/// `gopro_reply_set_body` answers with the request's command and that body,
/// `gopro_reply_set_command` changes the command; if neither is called,
/// nothing is sent back. Return any other status to answer with an ERROR
/// frame whose reason is the one given to `gopro_reply_set_error`, or else
/// the status's `gopro_status_str`. `reply` is valid only during the call.
///
/// Called on the library's runtime worker threads, possibly on several at
/// once (one call at a time per connection, in the order the frames came):
/// `user_data` must be safe to use from any thread. A handler may block
/// (the runtime moves its other work to another thread meanwhile), but the
/// connection it serves waits for it. It must not call the blocking client
/// or `gopro_server_stop`/`gopro_server_free`: they return
/// `GOPRO_STATUS_INVALID_STATE` there.
pub type gopro_handler_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        command: u8,
        body: *const u8,
        body_len: usize,
        reply: *mut gopro_reply,
    ) -> c_int,
>;

/// Checks the credentials of a LOGIN (`credentials`/`len`, valid only during
/// the call). Return `GOPRO_STATUS_OK` (0) to accept them (the server
/// answers LOGIN `OK`), any other status to refuse them with an ERROR whose
/// reason is the one given to `gopro_reply_set_error`, or else
/// `"login refused"`. Threads and `user_data`: as for `gopro_handler_fn`.
pub type gopro_authenticate_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        credentials: *const u8,
        len: usize,
        reply: *mut gopro_reply,
    ) -> c_int,
>;

/// The answer a callback builds; lives only during the callback.
#[derive(Default)]
pub struct gopro_reply {
    command: Option<u8>,
    body: Option<Bytes>,
    error: Option<String>,
}

/// Server settings, made by `gopro_server_config_new` and freed by
/// `gopro_server_config_free`; `gopro_server_start` copies them, so a config
/// may be freed, changed or reused once a server has started. One thread at
/// a time.
pub struct gopro_server_config {
    builder: ServerBuilder,
}

impl gopro_server_config {
    /// Applies one builder setting.
    fn update(&mut self, f: impl FnOnce(ServerBuilder) -> ServerBuilder) {
        self.builder = f(std::mem::take(&mut self.builder));
    }
}

/// A running server, made by `gopro_server_start` and freed by
/// `gopro_server_free`. Thread-safe, except that it may not be stopped or
/// freed from one of its own callbacks.
pub struct gopro_server {
    inner: Mutex<Option<gopro::blocking::Server>>,
    port: u16,
    stats: StatsHandle,
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
        }
    }
}

type Handler = unsafe extern "C" fn(*mut c_void, u8, *const u8, usize, *mut gopro_reply) -> c_int;
type Authenticate = unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut gopro_reply) -> c_int;

/// A C function and its `user_data`.
#[derive(Clone, Copy)]
struct Callback<F> {
    f: F,
    user_data: *mut c_void,
}

// SAFETY: the caller of `gopro_server_config_set_*` promises that the
// function and `user_data` may be used from any thread (documented there).
unsafe impl<F> Send for Callback<F> {}
// SAFETY: as above.
unsafe impl<F> Sync for Callback<F> {}

thread_local! {
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// Blocking calls from inside a callback would stall (or deadlock) the
/// runtime thread that runs it.
pub(crate) fn check_not_in_callback() -> Result<(), Fail> {
    if IN_CALLBACK.with(Cell::get) {
        return Err(Fail::new(
            gopro_status::InvalidState,
            "blocking gopro calls cannot be made from a server callback",
        ));
    }
    Ok(())
}

/// Runs a C callback. C code may block (on a lock, a disk, a sleep); a
/// worker that blocks inside a task would also hold up the timers and
/// sockets that the runtime's other threads wait on, so the worker hands
/// its other work to another thread first.
fn in_callback<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(|| flagged(f))
}

fn flagged<T>(f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_CALLBACK.with(|c| c.set(false));
        }
    }
    IN_CALLBACK.with(|c| c.set(true));
    let _reset = Reset;
    f()
}

fn body_ptr(body: &[u8]) -> *const u8 {
    if body.is_empty() {
        std::ptr::null()
    } else {
        body.as_ptr()
    }
}

fn error_reason(reply: gopro_reply, status: c_int, default: &str) -> String {
    reply.error.unwrap_or_else(|| {
        if status > 0 && (status as usize) < 20 {
            // SAFETY: gopro_status_str returns a static NUL-terminated string.
            unsafe { CStr::from_ptr(crate::gopro_status_str(status)) }
                .to_string_lossy()
                .into_owned()
        } else {
            default.to_string()
        }
    })
}

impl Callback<Handler> {
    fn handle(self, code: u8, body: &[u8]) -> Result<Reply, String> {
        let mut reply = gopro_reply::default();
        // SAFETY: the function and user_data come from the application,
        // which promised they are callable from any thread; the body and
        // reply pointers are valid for the duration of the call.
        let status = in_callback(|| unsafe {
            (self.f)(self.user_data, code, body_ptr(body), body.len(), &mut reply)
        });
        if status != 0 {
            return Err(error_reason(reply, status, "handler failed"));
        }
        Ok(match (reply.command, reply.body) {
            (None, None) => Reply::None,
            (None, Some(body)) => Reply::Body(body),
            (Some(command), body) => Reply::Frame(Frame::new(command, body.unwrap_or_default())),
        })
    }
}

/// A C handler answers at once: from the read buffer when the server can
/// (no copy of the body, no boxed future), else from a frame.
impl gopro::server::Handler for Callback<Handler> {
    fn call(&self, frame: Frame) -> gopro::server::BoxFuture<Result<Reply, String>> {
        Box::pin(std::future::ready(
            self.handle(frame.command.code(), &frame.body),
        ))
    }

    fn call_inline(&self, command: gopro::Command, body: &[u8]) -> gopro::server::Inline {
        gopro::server::Inline::Done(self.handle(command.code(), body))
    }
}

impl Callback<Authenticate> {
    fn call(self, credentials: &Bytes) -> Result<(), String> {
        let mut reply = gopro_reply::default();
        // SAFETY: as in `Callback<Handler>::call`.
        let status = in_callback(|| unsafe {
            (self.f)(
                self.user_data,
                body_ptr(credentials),
                credentials.len(),
                &mut reply,
            )
        });
        if status != 0 {
            return Err(error_reason(reply, status, "login refused"));
        }
        Ok(())
    }
}

/// Creates server settings with the defaults of the Rust `ServerBuilder`:
/// read timeout 60 s, write timeout 10 s, body limit 10 MiB, 10,000
/// connections, grace 10 s, 16 KiB before LOGIN with an authenticator, 3
/// failed LOGINs, memory budget 256 MiB; HEARTBEAT echoed, MESSAGE
/// answered `"Server says: "` + body, every LOGIN accepted. The caller frees
/// it with `gopro_server_config_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_new(
    out: *mut *mut gopro_server_config,
) -> gopro_status {
    ffi_boundary!({
        let out = ffi::out(out, "out")?;
        out.write(ffi::into_handle(gopro_server_config {
            builder: Server::builder(),
        }));
        Ok(())
    })
}

/// How long a whole frame may take to arrive, counted from the end of the
/// previous one (or from accept), in milliseconds (at least 1). Idle and
/// slow-drip connections are closed when it passes.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_read_timeout(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, |c| {
        let timeout = positive_ms(ms, "read timeout")?;
        c.update(|b| b.read_timeout(timeout));
        Ok(())
    })
}

/// How long a peer may take to accept a batch of replies before its
/// connection is closed, in milliseconds (at least 1).
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_write_timeout(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, |c| {
        let timeout = positive_ms(ms, "write timeout")?;
        c.update(|b| b.write_timeout(timeout));
        Ok(())
    })
}

/// The largest body accepted in a request and sent in a reply.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_body(
    config: *mut gopro_server_config,
    max_body: usize,
) -> gopro_status {
    set(config, |c| {
        c.update(|b| b.max_body(max_body));
        Ok(())
    })
}

/// Connections served at once (at least 1); more are answered ERROR
/// `server busy` and closed.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_connections(
    config: *mut gopro_server_config,
    max: usize,
) -> gopro_status {
    set(config, |c| {
        if max == 0 {
            return Err(Fail::invalid("max_connections must be at least 1"));
        }
        c.update(|b| b.max_connections(max));
        Ok(())
    })
}

/// How long `gopro_server_stop` lets connections finish their frames before
/// closing them, in milliseconds.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_grace(
    config: *mut gopro_server_config,
    ms: u64,
) -> gopro_status {
    set(config, |c| {
        c.update(|b| b.grace(Duration::from_millis(ms)));
        Ok(())
    })
}

/// The body limit before a successful LOGIN (only with an authenticator).
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_prelogin_max_body(
    config: *mut gopro_server_config,
    max_body: usize,
) -> gopro_status {
    set(config, |c| {
        c.update(|b| b.prelogin_max_body(max_body));
        Ok(())
    })
}

/// Failed LOGINs in a row after which the connection is closed.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_set_max_login_failures(
    config: *mut gopro_server_config,
    max: u32,
) -> gopro_status {
    set(config, |c| {
        c.update(|b| b.max_login_failures(max));
        Ok(())
    })
}

/// Bytes the server may hold for frames and replies, all connections
/// together, beyond the one pooled buffer (8 KiB) each active connection
/// reads into (default 256 MiB). A frame too large for that buffer is
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
    set(config, |c| {
        c.update(|b| b.memory_budget(bytes));
        Ok(())
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
    set(config, |c| {
        let f = handler.ok_or_else(|| Fail::null("handler"))?;
        let cmd = Command(command);
        if !(cmd.is_application() || cmd == Command::HEARTBEAT || cmd == Command::MESSAGE) {
            return Err(Fail::invalid(format!(
                "command {command} cannot have a handler: use 16-255, or 0/1 to override HEARTBEAT/MESSAGE"
            )));
        }
        let callback = Callback { f, user_data };
        c.update(|b| b.handler(command, callback));
        Ok(())
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
    set(config, |c| {
        let f = authenticate.ok_or_else(|| Fail::null("authenticate"))?;
        let callback = Callback { f, user_data };
        c.update(|b| {
            b.authenticator(move |credentials: Bytes| {
                std::future::ready(callback.call(&credentials))
            })
        });
        Ok(())
    })
}

/// Frees server settings. NULL is ignored. Servers started with them are
/// not affected.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_config_free(config: *mut gopro_server_config) {
    ffi_boundary_void!(unsafe { ffi::free_handle(config) })
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
        let server = gopro::blocking::Server::start(builder).map_err(Fail::from)?;
        let port = server.local_addr().port();
        let stats = server.stats();
        out.write(ffi::into_handle(gopro_server {
            inner: Mutex::new(Some(server)),
            port,
            stats,
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
        let out_port = ffi::out(out_port, "out_port")?;
        if s.inner.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return Err(Fail::new(gopro_status::Closed, "the server was stopped"));
        }
        out_port.write(s.port);
        Ok(())
    })
}

/// Stores the server's counters now in `*out`: connections, frames, bytes
/// held against the memory budget, and errors by kind. Frames are counted
/// once per batch a connection handles, so a batch in progress is not
/// counted yet. Also works after `gopro_server_stop`, giving the final
/// counts. Thread-safe and cheap (no lock); may be called from a callback.
#[no_mangle]
pub unsafe extern "C" fn gopro_server_stats(
    server: *const gopro_server,
    out: *mut gopro_stats,
) -> gopro_status {
    ffi_boundary!({
        let s = unsafe { ffi::handle(server, "server") }?;
        let out = ffi::out(out, "out")?;
        out.write(s.stats.snapshot().into());
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
    fn stop(&self) {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(server) = taken {
            server.stop();
        }
    }
}

/// From a handler: answer with `body`/`len` (copied) and the request's
/// command (or the one set with `gopro_reply_set_command`). The body must
/// fit the server's body limit, or the client gets ERROR instead.
#[no_mangle]
pub unsafe extern "C" fn gopro_reply_set_body(
    reply: *mut gopro_reply,
    body: *const u8,
    len: usize,
) -> gopro_status {
    ffi_boundary!({
        let r = unsafe { ffi::handle_mut(reply, "reply") }?;
        let body = unsafe { ffi::bytes(body, len, "body") }?;
        r.body = Some(Bytes::copy_from_slice(body));
        Ok(())
    })
}

/// From a handler: answer with command `command` instead of the request's
/// (with an empty body unless `gopro_reply_set_body` is called too).
#[no_mangle]
pub unsafe extern "C" fn gopro_reply_set_command(
    reply: *mut gopro_reply,
    command: u8,
) -> gopro_status {
    ffi_boundary!({
        let r = unsafe { ffi::handle_mut(reply, "reply") }?;
        r.command = Some(command);
        Ok(())
    })
}

/// From a handler or authenticator that returns a status other than
/// `GOPRO_STATUS_OK`: the reason sent in the ERROR frame (NUL-terminated,
/// copied; invalid UTF-8 is replaced).
#[no_mangle]
pub unsafe extern "C" fn gopro_reply_set_error(
    reply: *mut gopro_reply,
    reason: *const c_char,
) -> gopro_status {
    ffi_boundary!({
        let r = unsafe { ffi::handle_mut(reply, "reply") }?;
        if reason.is_null() {
            return Err(Fail::null("reason"));
        }
        // SAFETY: non-NULL and NUL-terminated by the caller's contract.
        let reason = unsafe { CStr::from_ptr(reason) };
        r.error = Some(reason.to_string_lossy().into_owned());
        Ok(())
    })
}

fn set(
    config: *mut gopro_server_config,
    f: impl FnOnce(&mut gopro_server_config) -> Result<(), Fail>,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        f(c)
    })
}

fn positive_ms(ms: u64, what: &str) -> Result<Duration, Fail> {
    if ms == 0 {
        return Err(Fail::invalid(format!("the {what} must be at least 1 ms")));
    }
    Ok(Duration::from_millis(ms))
}
