//! `Command`, `Frame`, `encode`, `decode` and `Decoder`: the core's sans-IO codec.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use bytes::{Bytes, BytesMut};
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyType};

use crate::errors::{frame_err, kind, FRAME_ERROR, INCOMPLETE_FRAME};
use crate::util::{command_code, with_body};

/// The named commands, in code order (SPEC §3).
const NAMES: [&str; 5] = ["HEARTBEAT", "MESSAGE", "LOGIN", "ERROR", "GOAWAY"];

static COMMAND: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static MEMBERS: PyOnceLock<Vec<Py<PyAny>>> = PyOnceLock::new();

/// `gopro.Command`, an `IntEnum` of the named codes. Made with the
/// functional `IntEnum` API so that it is a real enum, not an imitation.
pub(crate) fn command_enum(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    COMMAND
        .get_or_try_init(py, || {
            let members: Vec<(&str, usize)> = NAMES
                .iter()
                .enumerate()
                .map(|(code, name)| (*name, code))
                .collect();
            let kwargs = pyo3::types::PyDict::new(py);
            kwargs.set_item("module", "gopro._gopro")?;
            let cls = py
                .import("enum")?
                .getattr("IntEnum")?
                .call(("Command", members), Some(&kwargs))?;
            cls.setattr(
                "__doc__",
                "The command byte of a frame (SPEC §3). Codes 5-15 are reserved, \
                 16-255 are the application's; wherever a command is taken, a plain \
                 int 0-255 works too.",
            )?;
            Ok(cls.cast_into::<PyType>()?.unbind())
        })
        .map(|c| c.bind(py))
}

/// The Python value of a command byte: a `Command` member for a named
/// code, a plain int for any other.
pub(crate) fn command_obj(py: Python<'_>, code: u8) -> PyResult<Py<PyAny>> {
    let members = MEMBERS.get_or_try_init(py, || {
        let cls = command_enum(py)?;
        NAMES
            .iter()
            .map(|name| cls.getattr(*name).map(Bound::unbind))
            .collect::<PyResult<Vec<_>>>()
    })?;
    match members.get(code as usize) {
        Some(member) => Ok(member.clone_ref(py)),
        None => Ok(code.into_pyobject(py)?.into_any().unbind()),
    }
}

/// One GoPro frame: `Frame(command, body=b"", version=1)`.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Frame {
    version: u8,
    command: u8,
    body: Body,
}

/// A frame's body: `len` bytes at `start` of a `bytes` object — the body
/// itself, or a chunk a `Decoder` was fed, sliced on first use. A decoded
/// frame then costs one small object and no copy until its body is read.
/// (Kept small: a decoder's output is millions of these; a frame object is
/// 64 bytes with the collector's header.)
struct Body {
    data: Py<PyBytes>,
    /// Where the body is in `data`; [`WHOLE`] when it is all of `data`
    /// (which may be larger than a `u32` says).
    start: u32,
    len: u32,
    /// The sliced-out body once read: a strong reference, or null.
    slice: AtomicPtr<pyo3::ffi::PyObject>,
}

/// `Body::start` of a body that is all of its `bytes`.
const WHOLE: u32 = u32::MAX;

impl Body {
    fn whole(data: Py<PyBytes>) -> Body {
        Body {
            data,
            start: WHOLE,
            len: 0,
            slice: AtomicPtr::new(ptr::null_mut()),
        }
    }

    fn slice(py: Python<'_>, data: Py<PyBytes>, start: usize, len: usize) -> Body {
        match (u32::try_from(start), u32::try_from(len)) {
            (Ok(start), Ok(len)) if start != WHOLE => Body {
                data,
                start,
                len,
                slice: AtomicPtr::new(ptr::null_mut()),
            },
            // Past 4 GiB into a chunk: sliced now.
            _ => Body::whole(PyBytes::new(py, &data.as_bytes(py)[start..start + len]).unbind()),
        }
    }

    fn as_slice<'a>(&'a self, py: Python<'a>) -> &'a [u8] {
        let data = self.data.as_bytes(py);
        if self.start == WHOLE {
            return data;
        }
        let start = self.start as usize;
        &data[start..start + self.len as usize]
    }

