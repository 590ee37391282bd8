//! The exception classes, and the core's errors turned into them.
//!
//! The classes are made with `type()` at import, because several of them
//! have two bases (`GoproError` and the standard class that fits), which
//! pyo3's `create_exception!` cannot express.

use gopro::client::ClientError;
use pyo3::exceptions::{PyConnectionError, PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

/// One exception class of the module, made once per process.
pub(crate) struct Exc {
    name: &'static str,
    doc: &'static str,
    cell: PyOnceLock<Py<PyType>>,
}

impl Exc {
    const fn new(name: &'static str, doc: &'static str) -> Exc {
        Exc {
            name,
            doc,
            cell: PyOnceLock::new(),
        }
    }

    pub(crate) fn get<'py>(&self, py: Python<'py>) -> &Bound<'py, PyType> {
        self.cell
            .get(py)
            .expect("gopro._gopro exceptions are made when the module is imported")
            .bind(py)
    }

    fn make<'py>(
        &self,
        py: Python<'py>,
        bases: &[Bound<'py, PyType>],
    ) -> PyResult<&Bound<'py, PyType>> {
        let dict = PyDict::new(py);
        dict.set_item("__module__", "gopro._gopro")?;
        dict.set_item("__doc__", self.doc)?;
        let bases = PyTuple::new(py, bases)?;
        let cls = py
            .get_type::<PyType>()
            .call1((self.name, bases, dict))?
            .cast_into::<PyType>()?;
        let _ = self.cell.set(py, cls.unbind());
        Ok(self.get(py))
    }

    /// An instance with `message` and the given attributes, as a `PyErr`.
    pub(crate) fn err(&self, py: Python<'_>, message: &str, attrs: &[(&str, Py<PyAny>)]) -> PyErr {
        let make = || -> PyResult<PyErr> {
            let exc = self.get(py).call1((message,))?;
            for (name, value) in attrs {
                exc.setattr(*name, value)?;
            }
            Ok(PyErr::from_value(exc))
        };
        make().unwrap_or_else(|e| e)
    }
}

/// Declares the exception classes, `STATIC: "Name" => "doc"`, and `ALL`,
/// every one of them in the order the module adds them.
macro_rules! exceptions {
    ($($id:ident: $name:literal => $doc:literal;)*) => {
        $(pub(crate) static $id: Exc = Exc::new($name, $doc);)*

        static ALL: [&Exc; [$($name),*].len()] = [$(&$id),*];
    };
}

exceptions! {
    GOPRO_ERROR: "GoproError"
        => "Base class of every error raised by gopro.";
    FRAME_ERROR: "FrameError"
        => "The bytes are not a valid GoPro stream. `.kind` names the error (bad_magic, body_too_large, unsupported_version, unexpected_eof, trailing_bytes).";
    FRAME_TOO_LARGE: "FrameTooLarge"
        => "A body is over the limit (10 MiB by default), checked on the header alone.";
    BAD_MAGIC: "BadMagic"
        => "A header does not start with 0x474F (\"GO\"): the peer does not speak GoPro or the stream is out of sync.";
    UNSUPPORTED_VERSION: "UnsupportedVersion"
        => "A header carries a version this peer was told not to accept.";
    INCOMPLETE_FRAME: "IncompleteFrame"
        => "The data or the stream ends inside a header or a body.";
    SERVER_ERROR: "ServerError"
        => "The server answered with an ERROR frame; `.reason` is its text. The connection stays usable unless the server closes it.";
    GO_AWAY: "GoAway"
        => "The server is shutting down (GOAWAY). `.reason` is its text; the `.unanswered` requests were not handled and may be sent again elsewhere.";
    CONNECTION_CLOSED: "ConnectionClosed"
        => "The connection is closed or failed; `.unanswered` requests got no reply.";
    CONNECT_ERROR: "ConnectError"
        => "The connection could not be made.";
    TIMEOUT: "Timeout"
        => "No answer within the time allowed. The connection is closed, since a late reply would be taken for the next request's.";
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let exception = py.get_type::<PyException>();
    let value_error = py.get_type::<PyValueError>();
    let base = GOPRO_ERROR.make(py, &[exception])?.clone();
    let frame = FRAME_ERROR.make(py, &[base.clone(), value_error])?.clone();
    for exc in [
        &FRAME_TOO_LARGE,
        &BAD_MAGIC,
        &UNSUPPORTED_VERSION,
        &INCOMPLETE_FRAME,
    ] {
        exc.make(py, std::slice::from_ref(&frame))?;
    }
    SERVER_ERROR.make(py, std::slice::from_ref(&base))?;
    GO_AWAY.make(py, std::slice::from_ref(&base))?;
    let conn = py.get_type::<PyConnectionError>();
    CONNECTION_CLOSED.make(py, &[base.clone(), conn.clone()])?;
    CONNECT_ERROR.make(py, &[base.clone(), conn])?;
    TIMEOUT.make(py, &[base, py.get_type::<PyTimeoutError>()])?;
    for exc in ALL {
        m.add(exc.name, exc.get(py))?;
    }
    // The ERROR frame is how a server reports a protocol error: one class, two names.
    m.add("ProtocolError", SERVER_ERROR.get(py))?;
    Ok(())
}

