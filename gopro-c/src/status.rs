//! The status codes every function returns, and the per-thread message of
//! the last failure.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int};

use crate::ffi;

/// What a call returned. `GOPRO_STATUS_OK` is 0; every other value is a
/// reason the call did not do its work. Numbers are stable: a published
/// number is never given another meaning, and new ones are only added.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gopro_status {
    /// Success.
    Ok = 0,
    /// Not an error: the decoder has no complete frame yet (feed it more
    /// bytes), or a header needs 8 bytes and got fewer.
    NeedMore = 1,
    /// A required pointer argument was NULL.
    NullArgument = 2,
    /// An argument is out of range or malformed (e.g. an address that is
    /// not UTF-8 `host:port`, a command that cannot be handled).
    InvalidArgument = 3,
    /// The caller's output buffer is too small; nothing was written.
    BufferTooSmall = 4,
    /// The stream does not start with the magic `0x47 0x4F` ("GO").
    BadMagic = 5,
    /// A frame's body is over the body limit (decoded, encoded or sent).
    BodyTooLarge = 6,
    /// The frame's version is not the one the decoder requires.
    UnsupportedVersion = 7,
    /// The stream ended inside a frame.
    UnexpectedEof = 8,
    /// The client could not connect.
    ConnectFailed = 9,
    /// No answer within the time allowed. The client's connection is closed.
    Timeout = 10,
    /// The connection is closed: by the server, after a failure, or by
    /// `gopro_client_close`.
    Closed = 11,
    /// The server answered with an ERROR frame; its reason is the message of
    /// `gopro_last_error_message`. The connection stays usable.
    ServerError = 12,
    /// The server is shutting down (it sent GOAWAY, whose reason is the
    /// message of `gopro_last_error_message`). Requests without a reply were
    /// not handled and may be sent to another server.
    Goaway = 13,
    /// The server's bytes are not valid GoPro frames.
    ProtocolError = 14,
    /// The server answered a HEARTBEAT or LOGIN with something else.
    UnexpectedReply = 15,
    /// An operating-system input/output error.
    IoError = 16,
    /// The server could not listen on the address.
    BindFailed = 17,
    /// No longer returned: its two cases are now
    /// `GOPRO_STATUS_NOTHING_IN_FLIGHT` and `GOPRO_STATUS_BLOCKING_IN_RUNTIME`.
    /// The number stays taken, so that it is never given another meaning.
    InvalidState = 18,
    /// A bug: the library panicked. The handle involved should be freed.
    Panic = 19,
    /// A receive asked for a reply with no request in flight; nothing was
    /// waited for.
    NothingInFlight = 20,
    /// A blocking call was made from a runtime thread (a server callback),
    /// where it would stall or deadlock the runtime.
    BlockingInRuntime = 21,
    /// The connection was lost (reset, ended, or the server stopped
    /// answering) after the request was written: it may have been handled,
    /// so it was not sent again. A client that reconnects
    /// (`gopro_client_config_set_reconnect`) takes new requests.
    ConnectionLost = 22,
    /// The TLS handshake failed: the server's certificate is not trusted,
    /// has expired or names another host, the server refused the client's
    /// certificate (or its lack of one), or the server does not speak TLS.
    /// Nothing was sent.
    TlsHandshake = 23,
    /// A TLS setting was refused: a certificate, key or CA that cannot be
    /// read or parsed (the file is named in the message), a key that does
    /// not belong to its certificate, an invalid server name, a server
    /// without a certificate, or a reload that failed (the certificate in
    /// use stays).
    TlsConfig = 24,
    /// A `gopro_connection_*` call made outside a server callback: there is
    /// no connection to describe.
    NotInCallback = 25,
}