    fn object(&self, py: Python<'_>) -> Py<PyBytes> {
        if self.start == WHOLE
            || (self.start == 0 && self.len as usize == self.data.as_bytes(py).len())
        {
            return self.data.clone_ref(py);
        }
        let cached = self.slice.load(Ordering::Acquire);
        if !cached.is_null() {
            // SAFETY: a non-null `slice` is a `bytes` this body keeps a
            // reference to until it is dropped.
            return unsafe { Bound::from_borrowed_ptr(py, cached).cast_into_unchecked() }.unbind();
        }
        let made = PyBytes::new(py, self.as_slice(py)).unbind();
        let kept = made.clone_ref(py).into_ptr();
        match self.slice.compare_exchange(
            ptr::null_mut(),
            kept,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => made,
            Err(first) => {
                // SAFETY: `kept` is the reference taken just above;
                // `first` is the kept slice, as above.
                unsafe {
                    drop(Bound::from_owned_ptr(py, kept));
                    Bound::from_borrowed_ptr(py, first)
                        .cast_into_unchecked()
                        .unbind()
                }
            }
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let cached = *self.slice.get_mut();
        if !cached.is_null() {
            // SAFETY: the body owns this reference (see `object`).
            Python::attach(|py| unsafe { drop(Bound::from_owned_ptr(py, cached)) });
        }
    }
}

impl Frame {
    fn with_body(version: u8, command: u8, body: Body) -> Frame {
        Frame {
            version,
            command,
            body,
        }
    }

    /// A Python frame holding a copy of a core frame's body.
    pub(crate) fn from_core(py: Python<'_>, frame: &gopro::Frame) -> Frame {
        let data = PyBytes::new(py, &frame.body).unbind();
        Frame::with_body(frame.version, frame.command.code(), Body::whole(data))
    }

    /// A version-1 Python frame holding a copy of `body`.
    pub(crate) fn copied(py: Python<'_>, command: u8, body: &[u8]) -> Frame {
        let data = PyBytes::new(py, body).unbind();
        Frame::with_body(gopro::VERSION, command, Body::whole(data))
    }

    /// A new Python frame for a core frame; see [`Frame::untracked`].
    pub(crate) fn new_untracked(py: Python<'_>, frame: &gopro::Frame) -> PyResult<Py<Frame>> {
        untracked(py, Frame::from_core(py, frame))
    }

    /// The command code and the body, borrowed.
    pub(crate) fn parts<'a>(&'a self, py: Python<'a>) -> (u8, &'a [u8]) {
        (self.command, self.body.as_slice(py))
    }

    /// The core frame, with a copy of the body.
    pub(crate) fn to_core(&self, py: Python<'_>) -> gopro::Frame {
        gopro::Frame::new(self.command, Bytes::copy_from_slice(self.body.as_slice(py)))
            .with_version(self.version)
    }
}

/// A new Python frame, left out of the cycle collector: a frozen frame
/// holds only `bytes`, so it can never be part of a cycle, and tracking
/// millions of them (a decoder's output kept in a list) makes every
/// collection walk them all.
fn untracked(py: Python<'_>, frame: Frame) -> PyResult<Py<Frame>> {
    let obj = Py::new(py, frame)?;
    // SAFETY: `obj` is a live object of a GC type; untracking only takes it
    // off the collector's list (CPython does the same for tuples of atoms),
    // and its dealloc untracks again harmlessly.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
    Ok(obj)
}

#[pymethods]
impl Frame {
    #[new]
    #[pyo3(signature = (command, body = None, version = gopro::VERSION))]
    fn new(
        py: Python<'_>,
        command: &Bound<'_, PyAny>,
        body: Option<&Bound<'_, PyAny>>,
        version: u8,
    ) -> PyResult<Frame> {
        let command = command_code(command)?;
        let data = match body {
            None => PyBytes::new(py, b"").unbind(),
            Some(b) => match b.cast::<PyBytes>() {
                Ok(bytes) => bytes.clone().unbind(),
                Err(_) => with_body(b, |s| PyBytes::new(py, s).unbind())?,
            },
        };
        let body = Body::whole(data);
        Ok(Frame {
            version,
            command,
            body,
        })
    }

    /// The command: a `Command` for the named codes, an int for the others.
    #[getter]
    fn command(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        command_obj(py, self.command)
    }

    /// The body.
    #[getter]
    fn body(&self, py: Python<'_>) -> Py<PyBytes> {
        self.body.object(py)
    }

    /// The version byte (1 unless given).
    #[getter]
    fn version(&self) -> u8 {
        self.version
    }

