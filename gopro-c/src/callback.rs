//! C callbacks run by the server: the handler and authenticator function
//! types, the reply they build, and the flag that keeps blocking calls out
//! of them (the client and the server handle both check it).

use std::ffi::{c_char, c_int, c_void, CStr};

use bytes::Bytes;
use gopro::server::Reply;
use gopro::Frame;

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
/// `GOPRO_STATUS_BLOCKING_IN_RUNTIME` there.
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

pub(crate) type Handler =
    unsafe extern "C" fn(*mut c_void, u8, *const u8, usize, *mut gopro_reply) -> c_int;
pub(crate) type Authenticate =
    unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut gopro_reply) -> c_int;

/// A C function and its `user_data`.
#[derive(Clone, Copy)]
pub(crate) struct Callback<F> {
    pub(crate) f: F,
    pub(crate) user_data: *mut c_void,
}

// SAFETY: the caller of `gopro_server_config_set_*` promises that the
// function and `user_data` may be used from any thread (documented there).
unsafe impl<F> Send for Callback<F> {}
// SAFETY: as above.
unsafe impl<F> Sync for Callback<F> {}

/// Blocking calls from inside a callback would stall (or deadlock) the
/// runtime thread that runs it: the core's rule
/// (`gopro::blocking::on_runtime_thread`), for the calls of the C layer
/// that block (server stop and free) as for the client's.
pub(crate) fn check_not_in_callback() -> Result<(), Fail> {
    if gopro::blocking::on_runtime_thread() {
        return Err(Fail::from(gopro::client::ClientError::BlockingInRuntime));
    }
    Ok(())
}

/// Runs a C callback. C code may block (on a lock, a disk, a sleep); a
/// worker that blocks inside a task would also hold up the timers and
/// sockets that the runtime's other threads wait on, so the worker hands
/// its other work to another thread first.
fn in_callback<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn body_ptr(body: &[u8]) -> *const u8 {
    if body.is_empty() {
        std::ptr::null()
    } else {
        body.as_ptr()
    }
}

fn error_reason(reply: gopro_reply, status: c_int, default: &str) -> String {
    reply
        .error
        .unwrap_or_else(|| match gopro_status::from_int(status) {
            Some(s) if s != gopro_status::Ok => s.message().trim_end_matches('\0').to_string(),
            _ => default.to_string(),
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
    pub(crate) fn call(self, credentials: &Bytes) -> Result<(), String> {
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
        let body = unsafe { ffi::bytes(body, len, "body") }?;
        unsafe { ffi::handle_mut(reply, "reply") }?.body = Some(Bytes::copy_from_slice(body));
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
