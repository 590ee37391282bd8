//! `Command`, `Frame`, `encode`, `decode` and `Decoder`: the core's sans-IO codec.

use bytes::{Bytes, BytesMut};
use pyo3::basic::CompareOp;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyType};

use crate::errors::{frame_err, kind, FRAME_ERROR};
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
///
/// Two words: a `bytes` object and where the frame is in it. A decoder's
/// output is millions of these, and their allocation (memory, page faults)
/// is most of what decoding costs, so a frame is 48 bytes with the
/// collector's header: a decoded frame with a small body points at its
/// header inside the chunk the decoder was fed, and its body is sliced out
/// when read, without a copy until then.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct Frame {
    data: Py<PyBytes>,
    place: Place,
}

/// Where a frame is in its `bytes`: either its wire header's offset (the
/// version, command and length are read from the header, the body follows
/// it), or, with [`Place::WHOLE`] set, the version and command of a frame
/// whose body is all of the `bytes`.
#[derive(Clone, Copy)]
struct Place(u64);

impl Place {
    const WHOLE: u64 = 1 << 63;

    fn whole(version: u8, command: u8) -> Place {
        Place(Place::WHOLE | u64::from(version) << 8 | u64::from(command))
    }

    /// The header at `at`; `None` past 2^63 bytes.
    fn header(at: usize) -> Option<Place> {
        u64::try_from(at)
            .ok()
            .filter(|at| at & Place::WHOLE == 0)
            .map(Place)
    }
}

/// A frame's fields, borrowed from its `bytes`.
struct View<'a> {
    version: u8,
    command: u8,
    body: &'a [u8],
}

impl Frame {
    fn whole(version: u8, command: u8, data: Py<PyBytes>) -> Frame {
        Frame {
            data,
            place: Place::whole(version, command),
        }
    }

    /// A decoded frame whose header starts at `at` in `chunk`, which holds
    /// the whole frame. A body over [`SHARED_BODY`] bytes is copied out
    /// into a `bytes` of its own: read often (each read of a shared body
    /// slices it anew), and kept without the rest of the chunk.
    fn in_chunk(py: Python<'_>, chunk: &Py<PyBytes>, at: usize, header: &gopro::Header) -> Frame {
        let place = Place::header(at).filter(|_| header.length as usize <= SHARED_BODY);
        match place {
            Some(place) => Frame {
                data: chunk.clone_ref(py),
                place,
            },
            None => {
                let start = at + gopro::HEADER_LEN;
                let body = &chunk.as_bytes(py)[start..start + header.length as usize];
                Frame::copied_with(py, header.version, header.command.code(), body)
            }
        }
    }

    fn view<'a>(&'a self, py: Python<'a>) -> View<'a> {
        let data = self.data.as_bytes(py);
        let Place(place) = self.place;
        if place & Place::WHOLE != 0 {
            return View {
                version: (place >> 8) as u8,
                command: place as u8,
                body: data,
            };
        }
        // A decoded frame: its header was checked when it was decoded, and
        // `bytes` never change.
        let at = place as usize;
        let header = &data[at..at + gopro::HEADER_LEN];
        let length = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let start = at + gopro::HEADER_LEN;
        View {
            version: header[2],
            command: header[3],
            body: &data[start..start + length as usize],
        }
    }

    /// The body as a `bytes` object: the frame's own, or sliced out of the
    /// chunk a decoded frame is in (a new object at each call).
    fn body_object(&self, py: Python<'_>) -> Py<PyBytes> {
        if self.place.0 & Place::WHOLE != 0 {
            return self.data.clone_ref(py);
        }
        PyBytes::new(py, self.view(py).body).unbind()
    }

    fn copied_with(py: Python<'_>, version: u8, command: u8, body: &[u8]) -> Frame {
        Frame::whole(version, command, PyBytes::new(py, body).unbind())
    }

    /// A Python frame holding a copy of a core frame's body.
    pub(crate) fn from_core(py: Python<'_>, frame: &gopro::Frame) -> Frame {
        Frame::copied_with(py, frame.version, frame.command.code(), &frame.body)
    }