    /// The frame's wire bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let body = self.body.as_slice(py);
        let header = gopro::Header {
            version: self.version,
            command: gopro::Command(self.command),
            length: u32::try_from(body.len()).map_err(|_| {
                frame_err(
                    py,
                    &gopro::Error::BodyTooLarge {
                        length: body.len() as u64,
                        limit: u32::MAX as usize,
                    },
                )
            })?,
        };
        wire(py, &header, body)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<Frame>() else {
            return Ok(py.NotImplemented());
        };
        let other = other.get();
        let equal = self.version == other.version
            && self.command == other.command
            && self.body.as_slice(py) == other.body.as_slice(py);
        match op {
            CompareOp::Eq => Ok(equal.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!equal).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (self.version, self.command, self.body.object(py))
            .into_pyobject(py)?
            .hash()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let command = match NAMES.get(self.command as usize) {
            Some(name) => format!("Command.{name}"),
            None => self.command.to_string(),
        };
        let body = self.body.object(py).into_bound(py).repr()?;
        if self.version == gopro::VERSION {
            Ok(format!("Frame({command}, {body})"))
        } else {
            Ok(format!(
                "Frame({command}, {body}, version={})",
                self.version
            ))
        }
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<Reduced> {
        let cls = py.get_type::<Frame>().into_any().unbind();
        Ok((cls, (self.command, self.body.object(py), self.version)))
    }
}

/// What `Frame.__reduce__` returns: the class and its arguments.
type Reduced = (Py<PyAny>, (u8, Py<PyBytes>, u8));

fn wire<'py>(
    py: Python<'py>,
    header: &gopro::Header,
    body: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let head = header.to_bytes();
    PyBytes::new_with(py, head.len() + body.len(), |buf| {
        buf[..head.len()].copy_from_slice(&head);
        buf[head.len()..].copy_from_slice(body);
        Ok(())
    })
}

/// The wire bytes of one version-1 frame.
#[pyfunction]
#[pyo3(signature = (command, body = None, *, max_body = gopro::DEFAULT_MAX_BODY))]
pub(crate) fn encode<'py>(
    py: Python<'py>,
    command: &Bound<'py, PyAny>,
    body: Option<&Bound<'py, PyAny>>,
    max_body: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let command = gopro::Command(command_code(command)?);
    let encoder = gopro::Encoder::with_max_body(max_body);
    let write = |body: &[u8]| {
        encoder
            .check_len(body.len())
            .map_err(|e| frame_err(py, &e))?;
        wire(py, &gopro::Header::new(command, body.len() as u32), body)
    };
    match body {
        None => write(b""),
        Some(body) => with_body(body, write)?,
    }
}

fn codec(max_body: usize, version: Option<u8>) -> gopro::Decoder {
    let builder = gopro::Codec::builder().max_body(max_body);
    match version {
        Some(v) => builder.require_version(v).decoder(),
        None => builder.decoder(),
    }
}

/// Exactly one frame from `data`: missing or trailing bytes are errors.
#[pyfunction]
#[pyo3(signature = (data, *, max_body = gopro::DEFAULT_MAX_BODY, version = None))]
pub(crate) fn decode(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    max_body: usize,
    version: Option<u8>,
) -> PyResult<Frame> {
    let mut buf = with_body(data, |b| BytesMut::from(b))?;
    let mut decoder = codec(max_body, version);
    match decoder.decode_eof(&mut buf) {
        Ok(Some(frame)) if buf.is_empty() => Ok(Frame::from_core(py, &frame)),
        Ok(Some(frame)) => Err(FRAME_ERROR.err(
            py,
            &format!(
                "{} bytes after the end of the frame ({} bytes): decode takes exactly one frame; use Decoder for a stream",
                buf.len(),
                frame.encoded_len()
            ),
            &[("kind", kind(py, "trailing_bytes"))],
        )),
        Ok(None) => Err(INCOMPLETE_FRAME.err(
            py,
            "no data: a frame needs at least its 8-byte header",
            &[("kind", kind(py, "unexpected_eof"))],
        )),
        Err(e) => Err(frame_err(py, &e)),
    }
}

