//! The exception classes, and the core's errors turned into them.
//!
//! The classes are made with `type()` at import, because several of them
//! have two bases (`GoproError` and the standard class that fits), which
//! pyo3's `create_exception!` cannot express.

use gopro::client::ClientError;
use gopro::server::ServerError;
use gopro::settings::ConfigError;
use gopro::tls::TlsError;
use pyo3::exceptions::{
    PyConnectionError, PyException, PyOSError, PyRuntimeError, PyTimeoutError, PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::codec::Frame;

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
    BODY_TOO_LARGE: "BodyTooLarge"
        => "A body is over the limit (`max_body`): announced by a header, checked on the header alone, or given to send. Nothing is sent.";
    BAD_MAGIC: "BadMagic"
        => "A header does not start with 0x474F (\"GO\"): the peer does not speak GoPro or the stream is out of sync.";
    UNSUPPORTED_VERSION: "UnsupportedVersion"
        => "A header carries a version this peer was told not to accept.";
    UNEXPECTED_EOF: "UnexpectedEof"
        => "The data or the stream ends inside a header or a body.";
    BUFFER_TOO_SMALL: "BufferTooSmall"
        => "A caller's buffer cannot hold the frame; nothing was written.";
    PROTOCOL_ERROR: "ProtocolError"
        => "The server sent bytes that are not valid GoPro frames; `.kind` names what was wrong (as FrameError's). The connection is closed.";
    SERVER_ERROR: "ServerError"
        => "The server answered with an ERROR frame; `.reason` is its text. The connection stays usable unless the server closes it.";
    GO_AWAY: "GoAway"
        => "The server is shutting down (GOAWAY). `.reason` is its text; the `.unanswered` requests were not handled and may be sent again elsewhere.";
    CONNECTION_CLOSED: "ConnectionClosed"
        => "The connection is closed or failed; the request was not sent. `.unanswered` requests got no reply.";
    CONNECTION_LOST: "ConnectionLost"
        => "The connection was lost (reset, closed by the server, no reply within the timeout) after the request was written: it may have been handled, so it is not sent again. `.reason` says what happened.";
    CONNECT_ERROR: "ConnectError"
        => "The connection could not be made.";
    TLS_ERROR: "TlsError"
        => "The TLS handshake failed: the server's certificate is not trusted or names another host, the server refused the client's certificate, or the server does not speak TLS. Nothing was sent. `.reason` is what the TLS stack said.";
    TIMEOUT: "Timeout"
        => "No answer within the time allowed. The connection stays open: the request may still be handled, and its reply is discarded when it comes.";
    UNEXPECTED_REPLY: "UnexpectedReply"
        => "The server answered a request with a reply it cannot have (a HEARTBEAT not echoed, a LOGIN not answered OK). `.request` is the request's command, `.reply` the Frame received.";
    NOTHING_IN_FLIGHT: "NothingInFlight"
        => "A receive asked for more replies than there are requests in flight (`.wanted`, `.in_flight`); nothing was waited for.";
    BLOCKING_IN_RUNTIME: "BlockingInRuntime"
        => "A blocking call was made on a gopro runtime thread (in a plain-function handler), where it would hold up the server; use AsyncClient in an async def handler, or server.shutdown().";
    CONFIG_ERROR: "ConfigError"
        => "A setting was refused; `.setting` names it and the message says why.";
    BIND_ERROR: "BindError"
        => "The server cannot listen on the address.";
    TLS_CONFIG_ERROR: "TlsConfigError"
        => "A TLS setting was refused: a certificate, key or CA file that cannot be read or parsed (the message names the file), a key that does not fit its certificate, no system roots, an invalid server name. `.setting` is \"tls\".";
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let value_error = py.get_type::<PyValueError>();
    let runtime_error = py.get_type::<PyRuntimeError>();
    let conn = py.get_type::<PyConnectionError>();
    let base = GOPRO_ERROR
        .make(py, &[py.get_type::<PyException>()])?
        .clone();
    let frame = FRAME_ERROR
        .make(py, &[base.clone(), value_error.clone()])?
        .clone();
    for exc in [
        &BODY_TOO_LARGE,
        &BAD_MAGIC,
        &UNSUPPORTED_VERSION,
        &UNEXPECTED_EOF,
    ] {
        exc.make(py, std::slice::from_ref(&frame))?;
    }
    let plain = std::slice::from_ref(&base);
    for (exc, parent) in [
        (&BUFFER_TOO_SMALL, Some(&value_error)),
        (&PROTOCOL_ERROR, Some(&conn)),
        (&SERVER_ERROR, None),
        (&GO_AWAY, None),
        (&CONNECTION_CLOSED, Some(&conn)),
        (&CONNECT_ERROR, Some(&conn)),
        (&TIMEOUT, Some(&py.get_type::<PyTimeoutError>())),
        (&UNEXPECTED_REPLY, None),
        (&NOTHING_IN_FLIGHT, Some(&runtime_error)),
        (&BLOCKING_IN_RUNTIME, Some(&runtime_error)),
        (&CONFIG_ERROR, Some(&value_error)),
        (&BIND_ERROR, Some(&py.get_type::<PyOSError>())),
    ] {
        match parent {
            Some(parent) => exc.make(py, &[base.clone(), parent.clone()])?,
            None => exc.make(py, plain)?,
        };
    }
    let closed = CONNECTION_CLOSED.get(py).clone();
    CONNECTION_LOST.make(py, &[closed])?;
    // A failed handshake is a failed connection; a refused TLS file is a
    // refused setting.
    TLS_ERROR.make(py, &[CONNECT_ERROR.get(py).clone()])?;
    TLS_CONFIG_ERROR.make(py, &[CONFIG_ERROR.get(py).clone()])?;
    for exc in ALL {
        m.add(exc.name, exc.get(py))?;
    }
    Ok(())
}

