//! One error of every kind the crate returns, each with the name the
//! README's error table gives it (`ClientError::Timeout`, ...).
//!
//! The C and Python layers each map the core's errors in one function; their
//! tests put every sample through that function and compare what comes out
//! with the table, so the table, the statuses and the exceptions cannot drift
//! apart. [`name`] matches every variant without a wildcard: a variant added
//! to an error enum does not compile until it has a name here, and then the
//! table tests fail until it has a row.

use std::io;
use std::time::Duration;

use crate::client::ClientError;
use crate::server::ServerError;
use crate::settings::ConfigError;
use crate::tls::TlsError;
use crate::{Command, Frame};

/// An error of any of the crate's error types.
#[derive(Debug)]
pub enum AnyError {
    /// A codec error.
    Codec(crate::Error),
    /// A client error.
    Client(ClientError),
    /// A server error.
    Server(ServerError),
    /// A TLS setting refused.
    Tls(TlsError),
}

/// The error's name in the README's table.
pub fn name(e: &AnyError) -> &'static str {
    match e {
        AnyError::Codec(e) => match e {
            crate::Error::BadMagic { .. } => "Error::BadMagic",
            crate::Error::BodyTooLarge { .. } => "Error::BodyTooLarge",
            crate::Error::UnsupportedVersion { .. } => "Error::UnsupportedVersion",
            crate::Error::UnexpectedEof { .. } => "Error::UnexpectedEof",
            crate::Error::BufferTooSmall { .. } => "Error::BufferTooSmall",
            crate::Error::Io(_) => "Error::Io",
        },
        AnyError::Client(e) => match e {
            ClientError::Connect { .. } => "ClientError::Connect",
            ClientError::Tls { .. } => "ClientError::Tls",
            ClientError::Timeout { .. } => "ClientError::Timeout",
            ClientError::Closed { .. } => "ClientError::Closed",
            ClientError::Lost { .. } => "ClientError::Lost",
            ClientError::Server { .. } => "ClientError::Server",
            ClientError::GoAway { .. } => "ClientError::GoAway",
            ClientError::Protocol(_) => "ClientError::Protocol",
            ClientError::Config(_) => "ClientError::Config",
            ClientError::BodyTooLarge { .. } => "ClientError::BodyTooLarge",
            ClientError::InvalidEncoded { .. } => "ClientError::InvalidEncoded",
            ClientError::UnexpectedReply { .. } => "ClientError::UnexpectedReply",
            ClientError::NothingInFlight { .. } => "ClientError::NothingInFlight",
            ClientError::BlockingInRuntime => "ClientError::BlockingInRuntime",
            ClientError::Io(_) => "ClientError::Io",
        },
        AnyError::Server(e) => match e {
            ServerError::Config(_) => "ServerError::Config",
            ServerError::Bind { .. } => "ServerError::Bind",
            ServerError::BlockingInRuntime => "ServerError::BlockingInRuntime",
            ServerError::Runtime(_) => "ServerError::Runtime",
            ServerError::Tls(_) => "ServerError::Tls",
        },
        AnyError::Tls(e) => match e {
            TlsError::Pem { .. } => "TlsError::Pem",
            TlsError::Key { .. } => "TlsError::Key",
            TlsError::Ca { .. } => "TlsError::Ca",
            TlsError::NoSystemRoots { .. } => "TlsError::NoSystemRoots",
            TlsError::ServerName { .. } => "TlsError::ServerName",
            TlsError::Config(_) => "TlsError::Config",
        },
    }
}

fn codec_samples() -> Vec<crate::Error> {
    vec![
        crate::Error::BadMagic { found: 0x4746 },
        crate::Error::BodyTooLarge {
            length: 11,
            limit: 10,
        },
        crate::Error::UnsupportedVersion {
            found: 2,
            expected: 1,
        },
        crate::Error::UnexpectedEof {
            received: 3,
            expected: 8,
        },
        crate::Error::BufferTooSmall {
            needed: 10,
            capacity: 9,
        },
        crate::Error::Io(io::Error::other("sample")),
    ]
}