impl gopro_status {
    pub(crate) fn message(self) -> &'static str {
        match self {
            gopro_status::Ok => "ok\0",
            gopro_status::NeedMore => "more bytes are needed\0",
            gopro_status::NullArgument => "a required pointer argument was NULL\0",
            gopro_status::InvalidArgument => "invalid argument\0",
            gopro_status::BufferTooSmall => "the output buffer is too small\0",
            gopro_status::BadMagic => "bad magic: the stream is not GoPro or is out of sync\0",
            gopro_status::BodyTooLarge => "frame body exceeds the body limit\0",
            gopro_status::UnsupportedVersion => "unsupported protocol version\0",
            gopro_status::UnexpectedEof => "unexpected end of stream inside a frame\0",
            gopro_status::ConnectFailed => "cannot connect\0",
            gopro_status::Timeout => "timed out\0",
            gopro_status::Closed => "connection closed\0",
            gopro_status::ServerError => "the server answered with an ERROR frame\0",
            gopro_status::Goaway => "the server is going away (GOAWAY)\0",
            gopro_status::ProtocolError => "protocol error: the peer sent invalid frames\0",
            gopro_status::UnexpectedReply => "unexpected reply\0",
            gopro_status::IoError => "i/o error\0",
            gopro_status::BindFailed => "cannot listen on the address\0",
            gopro_status::InvalidState => "the call is not allowed in this state\0",
            gopro_status::Panic => "internal error (panic) in libgopro\0",
            gopro_status::NothingInFlight => "no request is in flight: send one first\0",
            gopro_status::BlockingInRuntime => {
                "a blocking call was made from a runtime thread (a server callback)\0"
            }
            gopro_status::ConnectionLost => {
                "the connection was lost after the request was written: it may have been handled\0"
            }
            gopro_status::TlsHandshake => "the TLS handshake failed\0",
            gopro_status::TlsConfig => "a TLS setting was refused\0",
            gopro_status::NotInCallback => {
                "not called from a server callback: there is no connection\0"
            }
        }
    }

    /// The status numbered `n`, if there is one. A match rather than a
    /// table, so that there is no count to keep in step with the enum; the
    /// unit test checks it against every status the header declares.
    pub(crate) fn from_int(n: c_int) -> Option<gopro_status> {
        Some(match n {
            0 => gopro_status::Ok,
            1 => gopro_status::NeedMore,
            2 => gopro_status::NullArgument,
            3 => gopro_status::InvalidArgument,
            4 => gopro_status::BufferTooSmall,
            5 => gopro_status::BadMagic,
            6 => gopro_status::BodyTooLarge,
            7 => gopro_status::UnsupportedVersion,
            8 => gopro_status::UnexpectedEof,
            9 => gopro_status::ConnectFailed,
            10 => gopro_status::Timeout,
            11 => gopro_status::Closed,
            12 => gopro_status::ServerError,
            13 => gopro_status::Goaway,
            14 => gopro_status::ProtocolError,
            15 => gopro_status::UnexpectedReply,
            16 => gopro_status::IoError,
            17 => gopro_status::BindFailed,
            18 => gopro_status::InvalidState,
            19 => gopro_status::Panic,
            20 => gopro_status::NothingInFlight,
            21 => gopro_status::BlockingInRuntime,
            22 => gopro_status::ConnectionLost,
            23 => gopro_status::TlsHandshake,
            24 => gopro_status::TlsConfig,
            25 => gopro_status::NotInCallback,
            _ => return None,
        })
    }
}

/// A static, NUL-terminated English description of `status`; never NULL and
/// never freed. Unknown numbers give `"unknown status"`. The parameter is an
/// `int` so that any number a program holds is safe to pass. Thread-safe.
#[no_mangle]
pub extern "C" fn gopro_status_str(status: c_int) -> *const c_char {
    let message = gopro_status::from_int(status).map_or("unknown status\0", |s| s.message());
    message.as_ptr().cast()
}

