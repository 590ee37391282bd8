//! The sans-IO decoder handle: bytes in, frames out, no IO of its own.

use bytes::{Buf, BytesMut};
use gopro::{CodecBuilder, Decoder};

use crate::ffi;
use crate::status::{gopro_status, Fail};

/// A frame decoder over a byte stream (SPEC §1–2): feed it bytes as they
/// arrive, in pieces of any size, and take complete frames out.
///
/// Created by `gopro_decoder_new`, freed by `gopro_decoder_free`. Not
/// thread-safe: one thread at a time (it may move between threads).
pub struct gopro_decoder {
    decoder: Decoder,
    buffer: BytesMut,
    /// Length of the body last handed out, still at the front of `buffer`
    /// (read in place, not copied); dropped at the next call.
    handed_out: usize,
    /// After a decoding error the stream is out of sync; the error sticks.
    failed: Option<(gopro_status, String)>,
}

/// Creates a decoder into `*out`. Bodies over `max_body` bytes are refused
/// on their header alone, before any body byte is buffered
/// (`GOPRO_DEFAULT_MAX_BODY` is the protocol's default). `required_version`
/// is `GOPRO_ANY_VERSION` to decode any version (the frame reports it), or
/// 0–255 to refuse any other version with `GOPRO_STATUS_UNSUPPORTED_VERSION`;
/// other values give `GOPRO_STATUS_INVALID_ARGUMENT`.
///
/// The caller owns the decoder and frees it with `gopro_decoder_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_decoder_new(
    max_body: usize,
    required_version: i32,
    out: *mut *mut gopro_decoder,
) -> gopro_status {
    ffi_boundary!({
        let out = ffi::out(out, "out")?;
        let mut builder = CodecBuilder::new().max_body(max_body);
        match required_version {
            crate::GOPRO_ANY_VERSION => {}
            v => {
                let v = u8::try_from(v).map_err(|_| {
                    Fail::invalid(format!(
                        "required_version {v} is neither 0-255 nor GOPRO_ANY_VERSION"
                    ))
                })?;
                builder = builder.require_version(v);
            }
        }
        out.write(ffi::into_handle(gopro_decoder {
            decoder: builder.decoder(),
            buffer: BytesMut::new(),
            handed_out: 0,
            failed: None,
        }));
        Ok(())
    })
}

/// Appends `len` bytes from `bytes` (copied; the caller keeps its buffer) to
/// the decoder's buffer. Invalidates the body returned by the previous
/// `gopro_decoder_next`. After a decoding error, returns that error again.
#[no_mangle]
pub unsafe extern "C" fn gopro_decoder_feed(
    decoder: *mut gopro_decoder,
    bytes: *const u8,
    len: usize,
) -> gopro_status {
    ffi_boundary!({
        let d = unsafe { ffi::handle_mut(decoder, "decoder") }?;
        let bytes = unsafe { ffi::bytes(bytes, len, "bytes") }?;
        d.check_failed()?;
        d.release();
        d.buffer.extend_from_slice(bytes);
        Ok(())
    })
}

/// Takes the next complete frame: its command into `*out_command`, its
/// version into `*out_version`, and its body as `*out_body` (pointer) and
/// `*out_body_len`. The body stays owned by the decoder and valid until the
/// next call on this decoder (feed, next, finish or free); `*out_body` is
/// NULL for an empty body. `out_version` may be NULL if not wanted.
///
/// Returns `GOPRO_STATUS_NEED_MORE` when no whole frame is buffered (feed
/// more bytes), or `GOPRO_STATUS_BAD_MAGIC`, `GOPRO_STATUS_BODY_TOO_LARGE`
/// or `GOPRO_STATUS_UNSUPPORTED_VERSION` when the stream cannot be trusted;
/// such an error is returned again by every later call.
#[no_mangle]
pub unsafe extern "C" fn gopro_decoder_next(
    decoder: *mut gopro_decoder,
    out_command: *mut u8,
    out_version: *mut u8,
    out_body: *mut *const u8,
    out_body_len: *mut usize,
) -> gopro_status {
    ffi_boundary!({
        let d = unsafe { ffi::handle_mut(decoder, "decoder") }?;
        let out = ffi::FrameOut::new(out_command, out_version, out_body, out_body_len)?;
        d.check_failed()?;
        d.release();
        let header = match d.decoder.decode_in_place(&mut d.buffer) {
            Ok(Some(header)) => header,
            Ok(None) => return Err(Fail::need_more()),
            Err(e) => {
                let fail = Fail::from(e);
                d.failed = Some((fail.status, fail.message().to_string()));
                return Err(fail);
            }
        };
        d.handed_out = header.length as usize;
        // decode_in_place leaves the body at the front of the buffer.
        out.write(
            header.command.code(),
            header.version,
            &d.buffer[..d.handed_out],
        );
        Ok(())
    })
}

