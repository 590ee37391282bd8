//! `TlsConfig` (a client's) and `TlsServerConfig` (a server's): the core's
//! `ClientTls` and `ServerTls`, made when the Python object is made, so
//! that a missing or bad PEM file raises `TlsConfigError` there, naming the
//! file, and never at the first connection. Reading and checking the files
//! is the core's; this file only takes Python's arguments.

use std::path::PathBuf;

use gopro::tls::{ClientAuth, ClientTls, ServerTls, TlsError};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::errors::{kind, tls_config_err, TLS_CONFIG_ERROR};
use crate::util::quoted;

/// A path as Python gave it (str or os.PathLike), for `repr` and the
/// properties.
fn shown(path: &std::path::Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Runs a core TLS constructor (it reads files) with the GIL released.
fn load<T: Send>(py: Python<'_>, f: impl FnOnce() -> Result<T, TlsError> + Send) -> PyResult<T> {
    py.detach(f).map_err(|e| tls_config_err(py, &e))
}

/// A client's TLS settings, for `Client(addr, tls=...)` and
/// `AsyncClient.connect(addr, tls=...)`.
///
/// `ca_file`: the CA certificates (PEM) the server's certificate must chain
/// to; `None` trusts the system's roots (`tls=True` is the same as
/// `TlsConfig()`). `cert_file` and `key_file`: a client certificate chain
/// and its key (PEM), shown to a server that asks for one (mutual TLS);
/// both or neither. `server_name`: the name the server's certificate must
/// carry, also sent as SNI; by default the host of the address connected
/// to, a DNS name or an IP address.
///
/// The files are read and checked here: a file that cannot be read or
/// parsed, a key that does not fit its certificate, or an invalid server
/// name raises `TlsConfigError`, naming the file. A config may be used by
/// any number of clients.
///
/// ```python
/// tls = gopro.TlsConfig(ca_file="ca.pem", cert_file="client.pem",
///                       key_file="client.key", server_name="localhost")
/// client = gopro.Client("10.0.0.5:8888", tls=tls)
/// ```
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct TlsConfig {
    tls: ClientTls,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
}

#[pymethods]
impl TlsConfig {
    #[new]
    #[pyo3(signature = (ca_file = None, cert_file = None, key_file = None, server_name = None))]
    fn new(
        py: Python<'_>,
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        server_name: Option<String>,
    ) -> PyResult<TlsConfig> {
        let identity = match (&cert_file, &key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(TLS_CONFIG_ERROR.err(
                    py,
                    "cert_file and key_file go together: give both for a client certificate, or neither",
                    &[("setting", kind(py, "tls"))],
                ))
            }
        };
        let (ca, name) = (ca_file.clone(), server_name.clone());
        let tls = load(py, move || {
            let mut tls = match ca {
                Some(ca) => ClientTls::ca_file(ca)?,
                None => ClientTls::system_roots()?,
            };
            if let Some((cert, key)) = identity {
                tls = tls.identity_files(cert, key)?;
            }
            if let Some(name) = name {
                tls = tls.server_name(&name)?;
            }
            Ok(tls)
        })?;
        Ok(TlsConfig {
            tls,
            ca_file,
            cert_file,
            key_file,
            server_name,
        })
    }

    /// The CA file given, or None for the system's roots.
    #[getter]
    fn ca_file(&self) -> Option<String> {
        self.ca_file.as_deref().map(shown)
    }

    /// The client certificate file given, if any.
    #[getter]
    fn cert_file(&self) -> Option<String> {
        self.cert_file.as_deref().map(shown)
    }

    /// The client key file given, if any.
    #[getter]
    fn key_file(&self) -> Option<String> {
        self.key_file.as_deref().map(shown)
    }

    /// The name checked in the server's certificate, if one was given.
    #[getter]
    fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let q = |path: &std::path::Path| quoted(py, &shown(path));
        let mut parts = vec![match &self.ca_file {
            Some(ca) => format!("ca_file={}", q(ca)),
            None => "ca_file=None".to_string(),
        }];
        if let Some(cert) = &self.cert_file {
            parts.push(format!("cert_file={}", q(cert)));
        }
        if let Some(name) = &self.server_name {
            parts.push(format!("server_name={}", quoted(py, name)));
        }
        format!("gopro.TlsConfig({})", parts.join(", "))
    }
}

/// The name of `obj`'s class, with its module unless it is a builtin.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj.get_type();
    let name = ty.qualname().map(|n| n.to_string()).unwrap_or_default();
    match ty.module().map(|m| m.to_string()) {
        Ok(module) if module != "builtins" => format!("{module}.{name}"),
        _ => name,
    }
}

