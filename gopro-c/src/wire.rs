//! Wire bytes in and out: the only places where bytes are laid out as the
//! protocol wants them (big-endian, whatever the CPU). No struct in the
//! header has the wire layout.

use gopro::{Command, Encoder, Header, HEADER_LEN};

use crate::ffi;
use crate::status::{gopro_status, Fail};

/// Writes the 8-byte header of a frame (magic, `version`, `command`,
/// big-endian `length`) into `buf`, and 8 into `*out_written`.
///
/// `buf` is the caller's, `cap` bytes long; `GOPRO_STATUS_BUFFER_TOO_SMALL`
/// if `cap` < 8, and then nothing is written. No body limit is applied here.
/// Thread-safe (no shared state).
#[no_mangle]
pub unsafe extern "C" fn gopro_header_encode(
    version: u8,
    command: u8,
    length: u32,
    buf: *mut u8,
    cap: usize,
    out_written: *mut usize,
) -> gopro_status {
    ffi_boundary!({
        let buf = unsafe { ffi::out_buf(buf, cap, "buf") }?;
        let out_written = ffi::out(out_written, "out_written")?;
        // The header alone: any 32-bit length is allowed.
        let header = Encoder::with_max_body(u32::MAX as usize).header(
            version,
            Command(command),
            length as usize,
        )?;
        let dst = buf
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(gopro::Error::BufferTooSmall {
                needed: HEADER_LEN,
                capacity: cap,
            })?;
        *dst = header.to_bytes();
        out_written.write(HEADER_LEN);
        Ok(())
    })
}

/// Reads a header from the first 8 bytes of `bytes` (`len` may be more; the
/// rest is ignored) into `*out_version`, `*out_command` and `*out_length`
/// (converted from big-endian). Only the magic is checked:
/// `GOPRO_STATUS_BAD_MAGIC`; body limits and versions are the decoder's
/// business. Fewer than 8 bytes give `GOPRO_STATUS_NEED_MORE`.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn gopro_header_decode(
    bytes: *const u8,
    len: usize,
    out_version: *mut u8,
    out_command: *mut u8,
    out_length: *mut u32,
) -> gopro_status {
    ffi_boundary!({
        let bytes = unsafe { ffi::bytes(bytes, len, "bytes") }?;
        let out_version = ffi::out(out_version, "out_version")?;
        let out_command = ffi::out(out_command, "out_command")?;
        let out_length = ffi::out(out_length, "out_length")?;
        let head = bytes
            .first_chunk::<HEADER_LEN>()
            .ok_or_else(Fail::need_more)?;
        let header = Header::parse(head)?;
        out_version.write(header.version);
        out_command.write(header.command.code());
        out_length.write(header.length);
        Ok(())
    })
}

/// Writes a whole frame (header, then the `body_len` bytes at `body`) into
/// `buf`, and its size, 8 + `body_len`, into `*out_written`.
///
/// A body over `max_body` bytes (use `GOPRO_DEFAULT_MAX_BODY` for the
/// protocol's default) gives `GOPRO_STATUS_BODY_TOO_LARGE`; a `cap` under
/// 8 + `body_len` gives `GOPRO_STATUS_BUFFER_TOO_SMALL`. On failure nothing
/// is written. `body` may be NULL when `body_len` is 0; it must not overlap
/// `buf`. Thread-safe.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn gopro_frame_encode(
    version: u8,
    command: u8,
    body: *const u8,
    body_len: usize,
    max_body: usize,
    buf: *mut u8,
    cap: usize,
    out_written: *mut usize,
) -> gopro_status {
    ffi_boundary!({
        let body = unsafe { ffi::bytes(body, body_len, "body") }?;
        let buf = unsafe { ffi::out_buf(buf, cap, "buf") }?;
        let out_written = ffi::out(out_written, "out_written")?;
        let total = Encoder::with_max_body(max_body).encode_parts(
            version,
            Command(command),
            &[body],
            &mut &mut buf[..],
        )?;
        out_written.write(total);
        Ok(())
    })
}