fn int(py: Python<'_>, n: usize) -> Py<PyAny> {
    n.into_pyobject(py)
        .map(|n| n.into_any().unbind())
        .unwrap_or_else(|_| py.None())
}

pub(crate) fn kind(py: Python<'_>, kind: &str) -> Py<PyAny> {
    pyo3::types::PyString::new(py, kind).into_any().unbind()
}

/// The `FrameError` subclass of a codec error about a stream.
fn frame_class(e: &gopro::Error) -> &'static Exc {
    match e {
        gopro::Error::BodyTooLarge { .. } => &BODY_TOO_LARGE,
        gopro::Error::BadMagic { .. } => &BAD_MAGIC,
        gopro::Error::UnsupportedVersion { .. } => &UNSUPPORTED_VERSION,
        gopro::Error::UnexpectedEof { .. } => &UNEXPECTED_EOF,
        _ => &FRAME_ERROR,
    }
}

/// A codec error as its exception: a `FrameError` subclass with `.kind`.
pub(crate) fn frame_err(py: Python<'_>, e: &gopro::Error) -> PyErr {
    match e {
        gopro::Error::Io(io) => {
            CONNECTION_CLOSED.err(py, &io.to_string(), &[("unanswered", py.None())])
        }
        gopro::Error::BufferTooSmall { .. } => BUFFER_TOO_SMALL.err(py, &e.to_string(), &[]),
        _ => frame_class(e).err(py, &e.to_string(), &[("kind", kind(py, e.kind()))]),
    }
}

/// A refused setting as `ConfigError`, with `.setting`.
pub(crate) fn config_err(py: Python<'_>, e: &ConfigError) -> PyErr {
    CONFIG_ERROR.err(py, &e.to_string(), &[("setting", kind(py, e.setting()))])
}

/// A refused TLS setting as `TlsConfigError` (a `ConfigError` whose
/// `.setting` is `tls`): the core's message names the file or the setting.
pub(crate) fn tls_config_err(py: Python<'_>, e: &TlsError) -> PyErr {
    TLS_CONFIG_ERROR.err(py, &e.to_string(), &[("setting", kind(py, "tls"))])
}