/// One frame handed out by `gopro_decoder_next_many`: values in host
/// order (this is not the wire layout); `body` points into the decoder's
/// buffer (NULL for an empty body) and stays valid until the next call on
/// the decoder.
#[repr(C)]
pub struct gopro_frame_view {
    /// The command byte.
    pub command: u8,
    /// The version byte.
    pub version: u8,
    /// The body, owned by the decoder.
    pub body: *const u8,
    /// The body's length in bytes.
    pub body_len: usize,
}

/// Takes up to `capacity` complete frames at once into `frames[0]` ..
/// `frames[*out_count - 1]`: the same frames, in the same order, as that
/// many calls of `gopro_decoder_next`, for one crossing of the library
/// boundary. Bodies stay owned by the decoder and valid until the next call
/// on it (feed, next, next_many, finish or free).
///
/// Returns `GOPRO_STATUS_OK` with `*out_count` at least 1,
/// `GOPRO_STATUS_NEED_MORE` when no whole frame is buffered, or the
/// decoding error of `gopro_decoder_next`. A decoding error after some
/// frames returns those frames first; the error comes with the next call.
/// `capacity` 0 is `GOPRO_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub unsafe extern "C" fn gopro_decoder_next_many(
    decoder: *mut gopro_decoder,
    frames: *mut gopro_frame_view,
    capacity: usize,
    out_count: *mut usize,
) -> gopro_status {
    ffi_boundary!({
        let d = unsafe { ffi::handle_mut(decoder, "decoder") }?;
        let out_count = ffi::out(out_count, "out_count")?;
        if frames.is_null() {
            return Err(Fail::null("frames"));
        }
        if capacity == 0 {
            return Err(Fail::invalid("capacity must be at least 1"));
        }
        // SAFETY: non-null, and the caller promises room for `capacity` views.
        let views = unsafe { std::slice::from_raw_parts_mut(frames, capacity) };
        d.check_failed()?;
        d.release();
        // Frames are read in place through a cursor; the buffer is advanced
        // past them all at the next call, as for a single frame.
        let mut at = 0;
        let mut count = 0;
        while count < capacity {
            match d.decoder.decode_slice(&d.buffer, &mut at) {
                Ok(Some(header)) => {
                    let length = header.length as usize;
                    let body = at - length;
                    views[count] = gopro_frame_view {
                        command: header.command.code(),
                        version: header.version,
                        body: if length == 0 {
                            std::ptr::null()
                        } else {
                            d.buffer[body..].as_ptr()
                        },
                        body_len: length,
                    };
                    count += 1;
                }
                Ok(None) => break,
                Err(e) => {
                    let fail = Fail::from(e);
                    d.failed = Some((fail.status, fail.message().to_string()));
                    if count == 0 {
                        return Err(fail);
                    }
                    break;
                }
            }
        }
        d.handed_out = at;
        if count == 0 {
            return Err(Fail::need_more());
        }
        out_count.write(count);
        Ok(())
    })
}

/// Tells the decoder the stream has ended. `GOPRO_STATUS_OK` if it ended
/// cleanly between frames; `GOPRO_STATUS_UNEXPECTED_EOF` if bytes of an
/// unfinished frame (or frames not yet taken with `gopro_decoder_next`) are
/// buffered — a short frame is never produced. A previous decoding error is
/// returned again.
#[no_mangle]
pub unsafe extern "C" fn gopro_decoder_finish(decoder: *mut gopro_decoder) -> gopro_status {
    ffi_boundary!({
        let d = unsafe { ffi::handle_mut(decoder, "decoder") }?;
        d.check_failed()?;
        d.release();
        // The core's verdict on what is buffered, without taking it: the
        // caller may still take the frames that are whole.
        d.decoder
            .end_of_stream(&d.buffer)
            .map_or(Ok(()), |e| Err(e.into()))
    })
}

/// Frees a decoder and the bodies it handed out. NULL is ignored.
#[no_mangle]
pub unsafe extern "C" fn gopro_decoder_free(decoder: *mut gopro_decoder) {
    ffi_boundary_void!(unsafe { ffi::free_handle(decoder) })
}

impl gopro_decoder {
    /// Drops the body handed out by the previous `gopro_decoder_next`.
    fn release(&mut self) {
        self.buffer.advance(self.handed_out);
        self.handed_out = 0;
    }

    fn check_failed(&self) -> Result<(), Fail> {
        match &self.failed {
            Some((status, message)) => Err(Fail::new(*status, message.clone())),
            None => Ok(()),
        }
    }
}
