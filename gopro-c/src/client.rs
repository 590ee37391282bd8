//! The blocking client handle, over `gopro::blocking::Client`.

use std::ffi::c_char;
use std::sync::RwLock;
use std::time::Duration;

use bytes::Bytes;
use gopro::blocking::Client;
use gopro::client::{ClientBuilder, ClientError};
use gopro::{Command, Frame};

use crate::callback::check_not_in_callback;
use crate::ffi;
use crate::status::{gopro_status, Fail};

/// A connection to a GoPro server (SPEC §3–6), made by
/// `gopro_client_connect` and freed by `gopro_client_free`.
///
/// Thread-safe: calls may come from several threads at once and are
/// serialized, so a reply is never handed to another caller (for
/// pipelining, one thread should own the send/receive sequence). Calls are
/// blocking and must not be made from a server callback
/// (`GOPRO_STATUS_BLOCKING_IN_RUNTIME`).
pub struct gopro_client {
    /// `None` once closed with `gopro_client_close`.
    inner: RwLock<Option<Client>>,
    max_body: usize,
}

/// A frame received by a client (a reply), owned by the caller until
/// `gopro_frame_free`. Immutable, so it may be read from any thread.
pub struct gopro_frame {
    frame: Frame,
}

/// Connects to `addr` (`"host:port"`, NUL-terminated) and stores a new client
/// in `*out`.
///
/// - `connect_timeout_ms`: time allowed to connect; 0 for the default,
///   `GOPRO_DEFAULT_CONNECT_TIMEOUT_MS`.
/// - `timeout_ms`: time allowed for every later call on this client
///   (writing the request and reading its reply); 0 for the default,
///   `GOPRO_DEFAULT_TIMEOUT_MS`.
///   A call that runs out of time returns `GOPRO_STATUS_TIMEOUT` and closes
///   the connection, since a late reply would be taken for the next one's.
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
        let max_body = if max_body == 0 {
            gopro::DEFAULT_MAX_BODY
        } else {
            max_body
        };
        let mut builder = ClientBuilder::default().max_body(max_body);
        if connect_timeout_ms > 0 {
            builder = builder.connect_timeout(Duration::from_millis(connect_timeout_ms.into()));
        }
        if timeout_ms > 0 {
            builder = builder.timeout(Duration::from_millis(timeout_ms.into()));
        }
        out.write(gopro_client::connect(addr, builder, max_body)?);
        Ok(())
    })
}

/// Sends one request (command `command`, body copied from `body`/`body_len`)
/// and waits for its reply, stored as a new frame in `*out_reply` that the
/// caller frees with `gopro_frame_free`.
///
/// An ERROR reply gives `GOPRO_STATUS_SERVER_ERROR` with the server's reason
/// in `gopro_last_error_message` (the connection stays usable); a GOAWAY
/// gives `GOPRO_STATUS_GOAWAY` (the request was not handled); a body over
/// the client's limit gives `GOPRO_STATUS_BODY_TOO_LARGE` and nothing is sent.
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
/// copied. Requests are written once 64 KiB are queued, on
/// `gopro_client_flush`, and before `gopro_client_recv` waits. Read the
/// replies, in order, with `gopro_client_recv`.
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

/// Stores in `*out` the number of requests sent (or queued) without a reply
/// yet. After `GOPRO_STATUS_GOAWAY`, these were not handled by the server.
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

/// Closes the connection (waiting for calls in progress on other threads to
/// end). Later calls on this client return `GOPRO_STATUS_CLOSED`; the
/// handle must still be freed with `gopro_client_free`. Closing twice is OK.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_close(client: *const gopro_client) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        check_not_in_callback()?;
        let taken = c.inner.write().unwrap_or_else(|e| e.into_inner()).take();
        drop(taken);
        Ok(())
    })
}

/// Closes the connection if open and frees the client. NULL is ignored.
/// No other thread may be using the client, and it must not be used after.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_free(client: *mut gopro_client) {
    ffi_boundary_void!(unsafe { ffi::free_handle(client) })
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
/// is ignored.
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
    /// Connects with the core's builder (which checks its settings), as a
    /// new handle.
    pub(crate) fn connect(
        addr: &str,
        builder: ClientBuilder,
        max_body: usize,
    ) -> Result<*mut gopro_client, Fail> {
        check_not_in_callback()?;
        let client = Client::connect_with(addr, builder)?;
        Ok(ffi::into_handle(gopro_client {
            inner: RwLock::new(Some(client)),
            max_body,
        }))
    }

    /// Runs `f` on the open client, or fails with CLOSED after
    /// `gopro_client_close`.
    fn with<T, E: Into<Fail>>(&self, f: impl FnOnce(&Client) -> Result<T, E>) -> Result<T, Fail> {
        check_not_in_callback()?;
        let guard = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let client = guard.as_ref().ok_or_else(|| {
            Fail::new(
                gopro_status::Closed,
                "the client was closed with gopro_client_close",
            )
        })?;
        f(client).map_err(Into::into)
    }

    /// As [`with`](Self::with), with a copy of the caller's `body` for
    /// `f`; a body over the client's limit fails first, and nothing is sent.
    fn with_body<T>(
        &self,
        body: &[u8],
        f: impl FnOnce(&Client, Bytes) -> Result<T, ClientError>,
    ) -> Result<T, Fail> {
        gopro::client::check_body(self.max_body, body.len())?;
        self.with(|cl| f(cl, Bytes::copy_from_slice(body)))
    }
}