/// A client error as the exception class that says what happened: the one
/// place client errors become exceptions (the README's error table).
pub(crate) fn client_err(py: Python<'_>, e: ClientError) -> PyErr {
    let message = e.to_string();
    let text = |s: &str| kind(py, s);
    match e {
        ClientError::Connect { .. } => CONNECT_ERROR.err(py, &message, &[]),
        ClientError::Tls { reason, .. } => {
            TLS_ERROR.err(py, &message, &[("reason", text(&reason))])
        }
        ClientError::Timeout { .. } => TIMEOUT.err(py, &message, &[]),
        ClientError::Closed { unanswered } => {
            CONNECTION_CLOSED.err(py, &message, &[("unanswered", int(py, unanswered))])
        }
        ClientError::Lost { reason } => {
            let attrs = [("reason", text(&reason)), ("unanswered", py.None())];
            CONNECTION_LOST.err(py, &message, &attrs)
        }
        ClientError::Server { reason } => {
            SERVER_ERROR.err(py, &reason, &[("reason", text(&reason))])
        }
        ClientError::GoAway { reason, unanswered } => GO_AWAY.err(
            py,
            &message,
            &[
                ("reason", text(&reason)),
                ("unanswered", int(py, unanswered)),
            ],
        ),
        ClientError::Protocol(codec) => {
            PROTOCOL_ERROR.err(py, &message, &[("kind", text(codec.kind()))])
        }
        ClientError::Config(config) => config_err(py, &config),
        ClientError::BodyTooLarge { .. } => {
            BODY_TOO_LARGE.err(py, &message, &[("kind", text("body_too_large"))])
        }
        ClientError::InvalidEncoded { source, .. } => {
            frame_class(&source).err(py, &message, &[("kind", text(source.kind()))])
        }
        ClientError::UnexpectedReply { request, reply } => {
            let reply = Py::new(py, Frame::from_core(py, &reply)).map(Py::into_any);
            let reply = reply.unwrap_or_else(|_| py.None());
            let request = crate::codec::command_obj(py, request.0).unwrap_or_else(|_| py.None());
            UNEXPECTED_REPLY.err(py, &message, &[("request", request), ("reply", reply)])
        }
        ClientError::NothingInFlight { wanted, in_flight } => NOTHING_IN_FLIGHT.err(
            py,
            &message,
            &[
                ("wanted", int(py, wanted)),
                ("in_flight", int(py, in_flight)),
            ],
        ),
        ClientError::BlockingInRuntime => BLOCKING_IN_RUNTIME.err(py, &message, &[]),
        ClientError::Io(_) => CONNECTION_CLOSED.err(py, &message, &[("unanswered", py.None())]),
        _ => GOPRO_ERROR.err(py, &message, &[]),
    }
}

/// A server error as its exception: the one place server errors become
/// exceptions.
pub(crate) fn server_err(py: Python<'_>, e: ServerError) -> PyErr {
    match &e {
        ServerError::Config(config) => config_err(py, config),
        ServerError::Bind { .. } => BIND_ERROR.err(py, &e.to_string(), &[]),
        ServerError::Tls(tls) => tls_config_err(py, tls),
        ServerError::BlockingInRuntime => blocking_err(py),
        _ => PyOSError::new_err(e.to_string()),
    }
}

/// A blocking call on a runtime thread: the core's rule, the core's message.
pub(crate) fn blocking_err(py: Python<'_>) -> PyErr {
    BLOCKING_IN_RUNTIME.err(py, &ClientError::BlockingInRuntime.to_string(), &[])
}

/// Fails on a thread of a gopro runtime (a handler), where a blocking call
/// would wait on the runtime it holds up.
pub(crate) fn not_on_runtime_thread(py: Python<'_>) -> PyResult<()> {
    if gopro::blocking::on_runtime_thread() {
        return Err(blocking_err(py));
    }
    Ok(())
}

/// One exception of every kind of core error, each with the name the
/// README's error table gives it: for the test that checks the table.
#[pyfunction]
pub(crate) fn _error_samples(py: Python<'_>) -> Vec<(&'static str, Py<PyAny>)> {
    use gopro::error_samples::{name, samples, AnyError};
    samples()
        .into_iter()
        .map(|sample| {
            let rust = name(&sample);
            let err = match sample {
                AnyError::Codec(e) => frame_err(py, &e),
                AnyError::Client(e) => client_err(py, e),
                AnyError::Server(e) => server_err(py, e),
                AnyError::Tls(e) => tls_config_err(py, &e),
            };
            (rust, err.into_value(py).into_any())
        })
        .collect()
}

/// A closed client's error.
pub(crate) fn closed_err(py: Python<'_>) -> PyErr {
    CONNECTION_CLOSED.err(py, "the client is closed", &[("unanswered", int(py, 0))])
}