    /// A version-1 Python frame holding a copy of `body`.
    pub(crate) fn copied(py: Python<'_>, command: u8, body: &[u8]) -> Frame {
        Frame::copied_with(py, gopro::VERSION, command, body)
    }

    /// New Python frames for core frames (a batch of replies). Small ones,
    /// bodies up to [`SHARED_BODY`] bytes, are copied with their headers
    /// back to back into one `bytes` they all point into: one object a
    /// frame, not two. Larger ones each get a `bytes` of their own, so that
    /// a frame kept keeps little else alive.
    pub(crate) fn many_untracked(
        py: Python<'_>,
        frames: &[gopro::Frame],
    ) -> PyResult<Vec<Py<Frame>>> {
        let shared = |f: &&gopro::Frame| f.body.len() <= SHARED_BODY;
        let len = frames
            .iter()
            .filter(shared)
            .map(gopro::Frame::encoded_len)
            .sum();
        let chunk = PyBytes::new_with(py, len, |mut buf| {
            for frame in frames.iter().filter(shared) {
                frame.encode(&mut buf).map_err(|e| frame_err(py, &e))?;
            }
            Ok(())
        })?
        .unbind();
        let mut at = 0;
        frames
            .iter()
            .map(|frame| {
                if !shared(&frame) {
                    return Frame::new_untracked(py, frame);
                }
                let header = frame.header().map_err(|e| frame_err(py, &e))?;
                let made = Frame::in_chunk(py, &chunk, at, &header);
                at += frame.encoded_len();
                untracked(py, made)
            })
            .collect()
    }

    /// A new Python frame for a core frame; see [`untracked`].
    pub(crate) fn new_untracked(py: Python<'_>, frame: &gopro::Frame) -> PyResult<Py<Frame>> {
        untracked(py, Frame::from_core(py, frame))
    }

    /// The command code and the body, borrowed.
    pub(crate) fn parts<'a>(&'a self, py: Python<'a>) -> (u8, &'a [u8]) {
        let view = self.view(py);
        (view.command, view.body)
    }

    /// The core frame, with a copy of the body.
    pub(crate) fn to_core(&self, py: Python<'_>) -> gopro::Frame {
        let view = self.view(py);
        gopro::Frame::new(view.command, Bytes::copy_from_slice(view.body))
            .with_version(view.version)
    }
}

/// The largest body a frame shares a `bytes` object with other frames for
/// (see [`Frame::in_chunk`] and [`Frame::many_untracked`]).
const SHARED_BODY: usize = 1024;

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
    #[pyo3(signature = (command, body = None, version = gopro::VERSION),
        text_signature = "(command, body=None, version=1)")]
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
        Ok(Frame::whole(version, command, data))
    }

    /// The command: a `Command` for the named codes, an int for the others.
    #[getter]
    fn command(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        command_obj(py, self.view(py).command)
    }

    /// The body.
    #[getter]
    fn body(&self, py: Python<'_>) -> Py<PyBytes> {
        self.body_object(py)
    }

    /// The version byte (1 unless given).
    #[getter]
    fn version(&self, py: Python<'_>) -> u8 {
        self.view(py).version
    }

    /// The frame's wire bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let View {
            version,
            command,
            body,
        } = self.view(py);
        // A frame holds any body; only the 32-bit length field limits it.
        let encoder = gopro::Encoder::with_max_body(u32::MAX as usize);
        wire(py, &encoder, version, gopro::Command(command), body)
    }

    fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = other.py();
        let Ok(other) = other.cast::<Frame>() else {
            return Ok(py.NotImplemented());
        };
        let (ours, theirs) = (self.view(py), other.get().view(py));
        let equal = ours.version == theirs.version
            && ours.command == theirs.command
            && ours.body == theirs.body;
        match op {
            CompareOp::Eq => Ok(equal.into_pyobject(py)?.to_owned().into_any().unbind()),
            CompareOp::Ne => Ok((!equal).into_pyobject(py)?.to_owned().into_any().unbind()),
            _ => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        let view = self.view(py);
        (view.version, view.command, self.body_object(py))
            .into_pyobject(py)?
            .hash()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let view = self.view(py);
        let command = match NAMES.get(view.command as usize) {
            Some(name) => format!("Command.{name}"),
            None => view.command.to_string(),
        };
        let body = PyBytes::new(py, view.body).repr()?;
        if view.version == gopro::VERSION {
            Ok(format!("Frame({command}, {body})"))
        } else {
            Ok(format!(
                "Frame({command}, {body}, version={})",
                view.version
            ))
        }
    }

    fn __reduce__(&self, py: Python<'_>) -> PyResult<Reduced> {
        let cls = py.get_type::<Frame>().into_any().unbind();
        let view = self.view(py);
        Ok((cls, (view.command, self.body_object(py), view.version)))
    }
}

