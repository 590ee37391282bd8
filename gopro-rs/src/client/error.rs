//! What a client call can fail with.

use std::io;
use std::time::Duration;

use crate::settings::ConfigError;
use crate::{Command, Frame};

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
    /// The TLS handshake failed: the server's certificate was not trusted
    /// or does not name the server, the server refused the client's
    /// certificate, or the server does not speak TLS. Nothing was sent.
    #[error("TLS handshake with {addr} failed: {reason}")]
    Tls {
        /// The address connected to.
        addr: Box<str>,
        /// What rustls said.
        reason: Box<str>,
    },
    /// No answer within the time allowed. The connection stays open: a
    /// request already written may still be handled, and its reply is
    /// discarded when it comes.
    #[error("timed out after {after:?} waiting to {waiting_to}")]
    Timeout {
        /// What the client was doing: `connect`, `log in`, `get a reply`,
        /// `queue a request`, `write the requests` or `reconnect`.
        waiting_to: &'static str,
        /// The timeout in force.
        after: Duration,
    },
    /// The connection is closed (by [`Client::close`](super::Client::close),
    /// or it ended and the client does not reconnect); the request was not
    /// handled.
    #[error("connection closed with {unanswered} request(s) unanswered; the request was not sent")]
    Closed {
        /// Requests that got no reply when it closed.
        unanswered: usize,
    },
    /// The connection was lost (reset, closed by the server, no reply in
    /// time, invalid bytes) after the request was written: it may have been
    /// handled, so it is not sent again (unless its command was made
    /// [`repeatable`](super::ClientBuilder::repeatable)).
    #[error("connection lost ({reason}); the request may have been handled")]
    Lost {
        /// What happened to the connection.
        reason: String,
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
    /// A setting is invalid (e.g. a zero timeout); nothing was connected.
    #[error("invalid client setting: {0}")]
    Config(#[from] ConfigError),
    /// A request's body is over the client's limit; nothing was sent and
    /// the connection stays usable.
    #[error("request body of {length} bytes exceeds the client's limit of {limit} bytes; nothing was sent")]
    BodyTooLarge {
        /// The body's length.
        length: u64,
        /// The client's `max_body`.
        limit: usize,
    },
    /// The bytes given to [`Client::send_encoded`](super::Client::send_encoded)
    /// are not whole, valid frames within the limit; nothing was sent.
    #[error(
        "send_encoded: frame {index} (at byte {offset}) is not valid: {source}; nothing was sent"
    )]
    InvalidEncoded {
        /// The frame's place among the ones given, from 0.
        index: usize,
        /// Where it starts in the bytes given.
        offset: usize,
        /// What is wrong with it (boxed, as the reply of
        /// [`UnexpectedReply`](Self::UnexpectedReply) is: every call's
        /// result is as large as the largest error, so rare errors keep
        /// their payload out of line).
        source: Box<crate::Error>,
    },
    /// The server answered a request with a reply that request cannot have
    /// (a HEARTBEAT not echoed, a LOGIN not answered `OK`).
    #[error("unexpected reply to {request}: {} with {} bytes", reply.command, reply.body.len())]
    UnexpectedReply {
        /// The request's command.
        request: Command,
        /// The reply received.
        reply: Box<Frame>,
    },
    /// A receive was asked for more replies than there are requests in
    /// flight; nothing was waited for.
    #[error("asked for {wanted} reply(s) with {in_flight} request(s) in flight: send first")]
    NothingInFlight {
        /// Replies asked for.
        wanted: usize,
        /// Requests sent without a reply yet.
        in_flight: usize,
    },
    /// A blocking call ([`crate::blocking`]) was made from inside an async
    /// runtime, where it would block the runtime's thread (and could
    /// deadlock); use the async client there.
    #[error("a blocking call was made from inside an async runtime; use the async API there")]
    BlockingInRuntime,
    /// The connection failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl ClientError {
    /// Whether the request it failed may have been handled by the server
    /// (the connection was lost, or turned invalid, after it was written):
    /// what the clients count as lost.
    pub fn may_have_been_handled(&self) -> bool {
        matches!(self, ClientError::Lost { .. } | ClientError::Protocol(_))
    }

    /// A short, stable name for the kind of error: `connect`, `tls`, `timeout`,
    /// `closed`, `lost`, `server`, `goaway`, `protocol`, `config`, `body_too_large`,
    /// `invalid_encoded`, `unexpected_reply`, `nothing_in_flight`,
    /// `blocking_in_runtime` or `io`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Connect { .. } => "connect",
            ClientError::Tls { .. } => "tls",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Closed { .. } => "closed",
            ClientError::Lost { .. } => "lost",
            ClientError::Server { .. } => "server",
            ClientError::GoAway { .. } => "goaway",
            ClientError::Protocol(_) => "protocol",
            ClientError::Config(_) => "config",
            ClientError::BodyTooLarge { .. } => "body_too_large",
            ClientError::InvalidEncoded { .. } => "invalid_encoded",
            ClientError::UnexpectedReply { .. } => "unexpected_reply",
            ClientError::NothingInFlight { .. } => "nothing_in_flight",
            ClientError::BlockingInRuntime => "blocking_in_runtime",
            ClientError::Io(_) => "io",
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every call's result is as large as the largest error: a payload
    /// that makes it grow is boxed (the client's per-reply paths move
    /// these results around).
    #[test]
    fn a_client_error_is_no_larger_than_five_words() {
        assert!(std::mem::size_of::<super::ClientError>() <= 40);
    }
}
