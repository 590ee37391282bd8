//! A client connection for a driver with an event loop of its own (the
//! asyncio client runs on Python's): opened, TLS handshake and LOGIN
//! included, on the tokio runtime like the tokio client's, then handed over
//! as a non-blocking std socket that the driver reads and writes when its
//! loop says the descriptor is ready. The requests and replies themselves
//! go through a [`Pipeline`](super::Pipeline).

use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;

use bytes::{Bytes, BytesMut};

use super::connect::open;
use super::{login_result, ClientError, ClientSettings};
use crate::{Command, Decoder, Encoder};

/// An open client connection, non-blocking.
pub struct Socket {
    tcp: TcpStream,
    /// Boxed: a rustls connection is large.
    tls: Option<Box<rustls::ClientConnection>>,
    /// Bytes read with the LOGIN's reply that came after it.
    early: BytesMut,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Socket {
    /// Connects to the first of the settings' addresses, from `start` and
    /// going round, that answers within the connect timeout (its TLS
    /// handshake, and the LOGIN with the settings' credentials, included).
    /// Returns the socket and its address's index. Runs on the tokio
    /// runtime. A LOGIN refused is `Err` when `refused_fails`, and is
    /// otherwise logged and the socket returned.
    pub async fn open(
        settings: &ClientSettings,
        start: usize,
        refused_fails: bool,
    ) -> Result<(Socket, usize), ClientError> {
        let limit = settings.connect_timeout;
        let (mut stream, index) =
            open(&settings.addrs, start, limit, settings.tls.as_ref()).await?;
        let mut early = BytesMut::new();
        if let Some(credentials) = &settings.login {
            let addr = &settings.addrs[index];
            let login = log_in(
                &mut stream,
                credentials,
                settings.pipeline.max_body,
                &mut early,
            );
            match tokio::time::timeout(limit, login).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if refused_fails || !matches!(e, ClientError::Server { .. }) => {
                    return Err(e)
                }
                Ok(Err(e)) => {
                    tracing::warn!(%addr, error = %e, "gopro client: LOGIN refused after reconnecting")
                }
                Err(_) => {
                    return Err(ClientError::Timeout {
                        waiting_to: "log in",
                        after: limit,
                    })
                }
            }
        }
        let (tcp, tls) = stream
            .into_client_parts()
            .map_err(|source| ClientError::Connect {
                addr: settings.addrs[index].clone(),
                source,
            })?;
        Ok((
            Socket {
                tcp,
                tls: tls.map(Box::new),
                early,
            },
            index,
        ))
    }

    /// The descriptor, for the event loop to watch.
    #[cfg(unix)]
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.tcp)
    }

    /// Reads what is there into `buf` without waiting: `Ok(0)` at the end
    /// of the stream, `WouldBlock` when nothing is there now. Over TLS, a
    /// read may queue records to send (see [`wants_write`](Self::wants_write)).
    pub fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = self.early.len();
            buf.extend_from_slice(&self.early.split());
            return Ok(n);
        }
        let Some(tls) = &mut self.tls else {
            let socket = socket2::SockRef::from(&self.tcp);
            let spare = buf.spare_capacity_mut();
            let n = socket.recv(spare)?;
            // SAFETY: `recv` initialised the first `n` bytes of the spare room.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        };
        let mut chunk = [0u8; 16 * 1024];
        loop {
            // Every decrypted byte is handed out: the loop watches the
            // socket, and bytes left inside rustls would wait for the next
            // bytes on the socket.
            let mut total = 0;
            let closed = loop {
                match tls.reader().read(&mut chunk) {
                    // The peer's close_notify: the end of the stream.
                    Ok(0) => break true,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        total += n;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    // The error comes again at the next read, after these bytes.
                    Err(_) if total > 0 => break false,
                    Err(e) => return Err(e),
                }
            };
            if total > 0 || closed {
                return Ok(total);
            }
            // At the end of the stream (0), rustls notes it, and its reader
            // says next whether the session was closed properly.
            tls.read_tls(&mut &self.tcp)?;
            if let Err(e) = tls.process_new_packets() {
                // The alert rustls queued for the peer goes if it can.
                let _ = tls.write_tls(&mut &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    /// Writes what the socket takes now; `WouldBlock` when it takes
    /// nothing. Over TLS, bytes are taken (encrypted) only while the records
    /// already made have gone to the socket, so that rustls holds little;
    /// see [`flush`](Self::flush).
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return socket2::SockRef::from(&self.tcp).send_with_flags(data, libc::MSG_NOSIGNAL);
        }
        self.flush()?;
        let Some(tls) = &mut self.tls else {
            return Ok(0);
        };
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // rustls stops taking bytes (0) once its buffer of records is full.
        let n = tls.writer().write(data)?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush()?;
        Ok(n)
    }

    /// Whether TLS records wait for room in the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Writes the TLS records waiting, as far as the socket takes them now.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while tls.wants_write() {
            match tls.write_tls(&mut NoSigPipe(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Says the stream ends (TLS close_notify, if the socket takes it now)
    /// and closes the socket.
    pub fn close(mut self) {
        if let Some(tls) = &mut self.tls {
            tls.send_close_notify();
            let _ = self.flush();
        }
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}

/// The socket as rustls writes to it, with `MSG_NOSIGNAL`: a peer gone
/// must not raise SIGPIPE in the host program.
struct NoSigPipe<'a>(&'a TcpStream);

impl io::Write for NoSigPipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        socket2::SockRef::from(self.0).send_with_flags(buf, libc::MSG_NOSIGNAL)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sends LOGIN on a new connection and reads its answer; what came after
/// the answer is left in `rest`.
async fn log_in(
    stream: &mut crate::stream::Stream,
    credentials: &Bytes,
    max_body: usize,
    rest: &mut BytesMut,
) -> Result<(), ClientError> {
    let lost = |e: io::Error| ClientError::Lost {
        reason: format!("LOGIN failed: {e}"),
    };
    let mut out = BytesMut::new();
    super::encode_request(
        &Encoder::with_max_body(max_body),
        Command::LOGIN,
        credentials,
        &mut out,
    )?;
    stream.write_all(&out).await.map_err(lost)?;
    let mut decoder: Decoder = crate::Codec::builder().max_body(max_body).decoder();
    loop {
        if let Some(frame) = decoder.decode(rest).map_err(ClientError::Protocol)? {
            return login_result(frame);
        }
        stream.readable().await.map_err(lost)?;
        rest.reserve(8 * 1024);
        match stream.read_buf(rest, usize::MAX) {
            Ok(0) => {
                return Err(ClientError::Lost {
                    reason: "the server closed the connection during LOGIN".to_string(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(lost(e)),
        }
    }
}
