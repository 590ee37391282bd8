//! What a client call can fail with.

use std::io;
use std::time::Duration;

/// Why a client call failed. Each variant says whether the request was handled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection could not be made.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address asked for.
        addr: String,
        /// Why it failed.
        source: io::Error,
    },
    /// No answer within the time allowed. The connection is closed: a late
    /// reply would otherwise be taken for the next request's.
    #[error("timed out after {after:?} waiting to {waiting_to}")]
    Timeout {
        /// What the client was doing: `connect` or `get a reply`.
        waiting_to: &'static str,
        /// The timeout in force.
        after: Duration,
    },
    /// The server closed the connection.
    #[error("connection closed by the server with {unanswered} request(s) unanswered")]
    Closed {
        /// Requests sent that got no reply.
        unanswered: usize,
    },
    /// The server answered with an ERROR frame; the connection stays usable
    /// unless the server closes it.
    #[error("server error: {reason}")]
    Server {
        /// The server's reason.
        reason: String,
    },
    /// The server is shutting down (GOAWAY). The requests counted in
    /// `unanswered` were not handled and may be sent again to another server.
    #[error("server is going away ({reason}); {unanswered} request(s) were not handled and may be retried")]
    GoAway {
        /// The server's reason, maybe empty.
        reason: String,
        /// Requests sent that were not handled.
        unanswered: usize,
    },
    /// The server's bytes are not valid GoPro frames.
    #[error("protocol error: {0}")]
    Protocol(#[from] crate::Error),
    /// The client was asked to do something it cannot (e.g. a body over its limit).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl ClientError {
    /// A short, stable name for the kind of error: `connect`, `timeout`,
    /// `closed`, `server`, `goaway`, `protocol`, `invalid` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } => "connect",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Closed { .. } => "closed",
            ClientError::Server { .. } => "server",
            ClientError::GoAway { .. } => "goaway",
            ClientError::Protocol(_) => "protocol",
            ClientError::Invalid(_) => "invalid",
            ClientError::Io(_) => "io",
        }
    }
}