/// What `Frame.__reduce__` returns: the class and its arguments.
type Reduced = (Py<PyAny>, (u8, Py<PyBytes>, u8));

/// One frame's wire bytes, written by the core's encoder straight into a
/// new `bytes` of the frame's size (checked against `encoder`'s limit first).
fn wire<'py>(
    py: Python<'py>,
    encoder: &gopro::Encoder,
    version: u8,
    command: gopro::Command,
    body: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let header = encoder
        .header(version, command, body.len())
        .map_err(|e| frame_err(py, &e))?;
    PyBytes::new_with(py, header.frame_len(), |mut buf| {
        encoder
            .encode_parts(version, command, &[body], &mut buf)
            .map(drop)
            .map_err(|e| frame_err(py, &e))
    })
}

/// The wire bytes of one version-1 frame.
#[pyfunction]
#[pyo3(signature = (command, body = None, *, max_body = gopro::DEFAULT_MAX_BODY),
    text_signature = "(command, body=None, *, max_body=10485760)")]
pub(crate) fn encode<'py>(
    py: Python<'py>,
    command: &Bound<'py, PyAny>,
    body: Option<&Bound<'py, PyAny>>,
    max_body: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let command = gopro::Command(command_code(command)?);
    let encoder = gopro::Encoder::with_max_body(max_body);
    let write = |body: &[u8]| wire(py, &encoder, gopro::VERSION, command, body);
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
#[pyo3(signature = (data, *, max_body = gopro::DEFAULT_MAX_BODY, version = None),
    text_signature = "(data, *, max_body=10485760, version=None)")]
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
        // No data at all: the stream ended before a header.
        Ok(None) => Err(frame_err(
            py,
            &gopro::Error::UnexpectedEof {
                received: 0,
                expected: gopro::HEADER_LEN as u64,
            },
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
    #[pyo3(signature = (max_body = gopro::DEFAULT_MAX_BODY, *, version = None),
        text_signature = "(max_body=10485760, *, version=None)")]
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
    /// and raises `UnexpectedEof` if the stream ends inside a frame.
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
            self.frames_in_chunk(py, &mut frames)?;
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
                let at = self.at - header.frame_len();
                Ok(Some(Frame::in_chunk(py, chunk, at, &header)))
            }
            None => {
                // The rest of the chunk starts a frame: keep only that.
                self.carry.extend_from_slice(&data[self.at..]);
                self.chunk = None;
                Ok(None)
            }
        }
    }

    /// The frames that lie whole in the current chunk from where the
    /// decoder is, when nothing is carried: one borrow of the chunk's bytes
    /// for them all. Stops at the chunk's end or a cut frame, which
    /// [`Decoder::next_frame`] then takes on.
    fn frames_in_chunk(&mut self, py: Python<'_>, out: &mut Vec<Py<Frame>>) -> PyResult<()> {
        let Some(chunk) = self.chunk.as_ref().map(|c| c.clone_ref(py)) else {
            return Ok(());
        };
        if !self.carry.is_empty() || self.inner.pending_header().is_some() {
            return Ok(());
        }
        let data = chunk.as_bytes(py);
        loop {
            let at = self.at;
            match self.inner.decode_slice(data, &mut self.at) {
                Ok(Some(header)) => {
                    out.push(untracked(py, Frame::in_chunk(py, &chunk, at, &header))?)
                }
                // A cut frame: its header, if the chunk has it, is now the
                // decoder's.
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(py, &e)),
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
