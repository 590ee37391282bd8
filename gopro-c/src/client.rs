//! The client handle, over `gopro::blocking::Client`: blocking calls from
//! any number of threads at once, and completions (`completion.rs`).

use std::ffi::c_char;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gopro::blocking::Client;
use gopro::client::{ClientBuilder, ClientError};
use gopro::{Command, Frame};

use crate::callback::check_not_in_callback;
use crate::completion::Pending;
use crate::ffi;
use crate::status::{gopro_status, Fail};

/// A connection to a GoPro server (SPEC §3–6), made by
/// `gopro_client_connect` and freed by `gopro_client_free`.
///
/// Thread-safe: any number of threads may call `gopro_client_request` at
/// once. Their requests share the connection: written in the order they
/// are made, coalesced into as few writes as the socket allows, and each
/// caller gets the reply to its own request; no lock is held while a caller
/// waits. `gopro_client_submit` does the same without blocking a thread.
/// `gopro_client_send`/`gopro_client_recv` are one pipeline per client: one
/// thread should own that sequence. Blocking calls must not be made from a
/// server callback or a completion callback
/// (`GOPRO_STATUS_BLOCKING_IN_RUNTIME`).
pub struct gopro_client {
    inner: Client,
    /// Completions owed to `gopro_client_submit`'s callbacks.
    pub(crate) pending: Arc<Pending>,
}

/// A client's counters, from its start, filled in by `gopro_client_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct gopro_client_counters {
    /// Requests queued.
    pub requests: u64,
    /// Replies received (ERROR replies included).
    pub replies: u64,
    /// Connections made again after one was lost.
    pub reconnects: u64,
    /// Requests written again on a new connection (left unanswered by a
    /// GOAWAY, or repeatable).
    pub resent: u64,
    /// Requests that failed with `GOPRO_STATUS_CONNECTION_LOST`.
    pub lost: u64,
}

/// A frame received by a client (a reply), owned by the caller until
/// `gopro_frame_free`. Immutable, so it may be read from any thread.
pub struct gopro_frame {
    pub(crate) frame: Frame,
}

/// Connects to `addr` (`"host:port"`, NUL-terminated) and stores a new client
/// in `*out`.
///
/// - `connect_timeout_ms`: time allowed to connect; 0 for the default,
///   `GOPRO_DEFAULT_CONNECT_TIMEOUT_MS`.
/// - `timeout_ms`: time allowed for every later call on this client
///   (writing the request and reading its reply); 0 for the default,
///   `GOPRO_DEFAULT_TIMEOUT_MS`.
///   A call that runs out of time returns `GOPRO_STATUS_TIMEOUT`; its reply
///   is discarded when it comes, and the connection stays open.
/// - `max_body`: the largest body sent or accepted; 0 for
///   `GOPRO_DEFAULT_MAX_BODY`.
///
/// Fails with `GOPRO_STATUS_CONNECT_FAILED` or `GOPRO_STATUS_TIMEOUT`. The
/// caller owns the client and frees it with `gopro_client_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_connect(
    addr: *const c_char,
    connect_timeout_ms: u32,
    timeout_ms: u32,
    max_body: usize,
    out: *mut *mut gopro_client,
) -> gopro_status {
    ffi_boundary!({
        let addr = unsafe { ffi::str(addr, "addr") }?;
        let out = ffi::out(out, "out")?;
        let mut builder = ClientBuilder::default();
        if max_body > 0 {
            builder = builder.max_body(max_body);
        }
        if connect_timeout_ms > 0 {
            builder = builder.connect_timeout(Duration::from_millis(connect_timeout_ms.into()));
        }
        if timeout_ms > 0 {
            builder = builder.timeout(Duration::from_millis(timeout_ms.into()));
        }
        out.write(gopro_client::connect(&[addr], builder)?);
        Ok(())
    })
}

/// Sends one request (command `command`, body copied from `body`/`body_len`)
/// and waits for its reply, stored as a new frame in `*out_reply` that the
/// caller frees with `gopro_frame_free`.
///
/// Callable from any number of threads at once: each gets its own reply.
/// Waits while the client is full (`gopro_client_config_set_max_in_flight`).
///
/// An ERROR reply gives `GOPRO_STATUS_SERVER_ERROR` with the server's reason
/// in `gopro_last_error_message` (the connection stays usable); a GOAWAY
/// gives `GOPRO_STATUS_GOAWAY` (the request was not handled; a reconnecting
/// client sends it again instead); a connection lost after the request was
/// written gives `GOPRO_STATUS_CONNECTION_LOST` (it may have been handled);
/// a body over the client's limit gives `GOPRO_STATUS_BODY_TOO_LARGE` and
/// nothing is sent.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_request(
    client: *const gopro_client,
    command: u8,
    body: *const u8,
    body_len: usize,
    out_reply: *mut *mut gopro_frame,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        let body = unsafe { ffi::bytes(body, body_len, "body") }?;
        let out_reply = ffi::out(out_reply, "out_reply")?;
        let frame = c.with_body(body, |cl, body| cl.request(Command(command), body))?;
        out_reply.write(ffi::into_handle(gopro_frame { frame }));
        Ok(())
    })
}