/// One error of every kind, in the order of the README's table.
pub fn samples() -> Vec<AnyError> {
    let config = ConfigError::ZeroDuration { setting: "timeout" };
    let mut all: Vec<AnyError> = codec_samples().into_iter().map(AnyError::Codec).collect();
    all.extend(
        [
            ClientError::Connect {
                addr: "127.0.0.1:1".into(),
                source: io::Error::from(io::ErrorKind::ConnectionRefused),
            },
            ClientError::Tls {
                addr: "127.0.0.1:1".into(),
                reason: "invalid peer certificate: UnknownIssuer".into(),
            },
            ClientError::Timeout {
                waiting_to: "get a reply",
                after: Duration::from_secs(1),
            },
            ClientError::Closed { unanswered: 2 },
            ClientError::Lost {
                reason: "the server closed the connection".into(),
            },
            ClientError::Server {
                reason: "unknown command: 42".into(),
            },
            ClientError::GoAway {
                reason: "shutting down".into(),
                unanswered: 3,
            },
            ClientError::Protocol(crate::Error::BadMagic { found: 0x4746 }),
            ClientError::Config(config.clone()),
            ClientError::BodyTooLarge {
                length: 11,
                limit: 10,
            },
            ClientError::InvalidEncoded {
                index: 1,
                offset: 8,
                source: Box::new(crate::Error::BadMagic { found: 0x4746 }),
            },
            ClientError::UnexpectedReply {
                request: Command::HEARTBEAT,
                reply: Box::new(Frame::new(Command::MESSAGE, "no")),
            },
            ClientError::NothingInFlight {
                wanted: 1,
                in_flight: 0,
            },
            ClientError::BlockingInRuntime,
            ClientError::Io(io::Error::from(io::ErrorKind::ConnectionReset)),
        ]
        .into_iter()
        .map(AnyError::Client),
    );
    all.extend(
        [
            ServerError::Config(config),
            ServerError::Bind {
                addr: "127.0.0.1:1".into(),
                source: io::Error::from(io::ErrorKind::AddrInUse),
            },
            ServerError::BlockingInRuntime,
            ServerError::Runtime(io::Error::other("sample")),
            ServerError::Tls(TlsError::Config("sample".into())),
        ]
        .into_iter()
        .map(AnyError::Server),
    );
    let pem = |what| TlsError::Pem {
        what,
        source_name: "server.pem".into(),
        reason: "no CERTIFICATE section found".into(),
    };
    all.extend(
        [
            pem("certificate"),
            TlsError::Key {
                reason: "private key does not match certificate".into(),
            },
            TlsError::Ca {
                source_name: "ca.pem".into(),
                reason: "invalid certificate".into(),
            },
            TlsError::NoSystemRoots {
                reason: "none found".into(),
            },
            TlsError::ServerName {
                name: "bad name!".into(),
                reason: "invalid dns name".into(),
            },
            TlsError::Config("sample".into()),
        ]
        .into_iter()
        .map(AnyError::Tls),
    );
    all
}

/// The README's error table: `(rust, c, python)` for each row.
pub fn table(readme: &str) -> Vec<[String; 3]> {
    readme_rows(readme, "errors")
        .into_iter()
        .map(|cells| [cells[0].clone(), cells[1].clone(), cells[2].clone()])
        .collect()
}

/// The cells of each row of a README table that stands between
/// `<!-- {marker} -->` and `<!-- /{marker} -->`, without their
/// backquotes; no rows if the markers are missing. The tables of errors and
/// of settings are read this one way.
pub fn readme_rows(readme: &str, marker: &str) -> Vec<Vec<String>> {
    let Some(start) = readme.find(&format!("<!-- {marker} -->")) else {
        return Vec::new();
    };
    let end = readme[start..]
        .find(&format!("<!-- /{marker} -->"))
        .map_or(readme.len(), |e| start + e);
    readme[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}
