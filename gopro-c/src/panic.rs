//! The panic boundary: no panic may unwind into C.

/// Runs `$body` (an expression of type `Result<(), Fail>`) and turns its
/// outcome into a `gopro_status`: `Ok` is `GOPRO_STATUS_OK`, `Err` records
/// its message for `gopro_last_error_message` and returns its status, and a
/// panic becomes `GOPRO_STATUS_PANIC`.
macro_rules! ffi_boundary {
    ($body:expr) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> ::std::result::Result<(), $crate::status::Fail> { $body },
        )) {
            Ok(Ok(())) => $crate::status::gopro_status::Ok,
            Ok(Err(fail)) => fail.record(),
            Err(payload) => $crate::status::Fail::from_panic(payload).record(),
        }
    }};
}

/// For functions that return nothing (the `_free` functions): a panic is
/// swallowed, since there is no status to report it with.
macro_rules! ffi_boundary_void {
    ($body:expr) => {{
        let _ = ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body));
    }};
}
