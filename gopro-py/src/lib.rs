//! The Python binding of gopro: the native module `gopro._gopro`.
//!
//! A thin layer over the Rust core. Codec calls run the core's sans-IO
//! decoder and encoder; the clients and the server are the core's tokio
//! client and server, on the one process-wide runtime of
//! [`gopro::blocking::runtime`]. Blocking calls release the GIL while they
//! wait; an asyncio call that has to wait runs on the runtime too, and its
//! future is resolved on the event loop's thread (see `wakeup`).

mod client;
mod codec;
mod defaults;
mod errors;
mod server;
mod tls;
mod util;
mod wakeup;

use pyo3::prelude::*;

#[pymodule]
#[pyo3(name = "_gopro")]
fn gopro_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // Every future the module creates runs on the core's runtime, the same
    // one the blocking API uses: one runtime per process. An Err only means
    // another module already set it, which is this same runtime.
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(gopro::blocking::runtime());

    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("DEFAULT_MAX_BODY", gopro::DEFAULT_MAX_BODY)?;
    // Set, not added: `add` would put it in `__all__`.
    m.setattr("_DEFAULTS", defaults::table(py)?)?;
    m.add("HEADER_LEN", gopro::HEADER_LEN)?;
    m.add("MAGIC", gopro::MAGIC)?;
    m.add("VERSION", gopro::VERSION)?;
    m.add("Command", codec::command_enum(py)?)?;
    errors::register(m)?;
    // For the test of the README's error table; set, not added (private).
    m.setattr(
        "_error_samples",
        wrap_pyfunction!(errors::_error_samples, m)?,
    )?;
    m.add_class::<codec::Frame>()?;
    m.add_class::<codec::Decoder>()?;
    m.add_function(wrap_pyfunction!(codec::encode, m)?)?;
    m.add_function(wrap_pyfunction!(codec::decode, m)?)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::AsyncClient>()?;
    m.add_class::<client::ClientStats>()?;
    m.add_class::<server::Server>()?;
    m.add_class::<server::ConnectionInfo>()?;
    m.add_function(wrap_pyfunction!(server::current_connection, m)?)?;
    m.add_class::<tls::TlsConfig>()?;
    m.add_class::<tls::TlsServerConfig>()?;
    Ok(())
}