/// A client's `tls` argument: a `TlsConfig`, `True` (the system's roots),
/// or `None`/`False` (plaintext). Anything else (an `ssl.SSLContext`, say)
/// is a `TypeError` naming what is taken: gopro's TLS is rustls, set up
/// from PEM files, and cannot use another stack's context.
pub(crate) fn client_tls(
    py: Python<'_>,
    tls: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<ClientTls>> {
    let Some(tls) = tls.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    if let Ok(config) = tls.cast::<TlsConfig>() {
        return Ok(Some(config.get().tls.clone()));
    }
    if let Ok(flag) = tls.cast::<PyBool>() {
        if !flag.is_true() {
            return Ok(None);
        }
        return load(py, ClientTls::system_roots).map(Some);
    }
    Err(PyTypeError::new_err(format!(
        "tls must be a gopro.TlsConfig (or True for the system's roots, None for plaintext), \
         not {}: gopro's TLS is rustls, set up from PEM files, e.g. \
         gopro.TlsConfig(ca_file=\"ca.pem\")",
        type_name(tls)
    )))
}

/// A server's TLS settings, for `Server(listen, tls=...)`.
///
/// `cert_file` and `key_file`: the server's certificate chain (leaf first)
/// and private key, in PEM. `client_ca_file`: the CA certificates (PEM)
/// client certificates must chain to (mutual TLS); without it no client
/// certificate is asked for. `client_auth`: with a client CA, whether a
/// client certificate is `"required"` (a client without one is refused in
/// the handshake) or `"optional"` (the handlers see whether there was one
/// with `gopro.current_connection()`).
///
/// The files are read and checked here: a file that cannot be read or
/// parsed, or a key that does not fit the certificate, raises
/// `TlsConfigError`, naming the file. `Server.reload_tls()` reads the same
/// files again; every server given this config uses the new certificate.
#[pyclass(frozen, module = "gopro._gopro")]
pub(crate) struct TlsServerConfig {
    tls: ServerTls,
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    client_auth: &'static str,
}

#[pymethods]
impl TlsServerConfig {
    #[new]
    #[pyo3(signature = (cert_file, key_file, client_ca_file = None, *, client_auth = "required"))]
    fn new(
        py: Python<'_>,
        cert_file: PathBuf,
        key_file: PathBuf,
        client_ca_file: Option<PathBuf>,
        client_auth: &str,
    ) -> PyResult<TlsServerConfig> {
        let Some(mode) = [ClientAuth::Required, ClientAuth::Optional]
            .into_iter()
            .find(|mode| client_auth_name(*mode) == client_auth)
        else {
            return Err(TLS_CONFIG_ERROR.err(
                py,
                &format!("client_auth must be \"required\" or \"optional\", not {client_auth:?}"),
                &[("setting", kind(py, "tls"))],
            ));
        };
        let client_auth = client_auth_name(mode);
        let (cert, key, ca) = (cert_file.clone(), key_file.clone(), client_ca_file.clone());
        let tls = load(py, move || {
            let mut tls = ServerTls::from_pem_files(cert, key)?.client_auth(mode);
            if let Some(ca) = ca {
                tls = tls.client_ca_file(ca)?;
            }
            Ok(tls)
        })?;
        Ok(TlsServerConfig {
            tls,
            cert_file,
            key_file,
            client_ca_file,
            client_auth,
        })
    }

    /// The certificate file.
    #[getter]
    fn cert_file(&self) -> String {
        shown(&self.cert_file)
    }

    /// The private key file.
    #[getter]
    fn key_file(&self) -> String {
        shown(&self.key_file)
    }

    /// The client CA file, if client certificates are asked for.
    #[getter]
    fn client_ca_file(&self) -> Option<String> {
        self.client_ca_file.as_deref().map(shown)
    }

    /// `"required"` or `"optional"`.
    #[getter]
    fn client_auth(&self) -> &'static str {
        self.client_auth
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let q = |path: &std::path::Path| quoted(py, &shown(path));
        let mut text = format!(
            "gopro.TlsServerConfig({}, {}",
            q(&self.cert_file),
            q(&self.key_file)
        );
        if let Some(ca) = &self.client_ca_file {
            text += &format!(", {}, client_auth={}", q(ca), quoted(py, self.client_auth));
        }
        text + ")"
    }
}

/// The Python name of a client certificate mode.
pub(crate) fn client_auth_name(mode: ClientAuth) -> &'static str {
    match mode {
        ClientAuth::Required => "required",
        ClientAuth::Optional => "optional",
    }
}

/// A server's `tls` argument: a `TlsServerConfig` or None.
pub(crate) fn server_tls(tls: Option<&Bound<'_, PyAny>>) -> PyResult<Option<ServerTls>> {
    let Some(tls) = tls.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    if let Ok(config) = tls.cast::<TlsServerConfig>() {
        return Ok(Some(config.get().tls.clone()));
    }
    let hint = if tls.cast::<TlsConfig>().is_ok() {
        " (TlsConfig is a client's)"
    } else {
        ""
    };
    Err(PyTypeError::new_err(format!(
        "tls must be a gopro.TlsServerConfig or None, not {}{hint}: gopro's TLS is rustls, \
         set up from PEM files, e.g. gopro.TlsServerConfig(\"server.pem\", \"server.key\")",
        type_name(tls)
    )))
}
