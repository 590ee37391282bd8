//! What a server callback may learn of the connection it serves: the
//! `gopro_connection_*` calls, over the core's `ConnectionInfo::current`.
//!
//! Each copies one value, as a NUL-terminated string, into the caller's
//! buffer, so that nothing the library owns outlives the callback; they
//! share the buffer rules of `gopro_last_error_message`.

use std::ffi::c_char;

use gopro::server::ConnectionInfo;

use crate::ffi;
use crate::status::{gopro_status, Fail};

/// What a `gopro_connection_*` call copies out. (The exported functions
/// are written out one by one, not made by a macro: cbindgen reads the
/// source as written.)
#[derive(Clone, Copy)]
enum Value {
    Peer,
    Local,
    TlsVersion,
    TlsServerName,
    ClientSubject,
    ClientCommonName,
}

impl Value {
    /// The value for the connection `info` describes; `None` when it has
    /// none (no TLS, no client certificate, no SNI).
    fn of(self, info: &ConnectionInfo) -> Option<String> {
        let tls = info.tls.as_ref();
        let client = tls.and_then(|t| t.client.as_ref());
        match self {
            Value::Peer => Some(info.peer.to_string()),
            Value::Local => info.local.map(|a| a.to_string()),
            Value::TlsVersion => tls.map(|t| t.version.to_string()),
            Value::TlsServerName => tls.and_then(|t| t.server_name.clone()),
            Value::ClientSubject => client.map(|c| c.subject.clone()),
            Value::ClientCommonName => client.and_then(|c| c.common_name.clone()),
        }
    }
}

/// The body of every `gopro_connection_*` call: `value` of the connection
/// being served, copied into `buf` (empty when the connection has none).
unsafe fn copy_out(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    value: Value,
) -> gopro_status {
    ffi_boundary!({
        let out_len = ffi::out(out_len, "out_len")?;
        let info = ConnectionInfo::current().ok_or_else(|| {
            Fail::new(
                gopro_status::NotInCallback,
                "gopro_connection_* describes the connection of the handler or \
                 authenticator that calls it; it was called outside one",
            )
        })?;
        let value = value.of(&info).unwrap_or_default();
        if buf.is_null() && cap == 0 {
            out_len.write(value.len());
            return Ok(());
        }
        let buf = unsafe { ffi::out_buf(buf.cast::<u8>(), cap, "buf") }?;
        if buf.len() < value.len() + 1 {
            return Err(Fail::new(
                gopro_status::BufferTooSmall,
                format!(
                    "the value is {} bytes and its NUL; the buffer holds {}",
                    value.len(),
                    buf.len()
                ),
            ));
        }
        buf[..value.len()].copy_from_slice(value.as_bytes());
        buf[value.len()] = 0;
        out_len.write(value.len());
        Ok(())
    })
}

/// From inside a handler or authenticator: copies the address of the peer
/// of the connection it serves (`"127.0.0.1:50000"`, `"[::1]:50000"`) into
/// `buf` as a NUL-terminated string, and its length (without the NUL) into
/// `*out_len`. The same rules serve every `gopro_connection_*` call:
///
/// - with `buf` NULL and `cap` 0 only `*out_len` is written, to size a
///   buffer; a `cap` under the length plus one gives
///   `GOPRO_STATUS_BUFFER_TOO_SMALL` and writes nothing;
/// - a value the connection does not have is the empty string;
/// - outside a server callback (the callback's thread, during the call)
///   they return `GOPRO_STATUS_NOT_IN_CALLBACK`.
#[no_mangle]
pub unsafe extern "C" fn gopro_connection_peer(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    unsafe { copy_out(buf, cap, out_len, Value::Peer) }
}

/// The server's address of the connection (`"127.0.0.1:9000"`).
#[no_mangle]
pub unsafe extern "C" fn gopro_connection_local(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    unsafe { copy_out(buf, cap, out_len, Value::Local) }
}

/// The connection's TLS version, `"TLSv1.3"` or `"TLSv1.2"`; empty for a
/// plaintext connection.
#[no_mangle]
pub unsafe extern "C" fn gopro_connection_tls_version(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    unsafe { copy_out(buf, cap, out_len, Value::TlsVersion) }
}

/// The server name the TLS client asked for (SNI); empty if it sent none
/// (clients connecting to an IP address do not) or without TLS.
#[no_mangle]
pub unsafe extern "C" fn gopro_connection_tls_server_name(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    unsafe { copy_out(buf, cap, out_len, Value::TlsServerName) }
}

/// The subject of the client's certificate (verified against the server's
/// CA), e.g. `"CN=device-42, O=Acme"`; empty when the client showed none.
#[no_mangle]
pub unsafe extern "C" fn gopro_connection_client_subject(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    unsafe { copy_out(buf, cap, out_len, Value::ClientSubject) }
}

/// The common name (CN) of the client certificate's subject, e.g.
/// `"device-42"`: what tells devices apart without a password. Empty when
/// the client showed no certificate or its subject has no CN.
#[no_mangle]
pub unsafe extern "C" fn gopro_connection_client_common_name(
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> gopro_status {
    unsafe { copy_out(buf, cap, out_len, Value::ClientCommonName) }
}
