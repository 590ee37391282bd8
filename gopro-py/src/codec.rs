//! `Command`, `Frame`, `encode`, `decode` and `Decoder`: the core's sans-IO codec.

use bytes::{Buf, BytesMut};
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
    body: Py<PyBytes>,
}

impl Frame {
    /// A Python frame holding a copy of a core frame's body.
    pub(crate) fn from_core(py: Python<'_>, frame: &gopro::Frame) -> Frame {
        Frame {
            version: frame.version,
            command: frame.command.code(),
            body: PyBytes::new(py, &frame.body).unbind(),
        }
    }

    /// A new Python frame for a core frame; see [`Frame::untracked`].
    pub(crate) fn new_untracked(py: Python<'_>, frame: &gopro::Frame) -> PyResult<Py<Frame>> {
        Frame::untracked(py, frame.version, frame.command.code(), &frame.body)
    }

    /// A new Python frame, left out of the cycle collector: a frozen frame
    /// holds only a `bytes` body, so it can never be part of a cycle, and
    /// tracking millions of them (a decoder's output kept in a list) makes
    /// every collection walk them all.
    pub(crate) fn untracked(
        py: Python<'_>,
        version: u8,
        command: u8,
        body: &[u8],
    ) -> PyResult<Py<Frame>> {
        let frame = Frame {
            version,
            command,
            body: PyBytes::new(py, body).unbind(),
        };
        let obj = Py::new(py, frame)?;
        // SAFETY: `obj` is a live object of a GC type; untracking only takes
        // it off the collector's list (CPython does the same for tuples of
        // atoms), and its dealloc untracks again harmlessly.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
        Ok(obj)
    }

    /// The core frame, with a copy of the body.
    pub(crate) fn to_core(&self, py: Python<'_>) -> gopro::Frame {
        gopro::Frame::new(
            self.command,
            bytes::Bytes::copy_from_slice(self.body.as_bytes(py)),
        )
        .with_version(self.version)
    }
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
        let body = match body {
            None => PyBytes::new(py, b"").unbind(),
            Some(b) => match b.cast::<PyBytes>() {
                Ok(bytes) => bytes.clone().unbind(),
                Err(_) => with_body(b, |s| PyBytes::new(py, s).unbind())?,
            },
        };
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
        self.body.clone_ref(py)
    }

    /// The version byte (1 unless given).
    #[getter]
    fn version(&self) -> u8 {
        self.version
    }

    /// The frame's wire bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let body = self.body.as_bytes(py);
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
            && self.body.as_bytes(py) == other.body.as_bytes(py);
        match op {
            CompareOp::Eq => Ok(equal.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!equal).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        (self.version, self.command, self.body.bind(py))
            .into_pyobject(py)?
            .hash()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let command = match NAMES.get(self.command as usize) {
            Some(name) => format!("Command.{name}"),
            None => self.command.to_string(),
        };
        let body = self.body.bind(py).repr()?;
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
        Ok((cls, (self.command, self.body.clone_ref(py), self.version)))
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
/// After an error the stream cannot be trusted: the buffer is dropped.
#[pyclass(module = "gopro._gopro")]
pub(crate) struct Decoder {
    inner: gopro::Decoder,
    buf: BytesMut,
}

#[pymethods]
impl Decoder {
    #[new]
    #[pyo3(signature = (max_body = gopro::DEFAULT_MAX_BODY, *, version = None))]
    fn new(max_body: usize, version: Option<u8>) -> Decoder {
        Decoder {
            inner: codec(max_body, version),
            buf: BytesMut::new(),
        }
    }

    /// Adds bytes received from the stream.
    fn feed(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = &mut self.buf;
        with_body(data, |bytes| buf.extend_from_slice(bytes))
    }

    /// The largest body accepted.
    #[getter]
    fn max_body(&self) -> usize {
        self.inner.max_body()
    }

    /// Bytes received but not yet returned as frames.
    #[getter]
    fn buffered(&self) -> usize {
        self.buf.len() + self.inner.pending_header().map_or(0, |_| gopro::HEADER_LEN)
    }

    /// Declares the end of the stream: returns the frames still buffered,
    /// and raises `IncompleteFrame` if the stream ends inside a frame.
    fn eof<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        loop {
            match self.inner.decode_eof(&mut self.buf) {
                Ok(Some(frame)) => list.append(Frame::new_untracked(py, &frame)?)?,
                Ok(None) => return Ok(list),
                Err(e) => return Err(self.fail(py, &e)),
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<Frame>>> {
        // In place: the body is copied once, into the `bytes` object.
        match self.inner.decode_in_place(&mut self.buf) {
            Ok(Some(header)) => {
                let length = header.length as usize;
                let frame = Frame::untracked(
                    py,
                    header.version,
                    header.command.code(),
                    &self.buf[..length],
                );
                self.buf.advance(length);
                Ok(Some(frame?))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.fail(py, &e)),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Decoder(max_body={}, buffered={})",
            self.inner.max_body(),
            self.buffered()
        )
    }
}

impl Decoder {
    fn fail(&mut self, py: Python<'_>, e: &gopro::Error) -> PyErr {
        self.buf = BytesMut::new();
        self.inner = codec(self.inner.max_body(), self.inner.required_version());
        frame_err(py, e)
    }
}
