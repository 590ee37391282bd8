//! TLS settings: the `gopro_tls_config` handle, given to a client config
//! (`gopro_client_config_set_tls`) or a server config
//! (`gopro_server_config_set_tls`), over the core's `ClientTls` and
//! `ServerTls`.
//!
//! One handle serves both sides, as the settings overlap (a CA, a
//! certificate and key): which of its parts a side uses is said on each
//! setter. Each setter has the core read and check what it is given at
//! once, so that a bad PEM file, or a key that does not fit its
//! certificate, fails at the setter that named it; the handle keeps where
//! the PEM came from, and the client or server config builds the core's
//! settings from that again when it is given the handle.

use std::ffi::{c_char, c_int};
use std::path::PathBuf;

use gopro::tls::{ClientAuth, ClientTls, ServerTls};

use crate::ffi;
use crate::status::{gopro_status, Fail};

/// Whether a server with a CA (`gopro_tls_config_set_ca_file` or
/// `_set_ca_pem`) requires client certificates; for
/// `gopro_tls_config_set_client_auth`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum gopro_tls_client_auth {
    /// A client without a certificate chained to the CA is refused during
    /// the handshake (the default).
    Required = 0,
    /// A client may come without a certificate; one that shows a
    /// certificate must chain to the CA. Handlers tell which it was with
    /// `gopro_connection_client_subject`.
    Optional = 1,
}

/// A CA: a PEM file (read again by the config given the handle) or PEM
/// bytes (copied).
#[derive(Clone, Debug)]
enum Ca {
    File(PathBuf),
    Pem(Vec<u8>),
}

/// A certificate chain and its key: PEM files (read again by the config
/// given the handle, and by `gopro_server_reload_tls`) or PEM bytes.
#[derive(Clone, Debug)]
enum CertKey {
    Files(PathBuf, PathBuf),
    Pem(Vec<u8>, Vec<u8>),
}

/// TLS settings for a client or a server, made by `gopro_tls_config_new`
/// and freed by `gopro_tls_config_free`. The client and server configs
/// given it take what they need, so it may be freed, changed or reused
/// afterwards. One thread at a time.
#[derive(Clone, Debug, Default)]
pub struct gopro_tls_config {
    ca: Option<Ca>,
    cert: Option<CertKey>,
    server_name: Option<String>,
    client_auth: ClientAuth,
}

impl gopro_tls_config {
    /// A client's settings: the CA's roots (the system's without one), the
    /// client certificate, the server name.
    pub(crate) fn client(&self) -> Result<ClientTls, Fail> {
        let mut tls = match &self.ca {
            Some(Ca::File(path)) => ClientTls::ca_file(path)?,
            Some(Ca::Pem(pem)) => ClientTls::ca_pem(pem)?,
            None => ClientTls::system_roots()?,
        };
        tls = match &self.cert {
            Some(CertKey::Files(cert, key)) => tls.identity_files(cert, key)?,
            Some(CertKey::Pem(cert, key)) => tls.identity_pem(cert, key)?,
            None => tls,
        };
        if let Some(name) = &self.server_name {
            tls = tls.server_name(name)?;
        }
        Ok(tls)
    }

    /// A server's settings: its certificate (required), the CA as the
    /// client CA, the client-auth mode.
    pub(crate) fn server(&self) -> Result<ServerTls, Fail> {
        let mut tls = match &self.cert {
            Some(CertKey::Files(cert, key)) => ServerTls::from_pem_files(cert, key)?,
            Some(CertKey::Pem(cert, key)) => ServerTls::from_pem(cert, key)?,
            None => {
                return Err(Fail::new(
                    gopro_status::TlsConfig,
                    "a TLS server needs a certificate and key: \
                     gopro_tls_config_set_cert_files or gopro_tls_config_set_cert_pem",
                ))
            }
        };
        tls = match &self.ca {
            Some(Ca::File(path)) => tls.client_ca_file(path)?,
            Some(Ca::Pem(pem)) => tls.client_ca_pem(pem)?,
            None => tls,
        };
        Ok(tls.client_auth(self.client_auth))
    }
}

/// Creates empty TLS settings: no CA (a client then trusts the system's
/// roots; a server asks for no client certificate), no certificate, the
/// server name taken from the address connected to, client certificates
/// required once a server has a CA. The caller frees it with
/// `gopro_tls_config_free`.
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_new(out: *mut *mut gopro_tls_config) -> gopro_status {
    ffi_boundary!({
        let out = ffi::out(out, "out")?;
        out.write(ffi::into_handle(gopro_tls_config::default()));
        Ok(())
    })
}

/// The CA certificates (PEM file `path`, NUL-terminated) to trust: for a
/// client, the only roots its servers' certificates may chain to (instead
/// of the system's); for a server, the CA client certificates must chain to
/// (see `gopro_tls_config_set_client_auth`). The file is read now:
/// `GOPRO_STATUS_TLS_CONFIG` if it cannot be read or holds no usable CA
/// certificate, the settings unchanged. Replaces a CA set before.
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_set_ca_file(
    config: *mut gopro_tls_config,
    path: *const c_char,
) -> gopro_status {
    ffi_boundary!({
        let path = PathBuf::from(unsafe { ffi::str(path, "path") }?);
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        ClientTls::ca_file(&path)?;
        c.ca = Some(Ca::File(path));
        Ok(())
    })
}

