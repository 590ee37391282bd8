//! `gopro_client_submit`: a request whose outcome goes to a C callback, for
//! programs that cannot block a thread per request (an event loop of their
//! own). The callback runs exactly once per accepted request, and the
//! client counts the callbacks owed so that closing it can wait for them:
//! after `gopro_client_close` or `gopro_client_free`, no callback runs, and
//! the caller may free what `user_data` points to.

use std::ffi::c_void;
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use gopro::client::{Callback, ClientError};
use gopro::{Command, Frame};

use crate::client::{gopro_client, gopro_frame};
use crate::ffi;
use crate::status::{gopro_status, Fail};

/// Receives the outcome of a request made with `gopro_client_submit`:
/// called exactly once per request the call accepted, with `user_data` as
/// given there, the request's `status`, and, for `GOPRO_STATUS_OK`, its
/// `reply` (NULL otherwise). The reply belongs to the library and is valid
/// only during the call: read it with `gopro_frame_get` and copy what is
/// kept; do not free it. On a failure, `gopro_last_error_message` on the
/// calling thread says why (for `GOPRO_STATUS_SERVER_ERROR`, the server's
/// reason).
///
/// Called on one of the library's runtime threads, the one that reads the
/// connection: keep it short and never block in it, since the replies of
/// every caller of the client wait meanwhile. Blocking calls return
/// `GOPRO_STATUS_BLOCKING_IN_RUNTIME` there; `gopro_client_submit` works
/// while the client has room.
pub type gopro_completion_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, status: gopro_status, reply: *const gopro_frame),
>;

type CompletionFn = unsafe extern "C" fn(*mut c_void, gopro_status, *const gopro_frame);

/// How many completions a client still owes, to wait until there are none.
#[derive(Default)]
pub(crate) struct Pending {
    owed: Mutex<usize>,
    none: Condvar,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.owed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One completion more, until the [`Owed`] is dropped.
    fn owe(self: &Arc<Self>) -> Owed {
        *self.lock() += 1;
        Owed(Arc::clone(self))
    }

    /// Waits until no completion is owed.
    pub(crate) fn wait_idle(&self) {
        let mut owed = self.lock();
        while *owed > 0 {
            owed = self.none.wait(owed).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A completion owed; paid when dropped (after its callback has run).
struct Owed(Arc<Pending>);

impl Drop for Owed {
    fn drop(&mut self) {
        let mut owed = self.0.lock();
        *owed -= 1;
        if *owed == 0 {
            self.0.none.notify_all();
        }
    }
}

/// A C callback, its `user_data`, and the completion it pays.
struct Completion {
    f: CompletionFn,
    user_data: *mut c_void,
    owed: Owed,
}

// SAFETY: the caller of `gopro_client_submit` promises that the callback
// and `user_data` may be used from the library's threads (documented on
// `gopro_completion_fn`).
unsafe impl Send for Completion {}

impl Completion {
    fn run(self, result: Result<Frame, ClientError>) {
        match result {
            Ok(frame) => {
                let reply = gopro_frame { frame };
                // SAFETY: a C function pointer given by the caller; `reply`
                // lives until it returns.
                unsafe { (self.f)(self.user_data, gopro_status::Ok, &reply) }
            }
            Err(e) => {
                let status = Fail::from(e).record();
                // SAFETY: as above.
                unsafe { (self.f)(self.user_data, status, std::ptr::null()) }
            }
        }
        drop(self.owed);
    }

    fn into_callback(self) -> Callback {
        Box::new(move |result| self.run(result))
    }
}

/// Sends one request (command `command`, body copied from `body`/`body_len`)
/// without waiting for its reply: `callback` gets the outcome, once, with
/// `user_data` (see `gopro_completion_fn`). Callable from any number of
/// threads at once; requests are written in the order they are submitted.
///
/// Returns at once while the client has room; when it is full
/// (`gopro_client_config_set_max_in_flight`), waits for room within the
/// client's timeout (`GOPRO_STATUS_TIMEOUT`), or, in a callback, where it
/// cannot wait, returns `GOPRO_STATUS_BLOCKING_IN_RUNTIME`. On any status
/// but `GOPRO_STATUS_OK` nothing was sent and `callback` is not called.
/// `gopro_client_close` and `gopro_client_free` wait for every callback
/// owed, failing unanswered requests with `GOPRO_STATUS_CLOSED`.
#[no_mangle]
pub unsafe extern "C" fn gopro_client_submit(
    client: *const gopro_client,
    command: u8,
    body: *const u8,
    body_len: usize,
    callback: gopro_completion_fn,
    user_data: *mut c_void,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle(client, "client") }?;
        let body = unsafe { ffi::bytes(body, body_len, "body") }?;
        let f = callback.ok_or_else(|| Fail::null("callback"))?;
        c.check_body(body.len())?;
        let done = Completion {
            f,
            user_data,
            owed: c.pending.owe(),
        };
        Ok(c.client()
            .submit(Command(command), body, done.into_callback())?)
    })
}