/// Turns a byte stream into frames: `feed(data)`, then iterate.
///
/// A `bytes` chunk is kept, not copied: the frames inside it slice it.
/// Only a frame cut across two chunks is copied, into `carry`.
///
/// After an error the stream cannot be trusted: the buffer is dropped.
#[pyclass(module = "gopro._gopro")]
pub(crate) struct Decoder {
    inner: gopro::Decoder,
    /// The start of a frame whose end has not arrived, past any header the
    /// decoder already holds.
    carry: BytesMut,
    /// The chunk being read, and how far.
    chunk: Option<Py<PyBytes>>,
    at: usize,
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (max_body = gopro::DEFAULT_MAX_BODY, *, version = None))]
    fn new(max_body: usize, version: Option<u8>) -> Decoder {
        Decoder {
            inner: codec(max_body, version),
            carry: BytesMut::new(),
            chunk: None,
            at: 0,
        }
    }

    /// Adds bytes received from the stream.
    fn feed(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = data.py();
        let data = match data.cast::<PyBytes>() {
            Ok(bytes) => bytes.clone().unbind(),
            Err(_) => with_body(data, |b| PyBytes::new(py, b).unbind())?,
        };
        if data.as_bytes(py).is_empty() {
            return Ok(());
        }
        self.spill(py);
        self.chunk = Some(data);
        self.at = 0;
        Ok(())
    }

    /// The largest body accepted.
    #[getter]
    fn max_body(&self) -> usize {
        self.inner.max_body()
    }

    /// Bytes received but not yet returned as frames.
    #[getter]
    fn buffered(&self, py: Python<'_>) -> usize {
        let unread = self
            .chunk
            .as_ref()
            .map_or(0, |c| c.as_bytes(py).len() - self.at);
        let header = self.inner.pending_header().map_or(0, |_| gopro::HEADER_LEN);
        self.carry.len() + header + unread
    }

    /// Declares the end of the stream: returns the frames still buffered,
    /// and raises `IncompleteFrame` if the stream ends inside a frame.
    fn eof<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.spill(py);
        let list = PyList::empty(py);
        loop {
            match self.inner.decode_eof(&mut self.carry) {
                Ok(Some(frame)) => list.append(Frame::new_untracked(py, &frame)?)?,
                Ok(None) => return Ok(list),
                Err(e) => return Err(self.fail(py, &e)),
            }
        }
    }

    /// Every complete frame buffered, as a list: `list(decoder)` in one
    /// call. After an error, the frames before it are lost with the stream;
    /// iterate to keep them.
    fn frames<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        // Gathered first, so that the list is made at its size at once.
        let mut frames = Vec::new();
        loop {
            match self.next_frame(py) {
                Ok(Some(frame)) => frames.push(untracked(py, frame)?),
                Ok(None) => return PyList::new(py, frames),
                Err(e) => return Err(self.fail(py, &e)),
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<Frame>>> {
        match self.next_frame(py) {
            Ok(Some(frame)) => Ok(Some(untracked(py, frame)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(self.fail(py, &e)),
        }
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Decoder(max_body={}, buffered={})",
            self.inner.max_body(),
            self.buffered(py)
        )
    }
}

impl Decoder {
    fn next_frame(&mut self, py: Python<'_>) -> Result<Option<Frame>, gopro::Error> {
        // A frame begun in an earlier chunk: complete it in `carry`, taking
        // from the chunk only the bytes it still needs.
        while !self.carry.is_empty() || self.inner.pending_header().is_some() {
            if let Some(frame) = self.inner.decode(&mut self.carry)? {
                return Ok(Some(Frame::from_core(py, &frame)));
            }
            let Some(chunk) = &self.chunk else {
                return Ok(None);
            };
            let data = &chunk.as_bytes(py)[self.at..];
            let take = self.inner.bytes_needed(&self.carry).min(data.len());
            if take == 0 {
                self.chunk = None;
                return Ok(None);
            }
            self.carry.extend_from_slice(&data[..take]);
            self.at += take;
        }
        let Some(chunk) = &self.chunk else {
            return Ok(None);
        };
        let data = chunk.as_bytes(py);
        match self.inner.decode_slice(data, &mut self.at)? {
            Some(header) => {
                let len = header.length as usize;
                let body = Body::slice(py, chunk.clone_ref(py), self.at - len, len);
                Ok(Some(Frame::with_body(
                    header.version,
                    header.command.code(),
                    body,
                )))
            }
            None => {
                // The rest of the chunk starts a frame: keep only that.
                self.carry.extend_from_slice(&data[self.at..]);
                self.chunk = None;
                Ok(None)
            }
        }
    }

    /// Moves what is unread of the current chunk into `carry`, which then
    /// holds the stream from the decoder's position on.
    fn spill(&mut self, py: Python<'_>) {
        if let Some(chunk) = self.chunk.take() {
            self.carry.extend_from_slice(&chunk.as_bytes(py)[self.at..]);
        }
        self.at = 0;
    }

    fn fail(&mut self, py: Python<'_>, e: &gopro::Error) -> PyErr {
        self.carry = BytesMut::new();
        self.chunk = None;
        self.at = 0;
        self.inner = codec(self.inner.max_body(), self.inner.required_version());
        frame_err(py, e)
    }
}
