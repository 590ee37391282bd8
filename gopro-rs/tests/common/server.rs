//! Starts servers and talks to them over real sockets, byte by byte.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use gopro::server::{Server, ServerBuilder, ShutdownHandle};
use gopro::{Command, Decoder, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub struct Running {
    pub addr: SocketAddr,
    pub handle: ShutdownHandle,
    pub task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

pub async fn start(builder: ServerBuilder) -> Running {
    let server = builder.listen("127.0.0.1:0").bind().await.unwrap();
    let addr = server.local_addr();
    let handle = server.shutdown_handle();
    let task = tokio::spawn(server.run());
    Running { addr, handle, task }
}

pub async fn start_default() -> Running {
    start(Server::builder()).await
}

/// A test client that speaks raw bytes.
pub struct Peer {
    pub stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Peer {
    pub async fn connect(addr: SocketAddr) -> Peer {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Peer {
            stream,
            buf: BytesMut::new(),
            decoder: Decoder::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, frame: &Frame) {
        self.send_raw(&frame.to_bytes()).await;
    }

    /// The next frame, or `None` at a clean end of stream; panics after 10 s.
    pub async fn recv(&mut self) -> Option<Frame> {
        self.recv_within(Duration::from_secs(10))
            .await
            .expect("a frame or the end within the time limit")
    }

    /// `Err(())` if nothing arrived within `limit`.
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Option<Frame>, ()> {
        tokio::time::timeout(limit, async {
            loop {
                if let Some(frame) = self.decoder.decode(&mut self.buf).unwrap() {
                    return Some(frame);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => {
                        assert!(self.buf.is_empty(), "stream ended mid-frame");
                        return None;
                    }
                    Ok(_) => {}
                }
            }
        })
        .await
        .map_err(|_| ())
    }

    pub async fn request(&mut self, frame: &Frame) -> Frame {
        self.send(frame).await;
        self.recv().await.expect("a reply")
    }

    /// Expects an ERROR whose reason contains `text`.
    pub async fn expect_error(&mut self, text: &str) {
        let frame = self.recv().await.expect("an ERROR frame");
        assert_eq!(frame.command, Command::ERROR, "{frame:?}");
        let reason = frame.body_text();
        assert!(
            reason.contains(text),
            "{reason:?} does not contain {text:?}"
        );
    }

    /// Expects the server to close the connection.
    pub async fn expect_closed(&mut self) {
        assert_eq!(self.recv().await, None, "expected the connection to close");
    }
}

pub fn message(body: impl Into<bytes::Bytes>) -> Frame {
    Frame::new(Command::MESSAGE, body)
}

pub fn says(body: &[u8]) -> Frame {
    let mut reply = b"Server says: ".to_vec();
    reply.extend_from_slice(body);
    Frame::new(Command::MESSAGE, reply)
}

/// A server built by `builder` and run on a thread of its own, in a
/// current-thread runtime, for the tests that count what is allocated (the
/// server's thread is then told apart from the test's). `on_thread` runs
/// first on that thread. Returns the address, the shutdown handle and the
/// thread to join once the server is shut down.
pub fn on_thread(
    on_thread: impl FnOnce() + Send + 'static,
    builder: impl FnOnce() -> ServerBuilder + Send + 'static,
) -> (SocketAddr, ShutdownHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        on_thread();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = builder().listen("127.0.0.1:0").bind().await.unwrap();
            tx.send((server.local_addr(), server.shutdown_handle()))
                .unwrap();
            server.run().await;
        });
    });
    let (addr, handle) = rx.recv().unwrap();
    (addr, handle, thread)
}