/// As `gopro_tls_config_set_ca_file`, from the PEM bytes `pem`/`len`
/// (copied).
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_set_ca_pem(
    config: *mut gopro_tls_config,
    pem: *const u8,
    len: usize,
) -> gopro_status {
    ffi_boundary!({
        let pem = unsafe { ffi::bytes(pem, len, "pem") }?;
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        ClientTls::ca_pem(pem)?;
        c.ca = Some(Ca::Pem(pem.to_vec()));
        Ok(())
    })
}

/// A certificate chain (PEM file `cert_path`, leaf first) and its private
/// key (PEM file `key_path`): a server's certificate, or a client's
/// certificate for mutual TLS. Both are read now: `GOPRO_STATUS_TLS_CONFIG`
/// if one cannot be read or parsed, or if the key does not belong to the
/// certificate, the settings unchanged. A server given these settings reads
/// the files again on `gopro_server_reload_tls`. Replaces a certificate set
/// before.
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_set_cert_files(
    config: *mut gopro_tls_config,
    cert_path: *const c_char,
    key_path: *const c_char,
) -> gopro_status {
    ffi_boundary!({
        let cert = PathBuf::from(unsafe { ffi::str(cert_path, "cert_path") }?);
        let key = PathBuf::from(unsafe { ffi::str(key_path, "key_path") }?);
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        // The server's loader checks all a client's does too: that the
        // chain parses and that the key belongs to its leaf.
        ServerTls::from_pem_files(&cert, &key)?;
        c.cert = Some(CertKey::Files(cert, key));
        Ok(())
    })
}

/// As `gopro_tls_config_set_cert_files`, from PEM bytes (both copied).
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_set_cert_pem(
    config: *mut gopro_tls_config,
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> gopro_status {
    ffi_boundary!({
        let (cert, key) = unsafe { pem_pair(cert, cert_len, key, key_len) }?;
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        ServerTls::from_pem(cert, key)?;
        c.cert = Some(CertKey::Pem(cert.to_vec(), key.to_vec()));
        Ok(())
    })
}

/// A certificate chain and its key given as PEM bytes, `cert`/`cert_len`
/// and `key`/`key_len`: what `gopro_tls_config_set_cert_pem` and
/// `gopro_server_reload_tls_pem` read.
///
/// # Safety
/// As `ffi::bytes`, for each of the two.
pub(crate) unsafe fn pem_pair<'a>(
    cert: *const u8,
    cert_len: usize,
    key: *const u8,
    key_len: usize,
) -> Result<(&'a [u8], &'a [u8]), Fail> {
    let cert = unsafe { ffi::bytes(cert, cert_len, "cert") }?;
    let key = unsafe { ffi::bytes(key, key_len, "key") }?;
    Ok((cert, key))
}

/// For a client: the name (NUL-terminated, a DNS name or an IP address)
/// the server's certificate must carry, and the SNI sent, whatever address
/// is connected to. Without it, the host of each address is checked.
/// `GOPRO_STATUS_TLS_CONFIG` for a name that is neither. Servers ignore it.
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_set_server_name(
    config: *mut gopro_tls_config,
    name: *const c_char,
) -> gopro_status {
    ffi_boundary!({
        let name = unsafe { ffi::str(name, "name") }?;
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        ClientTls::check_server_name(name)?;
        c.server_name = Some(name.to_string());
        Ok(())
    })
}

/// For a server with a CA: whether client certificates are required
/// (`GOPRO_TLS_CLIENT_AUTH_REQUIRED`, the default) or optional
/// (`GOPRO_TLS_CLIENT_AUTH_OPTIONAL`). `mode` is an `int` so that any
/// number is safe to pass: others give `GOPRO_STATUS_INVALID_ARGUMENT`.
/// Without a CA no client certificate is asked for; clients ignore it.
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_set_client_auth(
    config: *mut gopro_tls_config,
    mode: c_int,
) -> gopro_status {
    ffi_boundary!({
        let c = unsafe { ffi::handle_mut(config, "config") }?;
        c.client_auth = match mode {
            m if m == gopro_tls_client_auth::Required as c_int => ClientAuth::Required,
            m if m == gopro_tls_client_auth::Optional as c_int => ClientAuth::Optional,
            _ => {
                return Err(Fail::invalid(format!(
                    "client auth mode {mode} is neither GOPRO_TLS_CLIENT_AUTH_REQUIRED (0) \
                     nor GOPRO_TLS_CLIENT_AUTH_OPTIONAL (1)"
                )))
            }
        };
        Ok(())
    })
}

/// Frees TLS settings. NULL is ignored. Configs, clients and servers given
/// them are not affected.
#[no_mangle]
pub unsafe extern "C" fn gopro_tls_config_free(config: *mut gopro_tls_config) {
    ffi_boundary_void!(unsafe { ffi::free_handle(config) })
}