/// Copies the message of the last failed call made on the calling thread
/// into `buf` as a NUL-terminated string, and its length (without the NUL)
/// into `*out_len`. For `GOPRO_STATUS_SERVER_ERROR` and `GOPRO_STATUS_GOAWAY`
/// the message is exactly the server's reason; otherwise it says what
/// failed in more detail than `gopro_status_str`. Successful calls leave it
/// as it was.
///
/// With `buf` NULL and `cap` 0, only `*out_len` is written, so the caller
/// can size its buffer. If `cap` is less than the length plus one, nothing is
/// written and `GOPRO_STATUS_BUFFER_TOO_SMALL` is returned. A failure of this
/// function does not replace the message. Thread-safe: each thread has its
/// own message.
#[no_mangle]
pub unsafe extern "C" fn gopro_last_error_message(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    // Not through `ffi_boundary!`: a failure here must not replace the
    // message the caller is trying to read.
    let result = std::panic::catch_unwind(|| -> Result<(), gopro_status> {
        let out_len = ffi::out(out_len, "out_len").map_err(|f| f.status)?;
        let message = LAST_ERROR.with(|m| m.borrow().clone());
        if buf.is_null() && cap == 0 {
            out_len.write(message.len());
            return Ok(());
        }
        let buf = unsafe { ffi::out_buf(buf.cast::<u8>(), cap, "buf") }.map_err(|f| f.status)?;
        if buf.len() < message.len() + 1 {
            return Err(gopro_status::BufferTooSmall);
        }
        buf[..message.len()].copy_from_slice(message.as_bytes());
        buf[message.len()] = 0;
        out_len.write(message.len());
        Ok(())
    });
    match result {
        Ok(Ok(())) => gopro_status::Ok,
        Ok(Err(status)) => status,
        Err(_) => gopro_status::Panic,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A failed call: its status and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: gopro_status,
    message: String,
}

impl Fail {
    pub(crate) fn new(status: gopro_status, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Fail {
        Fail::new(
            gopro_status::NullArgument,
            format!("argument `{what}` is NULL"),
        )
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Fail {
        Fail::new(gopro_status::InvalidArgument, message)
    }

    pub(crate) fn need_more() -> Fail {
        Fail {
            status: gopro_status::NeedMore,
            message: String::new(),
        }
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn from_panic(payload: Box<dyn Any + Send>) -> Fail {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Fail::new(gopro_status::Panic, format!("libgopro panicked: {what}"))
    }

    /// Stores the message for `gopro_last_error_message` and gives the status.
    pub(crate) fn record(self) -> gopro_status {
        let Fail { status, message } = self;
        LAST_ERROR.with(|m| {
            let mut m = m.borrow_mut();
            m.clear();
            if message.is_empty() {
                m.push_str(status.message().trim_end_matches('\0'));
            } else {
                m.push_str(&message);
            }
        });
        status
    }
}

/// The status of a codec error: the one place the codec's errors are mapped.
fn codec_status(e: &gopro::Error) -> gopro_status {
    match e {
        gopro::Error::BadMagic { .. } => gopro_status::BadMagic,
        gopro::Error::BodyTooLarge { .. } => gopro_status::BodyTooLarge,
        gopro::Error::UnsupportedVersion { .. } => gopro_status::UnsupportedVersion,
        gopro::Error::UnexpectedEof { .. } => gopro_status::UnexpectedEof,
        gopro::Error::BufferTooSmall { .. } => gopro_status::BufferTooSmall,
        _ => gopro_status::IoError,
    }
}

impl From<gopro::Error> for Fail {
    fn from(e: gopro::Error) -> Fail {
        Fail::new(codec_status(&e), e.to_string())
    }
}

#[cfg(feature = "runtime")]
impl From<gopro::client::ClientError> for Fail {
    fn from(e: gopro::client::ClientError) -> Fail {
        use gopro::client::ClientError as E;
        let status = match &e {
            E::Connect { .. } => gopro_status::ConnectFailed,
            E::Tls { .. } => gopro_status::TlsHandshake,
            E::Timeout { .. } => gopro_status::Timeout,
            E::Closed { .. } => gopro_status::Closed,
            E::Lost { .. } => gopro_status::ConnectionLost,
            E::Server { reason } => return Fail::new(gopro_status::ServerError, reason.clone()),
            E::GoAway { reason, .. } => return Fail::new(gopro_status::Goaway, reason.clone()),
            E::Protocol(_) => gopro_status::ProtocolError,
            E::Config(_) => gopro_status::InvalidArgument,
            E::BodyTooLarge { .. } => gopro_status::BodyTooLarge,
            E::InvalidEncoded { .. } => gopro_status::InvalidArgument,
            E::UnexpectedReply { .. } => gopro_status::UnexpectedReply,
            E::NothingInFlight { .. } => gopro_status::NothingInFlight,
            E::BlockingInRuntime => gopro_status::BlockingInRuntime,
            E::Io(_) => gopro_status::IoError,
            _ => gopro_status::IoError,
        };
        Fail::new(status, e.to_string())
    }
}

#[cfg(feature = "runtime")]
impl From<gopro::settings::ConfigError> for Fail {
    fn from(e: gopro::settings::ConfigError) -> Fail {
        Fail::invalid(e.to_string())
    }
}

#[cfg(feature = "runtime")]
impl From<gopro::server::ServerError> for Fail {
    fn from(e: gopro::server::ServerError) -> Fail {
        use gopro::server::ServerError as E;
        let status = match &e {
            E::Config(_) => gopro_status::InvalidArgument,
            E::Bind { .. } => gopro_status::BindFailed,
            E::Tls(_) => gopro_status::TlsConfig,
            E::BlockingInRuntime => gopro_status::BlockingInRuntime,
            E::Runtime(_) => gopro_status::IoError,
            _ => gopro_status::IoError,
        };
        Fail::new(status, e.to_string())
    }
}

#[cfg(feature = "runtime")]
impl From<gopro::tls::TlsError> for Fail {
    fn from(e: gopro::tls::TlsError) -> Fail {
        // Every kind is a refused setting, which the message tells apart.
        Fail::new(gopro_status::TlsConfig, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NothingInFlight` -> `GOPRO_STATUS_NOTHING_IN_FLIGHT`, as cbindgen names it.
    fn c_name(status: gopro_status) -> String {
        let mut name = String::from("GOPRO_STATUS");
        for c in format!("{status:?}").chars() {
            if c.is_ascii_uppercase() {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
        name
    }

    #[cfg(feature = "runtime")]
    #[test]
    fn every_core_error_has_the_status_of_the_readme_table() {
        use gopro::error_samples::{self, AnyError};
        let readme = include_str!("../../README.md");
        let table = error_samples::table(readme);
        let samples = error_samples::samples();
        assert_eq!(table.len(), samples.len(), "one row per error kind");
        for (sample, [rust, c, _]) in samples.into_iter().zip(table) {
            assert_eq!(error_samples::name(&sample), rust);
            let fail = match sample {
                AnyError::Codec(e) => Fail::from(e),
                AnyError::Client(e) => Fail::from(e),
                AnyError::Server(e) => Fail::from(e),
                AnyError::Tls(e) => Fail::from(e),
            };
            assert_eq!(c_name(fail.status), c, "{rust}");
            assert!(!fail.message().is_empty(), "{rust}");
        }
    }

    /// Every `GOPRO_STATUS_X = N` of the header (which scripts/test-c.sh
    /// keeps in step with the enum) converts back from its number and has a
    /// message; no number past them does.
    #[test]
    fn every_status_number_has_a_message() {
        let header = include_str!("../../include/gopro.h");
        let mut numbers: Vec<c_int> = header
            .lines()
            .filter_map(|line| line.trim().strip_prefix("GOPRO_STATUS_"))
            .filter_map(|rest| rest.trim_end_matches(',').split_once(" = "))
            .map(|(_, n)| n.parse().expect("a status number"))
            .collect();
        numbers.sort_unstable();
        assert!(numbers.len() >= 20, "{numbers:?}");
        for (i, &n) in numbers.iter().enumerate() {
            assert_eq!(n, i as c_int, "status numbers run from 0 without gaps");
            let status = gopro_status::from_int(n).expect("a status for every number");
            assert_eq!(status as c_int, n);
            assert!(status.message().ends_with('\0'));
            assert!(status.message().len() > 1);
        }
        let past = numbers.len() as c_int;
        for n in [-1, past, past + 1, c_int::MAX, c_int::MIN] {
            assert_eq!(gopro_status::from_int(n), None);
        }
    }
}