/// A HEARTBEAT round trip. `GOPRO_STATUS_UNEXPECTED_REPLY` if the server
/// answers with anything but the identical frame.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_heartbeat(client: *const gopro_client) -> gopro_status {
    unsafe { on_client(client, Client::heartbeat) }
}

/// Logs in with the credentials `credentials`/`len` (copied). The server
/// must answer LOGIN `OK`; a refusal is `GOPRO_STATUS_SERVER_ERROR` with the
/// server's reason in `gopro_last_error_message`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_login(
    client: *const gopro_client,
    credentials: *const u8,
    len: usize,
) -> gopro_status {
    ffi_boundary!({
        let credentials = unsafe { ffi::bytes(credentials, len, "credentials") }?;
        unsafe { ffi::handle(client, "client") }?.with_body(credentials, |cl, c| cl.login(c))
    })
}

/// Queues a request without waiting for its reply (pipelining); the body is
/// copied. Requests sent one after another are handed to the connection
/// together: every 16 requests or 64 KiB, on `gopro_client_flush`, when
/// `gopro_client_recv` has to wait (on any thread), before any other call
/// of the client sends, and when the client is full. Read the replies, in
/// order, with `gopro_client_recv`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_send(
    client: *const gopro_client,
    command: u8,
    body: *const u8,
    body_len: usize,
) -> gopro_status {
    ffi_boundary!({
        let body = unsafe { ffi::bytes(body, body_len, "body") }?;
        unsafe { ffi::handle(client, "client") }?
            .with_body(body, |cl, body| cl.send(Command(command), body))
    })
}

/// Writes every queued request.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_flush(client: *const gopro_client) -> gopro_status {
    unsafe { on_client(client, Client::flush) }
}

/// Waits for the reply to the oldest request sent with `gopro_client_send`
/// and stores it as a new frame in `*out_reply` (free it with
/// `gopro_frame_free`). Statuses as for `gopro_client_request`;
/// `GOPRO_STATUS_NOTHING_IN_FLIGHT` if no request is in flight.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_recv(
    client: *const gopro_client,
    out_reply: *mut *mut gopro_frame,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        let out_reply = ffi::out(out_reply, "out_reply")?;
        let frame = c.with(|cl| cl.recv().map_err(Fail::from))?;
        out_reply.write(ffi::into_handle(gopro_frame { frame }));
        Ok(())
    })
}

/// Stores in `*out` the number of requests sent with `gopro_client_send`
/// whose replies `gopro_client_recv` has not yet returned. After a
/// `GOPRO_STATUS_GOAWAY`, each of them was not handled by the server, and
/// `gopro_client_recv` returns `GOPRO_STATUS_GOAWAY` for it (a reconnecting
/// client sends them again instead).
#[no_mangle]
pub unsafe extern "C" fn gopro_client_in_flight(
    client: *const gopro_client,
    out: *mut usize,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        ffi::get(out, "out", || c.with(|cl| Ok::<_, Fail>(cl.in_flight())))
    })
}

/// Stores the client's counters in `*out`: requests, replies, reconnects,
/// re-sent and lost requests. Thread-safe and cheap; works after
/// `gopro_client_close` too. `out_size` is `sizeof *out`: the struct only
/// grows by fields added at its end, and the library writes the fields it
/// knows that fit and zeroes the others (as `gopro_server_stats`); less
/// than the first version (5 counters, 40 bytes) gives
/// `GOPRO_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_stats(
    client: *const gopro_client,
    out: *mut gopro_client_counters,
    out_size: usize,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        let out = unsafe { ffi::out_buf(out.cast::<u8>(), out_size, "out") }?;
        let s = c.inner.stats();
        let counters = gopro_client_counters {
            requests: s.requests,
            replies: s.replies,
            reconnects: s.reconnects,
            resent: s.resent,
            lost: s.lost,
        };
        ffi::write_prefix(&counters, COUNTERS_V1_SIZE, out)
    })
}