/// A codec error as the matching `FrameError` subclass, with `.kind`.
pub(crate) fn frame_err(py: Python<'_>, e: &gopro::Error) -> PyErr {
    let exc = match e {
        gopro::Error::BodyTooLarge { .. } => &FRAME_TOO_LARGE,
        gopro::Error::BadMagic { .. } => &BAD_MAGIC,
        gopro::Error::UnsupportedVersion { .. } => &UNSUPPORTED_VERSION,
        gopro::Error::UnexpectedEof { .. } => &INCOMPLETE_FRAME,
        gopro::Error::Io(io) => {
            return CONNECTION_CLOSED.err(py, &io.to_string(), &[("unanswered", py.None())])
        }
        _ => &FRAME_ERROR,
    };
    exc.err(py, &e.to_string(), &[("kind", kind(py, e.kind()))])
}

pub(crate) fn kind(py: Python<'_>, kind: &str) -> Py<PyAny> {
    pyo3::types::PyString::new(py, kind).into_any().unbind()
}

/// A client error as the exception class that says what happened.
pub(crate) fn client_err(py: Python<'_>, e: ClientError) -> PyErr {
    let message = e.to_string();
    let int = |n: usize| {
        n.into_pyobject(py)
            .map(|n| n.into_any().unbind())
            .unwrap_or_else(|_| py.None())
    };
    let text = |s: &str| kind(py, s);
    match &e {
        ClientError::Connect { .. } => CONNECT_ERROR.err(py, &message, &[]),
        ClientError::Timeout { .. } => TIMEOUT.err(py, &message, &[]),
        ClientError::Closed { unanswered } => {
            CONNECTION_CLOSED.err(py, &message, &[("unanswered", int(*unanswered))])
        }
        ClientError::Server { reason } => SERVER_ERROR.err(py, reason, &[("reason", text(reason))]),
        ClientError::GoAway { reason, unanswered } => GO_AWAY.err(
            py,
            &message,
            &[("reason", text(reason)), ("unanswered", int(*unanswered))],
        ),
        ClientError::Protocol(codec) => frame_err(py, codec),
        ClientError::Io(_) => CONNECTION_CLOSED.err(py, &message, &[("unanswered", py.None())]),
        _ => GOPRO_ERROR.err(py, &message, &[]),
    }
}

/// A closed client's error.
pub(crate) fn closed_err(py: Python<'_>) -> PyErr {
    CONNECTION_CLOSED.err(
        py,
        "the client is closed",
        &[(
            "unanswered",
            0usize
                .into_pyobject(py)
                .map(|n| n.into_any().unbind())
                .unwrap_or_else(|_| py.None()),
        )],
    )
}
