//! How a client's connection ends, and what each request it left
//! unanswered gets: the rules every client driver (the tokio task, the
//! asyncio client on its event loop) applies.

use super::pipeline::Fate;
use super::ClientError;

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The client was closed, or every handle dropped with nothing left to do.
    Closed,
    /// The server is going away (GOAWAY), with its reason.
    GoAway(String),
    /// The connection was lost (reset, end of stream, no reply in time).
    Lost(String),
    /// The server's bytes are not GoPro: its requests in flight get the error.
    Protocol(crate::Error),
    /// The TLS session failed (an alert from the server, or bytes that are
    /// not TLS): nothing sent on it was handled.
    Tls(String),
}

impl End {
    /// How a failed read or write ends the connection: a TLS error
    /// (rustls' error inside the I/O error) or a lost connection.
    pub fn from_io(what: &str, e: std::io::Error) -> End {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => End::Tls(tls.to_string()),
            None => End::Lost(format!("{what} failed: {e}")),
        }
    }

    /// The server ended the stream: cut inside a reply (`cut`, SPEC §2),
    /// or between two.
    pub fn end_of_stream(cut: Option<crate::Error>) -> End {
        match cut {
            Some(e) => End::Protocol(e),
            None => End::Lost("the server closed the connection".to_string()),
        }
    }

    /// The server sent a frame no request was waiting for: the connection
    /// cannot be trusted any more.
    pub fn unsolicited(frame: &crate::Frame) -> End {
        End::Lost(format!(
            "the server sent {} with no request waiting for it",
            frame.command
        ))
    }

    /// The error of a request whose connection ended after one before it
    /// was kept to be written again ([`Event::Failed`](super::pipeline::Event::Failed)).
    pub fn failed_in_turn(fate: Fate) -> ClientError {
        End::Lost("the connection was lost".to_string()).failure(fate, "", 1)
    }

    /// A TLS failure after a session that brought replies lost its
    /// connection; before any (a refused client certificate) the session
    /// never worked.
    pub fn after(self, answered: bool) -> End {
        match self {
            End::Tls(reason) if answered => End::Lost(reason),
            end => end,
        }
    }

    /// Logs the end of a connection to `addr`.
    pub fn log(&self, addr: &str) {
        use tracing::{info, warn};
        match self {
            End::Closed => {}
            End::GoAway(reason) => info!(%addr, reason, "gopro client: the server is going away"),
            End::Lost(reason) => warn!(%addr, reason, "gopro client: connection lost"),
            End::Protocol(e) => {
                warn!(%addr, error = %e, "gopro client: invalid bytes from the server")
            }
            End::Tls(reason) => warn!(%addr, reason, "gopro client: TLS session failed"),
        }
    }

    /// What the logs say of it.
    pub fn reason(&self) -> String {
        match self {
            End::Closed => "the client was closed".to_string(),
            End::GoAway(reason) => format!("the server is going away ({reason})"),
            End::Lost(reason) | End::Tls(reason) => reason.clone(),
            End::Protocol(e) => format!("invalid bytes from the server: {e}"),
        }
    }

    /// The error of a request this end left unanswered (`unanswered` of
    /// them in all) at `addr`, by its fate.
    pub fn failure(&self, fate: Fate, addr: &str, unanswered: usize) -> ClientError {
        match (fate, self) {
            // The server ended the TLS session: it handled nothing sent on
            // it after that (a refused client certificate ends it before
            // any request is read).
            (_, End::Tls(reason)) => ClientError::Tls {
                addr: addr.into(),
                reason: reason.as_str().into(),
            },
            (Fate::MayHaveBeenHandled, End::Protocol(e)) => {
                ClientError::Protocol(copy_codec_error(e))
            }
            (Fate::MayHaveBeenHandled, End::Lost(reason) | End::GoAway(reason)) => {
                ClientError::Lost {
                    reason: reason.clone(),
                }
            }
            (Fate::NotHandled, End::GoAway(reason)) => ClientError::GoAway {
                reason: reason.clone(),
                unanswered,
            },
            _ => ClientError::Closed { unanswered },
        }
    }

    /// The error of every call made once the client has ended for good
    /// with this end, at `addr`.
    pub fn final_error(&self, addr: &str) -> ClientError {
        match self {
            End::GoAway(reason) => ClientError::GoAway {
                reason: reason.clone(),
                unanswered: 0,
            },
            End::Protocol(e) => ClientError::Protocol(copy_codec_error(e)),
            End::Tls(reason) => ClientError::Tls {
                addr: addr.into(),
                reason: reason.as_str().into(),
            },
            End::Closed | End::Lost(_) => ClientError::Closed { unanswered: 0 },
        }
    }
}

/// The codec's error again, for each request it fails.
pub(super) fn copy_codec_error(e: &crate::Error) -> crate::Error {
    use crate::Error;
    match e {
        Error::BadMagic { found } => Error::BadMagic { found: *found },
        Error::BodyTooLarge { length, limit } => Error::BodyTooLarge {
            length: *length,
            limit: *limit,
        },
        Error::UnsupportedVersion { found, expected } => Error::UnsupportedVersion {
            found: *found,
            expected: *expected,
        },
        Error::UnexpectedEof { received, expected } => Error::UnexpectedEof {
            received: *received,
            expected: *expected,
        },
        Error::BufferTooSmall { needed, capacity } => Error::BufferTooSmall {
            needed: *needed,
            capacity: *capacity,
        },
        Error::Io(io) => Error::Io(std::io::Error::new(io.kind(), io.to_string())),
    }
}

/// A copy of an error made for many callers: the kinds a client's end
/// gives ([`End::final_error`]) and those a batch or a timeout hands out;
/// any other kind becomes `Closed`.
pub fn clone_error(e: &ClientError) -> ClientError {
    match e {
        ClientError::GoAway { reason, unanswered } => ClientError::GoAway {
            reason: reason.clone(),
            unanswered: *unanswered,
        },
        ClientError::Protocol(e) => ClientError::Protocol(copy_codec_error(e)),
        ClientError::Tls { addr, reason } => ClientError::Tls {
            addr: addr.clone(),
            reason: reason.clone(),
        },
        ClientError::Server { reason } => ClientError::Server {
            reason: reason.clone(),
        },
        ClientError::Lost { reason } => ClientError::Lost {
            reason: reason.clone(),
        },
        ClientError::Timeout { waiting_to, after } => ClientError::Timeout {
            waiting_to,
            after: *after,
        },
        ClientError::Closed { unanswered } => ClientError::Closed {
            unanswered: *unanswered,
        },
        _ => ClientError::Closed { unanswered: 0 },
    }
}
