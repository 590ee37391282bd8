//! The accept loop the baseline servers share: one thread, the address
//! from the first argument (or a default), Nagle off, a task per
//! connection. Included by `#[path]`; not an example of its own.

use std::future::Future;

use tokio::net::{TcpListener, TcpStream};

/// Serves every connection with `handle` until accepting fails.
pub fn serve<F, Fut>(default_addr: &str, handle: F) -> std::io::Result<()>
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| default_addr.into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = TcpListener::bind(&addr).await?;
            println!("listening on {}", listener.local_addr()?);
            loop {
                let (socket, _) = listener.accept().await?;
                socket.set_nodelay(true)?;
                tokio::spawn(handle(socket));
            }
        })
}
