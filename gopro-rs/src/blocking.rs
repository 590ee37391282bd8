//! Blocking front ends over the async client and server, for callers without
//! an async runtime of their own (the C ABI, Python's sync API, scripts).
//!
//! They run on one process-wide tokio runtime, [`runtime()`], started on
//! first use. Blocking calls must not be made from inside a tokio runtime
//! (for example from a server handler): they fail with
//! [`ClientError::BlockingInRuntime`] instead of deadlocking.
//!
//! ```no_run
//! use gopro::blocking::{Client, Server};
//! use gopro::Command;
//!
//! let server = Server::start(gopro::server::Server::builder().listen("127.0.0.1:0"))?;
//! let client = Client::connect(&server.local_addr().to_string())?;
//! let reply = client.request(Command::MESSAGE, "hi")?;
//! assert_eq!(reply.body, "Server says: hi");
//! server.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::client::{Callback, ClientBuilder, ClientError, ClientStats};
use crate::server::{ServerBuilder, ServerError, ShutdownHandle, StatsHandle};
use crate::{Command, Frame};

/// The process-wide runtime the blocking API runs on: a multi-threaded
/// tokio runtime with at most two workers, so that servers and keep-alives
/// run while the caller is busy elsewhere.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(2);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("gopro-worker")
            .enable_all()
            .build()
            .expect("cannot start the gopro runtime")
    })
}

/// Whether the calling thread runs an async runtime (a runtime worker, or
/// a server handler or callback running on one), where a blocking call
/// would stall the runtime or deadlock it. The rule behind
/// [`ClientError::BlockingInRuntime`] and
/// [`ServerError::BlockingInRuntime`]; a binding asks it before its own
/// blocking calls (waiting for a server to stop, say).
pub fn on_runtime_thread() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}

/// Runs `fut` to completion on the shared runtime from a plain thread.
fn block_on<T>(fut: impl Future<Output = Result<T, ClientError>>) -> Result<T, ClientError> {
    if on_runtime_thread() {
        return Err(ClientError::BlockingInRuntime);
    }
    runtime().block_on(fut)
}

/// A blocking [`crate::client::Client`].
#[derive(Debug)]
pub struct Client {
    inner: crate::client::Client,
}

impl Client {
    /// Connects with the defaults.
    pub fn connect(addr: &str) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientBuilder::default())
    }

    /// Connects with the given settings.
    pub fn connect_with(addr: &str, builder: ClientBuilder) -> Result<Client, ClientError> {
        Client::connect_any(&[addr], builder)
    }

    /// Connects to the first of `addrs` that answers, with the given
    /// settings; see [`ClientBuilder::connect_any`].
    pub fn connect_any<A: AsRef<str>>(
        addrs: &[A],
        builder: ClientBuilder,
    ) -> Result<Client, ClientError> {
        block_on(async {
            let inner = builder.connect_any(addrs).await?;
            Ok(Client { inner })
        })
    }

    /// See [`crate::client::Client::request`].
    pub fn request(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
    ) -> Result<Frame, ClientError> {
        block_on(self.inner.request(command, body))
    }

    /// See [`crate::client::Client::heartbeat`].
    pub fn heartbeat(&self) -> Result<(), ClientError> {
        block_on(self.inner.heartbeat())
    }

    /// See [`crate::client::Client::login`].
    pub fn login(&self, credentials: impl Into<Bytes>) -> Result<(), ClientError> {
        block_on(self.inner.login(credentials))
    }

    /// See [`crate::client::Client::send`]. While there is room in the
    /// client it needs no wait, and takes no trip through the runtime.
    pub fn send(
        &self,
        command: impl Into<Command>,
        body: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let (command, body) = (command.into(), body.into());
        match self.inner.try_send(command, &body) {
            Some(sent) => sent,
            None => block_on(self.inner.send(command, body)),
        }
    }

    /// See [`crate::client::Client::flush`].
    pub fn flush(&self) -> Result<(), ClientError> {
        block_on(self.inner.flush())
    }

    /// See [`crate::client::Client::recv`]. A reply already read is taken
    /// without a trip through the runtime.
    pub fn recv(&self) -> Result<Frame, ClientError> {
        match self.inner.try_recv() {
            Some(reply) => reply,
            None => block_on(self.inner.recv()),
        }
    }

    /// See [`crate::client::Client::submit`]; the body is copied. While
    /// there is room it returns at once, with no trip through the runtime;
    /// when the client is full it blocks (within the timeout), which a
    /// runtime thread (a callback) may not:
    /// [`ClientError::BlockingInRuntime`].
    pub fn submit(
        &self,
        command: impl Into<Command>,
        body: &[u8],
        done: Callback,
    ) -> Result<(), ClientError> {
        let command = command.into();
        match self
            .inner
            .try_submit(command, Bytes::copy_from_slice(body), done)?
        {
            None => Ok(()),
            Some(done) => block_on(
                self.inner
                    .submit(command, Bytes::copy_from_slice(body), done),
            ),
        }
    }

    /// The client's counters.
    pub fn stats(&self) -> ClientStats {
        self.inner.stats()
    }

    /// Closes the connection for every handle (see
    /// [`crate::client::Client::close`]) and waits until it is closed: the
    /// socket is closed and every request has had its outcome. From a
    /// runtime thread it does not wait.
    pub fn close(&self) {
        self.inner.close();
        let _ = block_on(async {
            self.inner.closed().await;
            Ok(())
        });
    }

    /// Requests without a reply yet.
    pub fn in_flight(&self) -> usize {
        block_on(async { Ok(self.inner.in_flight().await) }).unwrap_or(0)
    }

    /// The async client inside.
    pub fn as_async(&self) -> &crate::client::Client {
        &self.inner
    }
}

/// A [`crate::server::Server`] running on the shared runtime.
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    handle: ShutdownHandle,
    stats: StatsHandle,
    done: std::sync::mpsc::Receiver<()>,
}

impl Server {
    /// Binds and starts serving in the background.
    pub fn start(builder: ServerBuilder) -> Result<Server, ServerError> {
        if on_runtime_thread() {
            return Err(ServerError::BlockingInRuntime);
        }
        let server = runtime().block_on(builder.bind())?;
        let local_addr = server.local_addr();
        let metrics_addr = server.metrics_addr();
        let handle = server.shutdown_handle();
        let stats = server.stats();
        let (tx, done) = std::sync::mpsc::channel();
        runtime().spawn(async move {
            server.run().await;
            let _ = tx.send(());
        });
        Ok(Server {
            local_addr,
            metrics_addr,
            handle,
            stats,
            done,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address its metrics are served on, with `metrics_listen`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that stops it from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Reads its counters, now or after it has stopped.
    pub fn stats(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Blocks until the server has stopped (after a shutdown from anywhere).
    pub fn wait(&self) {
        let _ = self.done.recv();
    }

    /// Shuts down gracefully and waits until it has stopped.
    pub fn stop(&self) {
        self.handle.shutdown();
        self.wait();
    }
}
