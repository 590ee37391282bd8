//! Pointer checks: every pointer from C goes through one of these, so NULL
//! becomes `GOPRO_STATUS_NULL_ARGUMENT` instead of undefined behaviour.

use std::ffi::{c_char, CStr};
use std::slice;

use crate::status::Fail;

/// Input bytes `(ptr, len)`. A NULL `ptr` is allowed when `len` is 0.
///
/// # Safety
/// When non-NULL, `ptr` must point to `len` readable bytes that stay valid
/// and unchanged for `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL and, by the caller's contract, `len` readable bytes.
    Ok(unsafe { slice::from_raw_parts(ptr, len) })
}

/// An output buffer `(ptr, cap)`; it must be non-NULL even when `cap` is 0,
/// since a NULL buffer is more likely a bug than an intent.
///
/// # Safety
/// When non-NULL, `ptr` must point to `cap` writable bytes not aliased for `'a`.
pub(crate) unsafe fn out_buf<'a>(
    ptr: *mut u8,
    cap: usize,
    what: &str,
) -> Result<&'a mut [u8], Fail> {
    if ptr.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL and, by the caller's contract, `cap` writable bytes.
    Ok(unsafe { slice::from_raw_parts_mut(ptr, cap) })
}

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// When non-NULL, `ptr` must point to a NUL-terminated string valid for `'a`.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) unsafe fn str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if ptr.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|_| Fail::invalid(format!("argument `{what}` is not UTF-8")))
}

/// An out-parameter, checked now and written later (only on success).
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// Writes the value without reading or dropping what was there.
    pub(crate) fn write(self, value: T) {
        // SAFETY: checked non-NULL in `out`; the caller promised it is writable.
        unsafe { self.0.write(value) }
    }
}

/// Checks an out-parameter for NULL.
pub(crate) fn out<T>(ptr: *mut T, what: &str) -> Result<Out<T>, Fail> {
    if ptr.is_null() {
        return Err(Fail::null(what));
    }
    Ok(Out(ptr))
}

/// The body of a getter: checks the out-parameter `ptr` for NULL, then
/// stores what `value` gives in it (nothing when `value` fails). Only the
/// client and server have such getters.
#[cfg(feature = "runtime")]
pub(crate) fn get<T>(
    ptr: *mut T,
    what: &str,
    value: impl FnOnce() -> Result<T, Fail>,
) -> Result<(), Fail> {
    let out = out(ptr, what)?;
    out.write(value()?);
    Ok(())
}

/// An optional out-parameter: NULL means the caller does not want it.
pub(crate) struct OptOut<T>(*mut T);

impl<T> OptOut<T> {
    pub(crate) fn new(ptr: *mut T) -> Self {
        OptOut(ptr)
    }

    pub(crate) fn write(self, value: T) {
        if !self.0.is_null() {
            // SAFETY: non-NULL; the caller promised it is writable.
            unsafe { self.0.write(value) }
        }
    }
}

/// A handle passed by the caller.
///
/// # Safety
/// When non-NULL, `ptr` must come from this library's constructor for `T`
/// and not have been freed.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) unsafe fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Fail> {
    // SAFETY: by the caller's contract a non-NULL pointer is a live handle.
    unsafe { ptr.as_ref() }.ok_or_else(|| Fail::null(what))
}

/// A handle passed by the caller, for exclusive use.
///
/// # Safety
/// As [`handle`], and no other reference to it may exist during the call.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Fail> {
    // SAFETY: by the caller's contract a non-NULL pointer is a live handle
    // that nobody else uses during this call.
    unsafe { ptr.as_mut() }.ok_or_else(|| Fail::null(what))
}

/// Gives a new handle to C.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Takes back and drops a handle given by [`into_handle`]; NULL is ignored.
///
/// # Safety
/// `ptr` must be NULL or come from [`into_handle`] and not have been freed.
pub(crate) unsafe fn free_handle<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: by the caller's contract it came from `Box::into_raw`.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// The out-parameters a frame is read into (`gopro_frame_get`,
/// `gopro_decoder_next`): command, version (optional), body and body length.
pub(crate) struct FrameOut {
    command: Out<u8>,
    version: OptOut<u8>,
    body: Out<*const u8>,
    body_len: Out<usize>,
}

impl FrameOut {
    /// Checks the out-parameters: only `out_version` may be NULL.
    // Inlined into each exported function, as the checks it replaces were:
    // the decoder's per-frame call pays for a function call otherwise.
    #[inline]
    pub(crate) fn new(
        out_command: *mut u8,
        out_version: *mut u8,
        out_body: *mut *const u8,
        out_body_len: *mut usize,
    ) -> Result<FrameOut, Fail> {
        Ok(FrameOut {
            command: out(out_command, "out_command")?,
            version: OptOut::new(out_version),
            body: out(out_body, "out_body")?,
            body_len: out(out_body_len, "out_body_len")?,
        })
    }

    /// Writes a frame: its header values, and `body` as a pointer (NULL for
    /// an empty body, so that C never sees a dangling one) and a length.
    #[inline]
    pub(crate) fn write(self, command: u8, version: u8, body: &[u8]) {
        self.command.write(command);
        self.version.write(version);
        self.body.write(if body.is_empty() {
            std::ptr::null()
        } else {
            body.as_ptr()
        });
        self.body_len.write(body.len());
    }
}

/// Writes a `#[repr(C)]` struct of integers that only grows (by fields
/// added at its end) into a caller's struct of `out.len()` bytes: the part
/// that fits, then zeroes for a newer struct's fields. Less than
/// `min_size` (the first version's size) is refused.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) fn write_prefix<T: Copy>(
    value: &T,
    min_size: usize,
    out: &mut [u8],
) -> Result<(), Fail> {
    if out.len() < min_size {
        return Err(Fail::invalid(format!(
            "out_size is {} bytes, less than the {min_size} of the first version of the struct",
            out.len()
        )));
    }
    // SAFETY: `T` is a `#[repr(C)]` struct of integers (no padding, no
    // pointers), so its bytes are all initialized and may be read as such.
    let bytes =
        unsafe { std::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) };
    let known = bytes.len().min(out.len());
    out[..known].copy_from_slice(&bytes[..known]);
    out[known..].fill(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::gopro_status;

    /// A struct of four counters whose first version had two: every size
    /// from the first version's up writes what fits and nothing past it.
    #[test]
    fn a_sized_struct_gets_the_fields_that_fit() {
        #[derive(Clone, Copy)]
        #[repr(C)]
        struct Four([u64; 4]);
        let value = Four([1, 2, 3, 4]);
        for size in [0, 8, 15] {
            let mut out = [0xAAu8; 40];
            let err = write_prefix(&value, 16, &mut out[..size]).unwrap_err();
            assert_eq!(err.status, gopro_status::InvalidArgument);
            assert_eq!(out, [0xAA; 40]);
        }
        for (size, want) in [
            (16, &[1u64, 2][..]),
            (24, &[1, 2, 3]),
            (32, &[1, 2, 3, 4]),
            (40, &[1, 2, 3, 4, 0]),
        ] {
            let mut out = [0xAAu8; 41];
            write_prefix(&value, 16, &mut out[..size]).unwrap();
            let got: Vec<u64> = out[..size]
                .chunks(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(got, want);
            assert!(
                out[size..].iter().all(|&b| b == 0xAA),
                "written past {size}"
            );
        }
    }
}