/// The size of the first published `gopro_client_counters`.
const COUNTERS_V1_SIZE: usize = 5 * size_of::<u64>();
const _: () = assert!(COUNTERS_V1_SIZE <= size_of::<gopro_client_counters>());

/// Closes the connection: calls waiting on other threads and requests
/// submitted without a reply fail with `GOPRO_STATUS_CLOSED`, and so do
/// later calls. Returns once every completion callback owed has run. The
/// handle must still be freed with `gopro_client_free`. Closing twice is
/// OK. Not from a callback (`GOPRO_STATUS_BLOCKING_IN_RUNTIME`).
#[no_mangle]
pub unsafe extern "C" fn gopro_client_close(client: *const gopro_client) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        check_not_in_callback()?;
        c.inner.close();
        c.pending.wait_idle();
        Ok(())
    })
}

/// Closes the connection if open, waits until every completion callback
/// owed has run (as `gopro_client_close`), and frees the client. NULL is
/// ignored. No other thread may be using the client, and it must not be
/// used after. From a completion callback it does not wait: the callbacks
/// still owed then run later, with `GOPRO_STATUS_CLOSED`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_free(client: *mut gopro_client) {
    ffi_boundary_void!({
        // SAFETY: NULL or a live client (the crate's contract).
        if let Some(c) = unsafe { client.as_ref() } {
            c.inner.close();
            if !gopro::blocking::on_runtime_thread() {
                c.pending.wait_idle();
            }
        }
        unsafe { ffi::free_handle(client) }
    })
}

/// Reads a frame: its command into `*out_command`, its version into
/// `*out_version` (may be NULL if not wanted), and its body as `*out_body`
/// and `*out_body_len`. The body is owned by the frame and valid until
/// `gopro_frame_free`; `*out_body` is NULL for an empty body. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn gopro_frame_get(
    frame: *const gopro_frame,
    out_command: *mut u8,
    out_version: *mut u8,
    out_body: *mut *const u8,
    out_body_len: *mut usize,
) -> gopro_status {
    ffi_boundary!({
        let f = &unsafe { ffi::handle(frame, "frame") }?.frame;
        let out = ffi::FrameOut::new(out_command, out_version, out_body, out_body_len)?;
        out.write(f.command.code(), f.version, &f.body);
        Ok(())
    })
}

/// Frees a frame from `gopro_client_request` or `gopro_client_recv`. NULL
/// is ignored. (Not the frame given to a completion callback: that one is
/// the library's.)
#[no_mangle]
pub unsafe extern "C" fn gopro_frame_free(frame: *mut gopro_frame) {
    ffi_boundary_void!(unsafe { ffi::free_handle(frame) })
}

/// A call with no argument but the client: `f` on the open client.
///
/// # Safety
/// `client` is NULL or a live client (the crate's contract).
unsafe fn on_client(
    client: *const gopro_client,
    f: impl FnOnce(&Client) -> Result<(), ClientError>,
) -> gopro_status {
    ffi_boundary!(unsafe { ffi::handle(client, "client") }?.with(f))
}

impl gopro_client {
    /// Connects with the core's builder (which checks its settings) to the
    /// first of `addrs` that answers, as a new handle.
    pub(crate) fn connect<A: AsRef<str>>(
        addrs: &[A],
        builder: ClientBuilder,
    ) -> Result<*mut gopro_client, Fail> {
        check_not_in_callback()?;
        let client = Client::connect_any(addrs, builder)?;
        Ok(ffi::into_handle(gopro_client {
            inner: client,
            pending: Arc::default(),
        }))
    }

    /// The client, for a call that blocks (not from a callback).
    fn with<T, E: Into<Fail>>(&self, f: impl FnOnce(&Client) -> Result<T, E>) -> Result<T, Fail> {
        check_not_in_callback()?;
        f(&self.inner).map_err(Into::into)
    }

    /// The client, for a call that never blocks.
    pub(crate) fn client(&self) -> &Client {
        &self.inner
    }

    /// The client's body limit: the core's rule, checked first.
    pub(crate) fn check_body(&self, len: usize) -> Result<(), Fail> {
        Ok(gopro::client::check_body(
            self.inner.as_async().max_body(),
            len,
        )?)
    }

    /// As [`with`](Self::with), with a copy of the caller's `body` for
    /// `f`; a body over the client's limit fails first, and nothing is sent.
    fn with_body<T>(
        &self,
        body: &[u8],
        f: impl FnOnce(&Client, Bytes) -> Result<T, ClientError>,
    ) -> Result<T, Fail> {
        self.check_body(body.len())?;
        self.with(|cl| f(cl, Bytes::copy_from_slice(body)))
    }
}
