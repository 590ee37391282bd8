//! The listening socket: bound from the listen address (with
//! SO_REUSEPORT when several processes share a port), or handed over
//! already bound (systemd socket activation, an inherited descriptor).

use std::io;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};

/// The backlog of a listener bound here, as tokio's `bind` uses.
const BACKLOG: u32 = 1024;

/// Where the listening socket comes from.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// Bind the listen address.
    Bind { reuse_port: bool },
    /// A socket bound and listening already.
    Given(Arc<std::net::TcpListener>),
}

impl Source {
    pub(crate) async fn listener(&self, listen: &str) -> io::Result<TcpListener> {
        match self {
            Source::Bind { reuse_port: false } => TcpListener::bind(listen).await,
            Source::Bind { reuse_port: true } => bind_reusing_port(listen).await,
            Source::Given(socket) => {
                let socket = socket.try_clone()?;
                // tokio needs it non-blocking, or the runtime stalls on accept.
                socket.set_nonblocking(true)?;
                TcpListener::from_std(socket)
            }
        }
    }
}

/// Binds the first address `listen` resolves to that can be bound, with
/// SO_REUSEADDR and SO_REUSEPORT.
async fn bind_reusing_port(listen: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(listen).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        match socket.bind(addr) {
            Ok(()) => return socket.listen(BACKLOG),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}
