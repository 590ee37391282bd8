//! Argument conversions shared by the codec, the clients and the server.

use std::time::Duration;

use bytes::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyInt};

/// The command byte of `obj`: a `gopro.Command` or a plain int 0–255.
pub(crate) fn command_code(obj: &Bound<'_, PyAny>) -> PyResult<u8> {
    if let Ok(int) = obj.cast::<PyInt>() {
        if let Ok(code) = int.extract::<i64>() {
            if let Ok(code) = u8::try_from(code) {
                return Ok(code);
            }
        }
        return Err(PyValueError::new_err(format!(
            "command must be 0-255, got {int}"
        )));
    }
    Err(PyValueError::new_err(format!(
        "command must be a gopro.Command or an int 0-255, not {}",
        obj.get_type().name()?
    )))
}

/// Runs `f` over the bytes of a bytes-like `obj` (bytes, bytearray,
/// memoryview, or anything else with the buffer protocol).
pub(crate) fn with_body<R>(obj: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(bytes) = obj.cast::<PyBytes>() {
        return Ok(f(bytes.as_bytes()));
    }
    if let Ok(array) = obj.cast::<PyByteArray>() {
        // SAFETY: no Python code runs while `f` reads the slice, so the
        // bytearray cannot be resized under it.
        return Ok(f(unsafe { array.as_bytes() }));
    }
    // The buffer protocol is not in the limited API before 3.11: go through
    // memoryview, which also rejects objects that are not bytes-like.
    static MEMORYVIEW: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
    let py = obj.py();
    let view = MEMORYVIEW
        .import(py, "builtins", "memoryview")?
        .call1((obj,))
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "body must be bytes-like (bytes, bytearray, memoryview), not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
    let bytes = view.call_method0("tobytes")?;
    let bytes = bytes.cast::<PyBytes>()?;
    Ok(f(bytes.as_bytes()))
}

/// The bytes of a bytes-like `obj`, copied.
pub(crate) fn body_bytes(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    with_body(obj, Bytes::copy_from_slice)
}

/// Seconds (int or float) as a duration. Only the conversion is checked
/// here (a negative, infinite or NaN number is no duration); what a setting
/// allows (a timeout longer than zero) is the core's rule.
pub(crate) fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite number of seconds, not negative, got {value}"
        ))
    })
}

/// `text` quoted as Python's `repr` quotes a str, for `__repr__`s.
pub(crate) fn quoted(py: Python<'_>, text: &str) -> String {
    pyo3::types::PyString::new(py, text)
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| format!("{text:?}"))
}
