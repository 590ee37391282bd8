//! The command byte of a frame.

use core::fmt;

/// The command byte of a frame (SPEC §3).
///
/// The named codes are associated constants; any other byte is carried as is,
/// so a frame with an unknown command still decodes and can be answered with
/// an ERROR instead of tearing the connection down.
///
/// ```
/// use gopro::Command;
/// assert_eq!(Command::MESSAGE.code(), 1);
/// assert_eq!(Command::from(42u8).to_string(), "42");
/// assert_eq!(Command::GOAWAY.to_string(), "GOAWAY");
/// assert!(Command::from(16u8).is_application());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Command(pub u8);

impl Command {
    /// Keep-alive; the server echoes the identical frame.
    pub const HEARTBEAT: Command = Command(0);
    /// Payload; the default handler echoes `"Server says: "` and the body.
    pub const MESSAGE: Command = Command(1);
    /// Credentials; answered with `OK` or ERROR.
    pub const LOGIN: Command = Command(2);
    /// Sent in place of a reply; the body is a UTF-8 reason.
    pub const ERROR: Command = Command(3);
    /// The server is shutting down; the body is a UTF-8 reason, maybe empty.
    pub const GOAWAY: Command = Command(4);
    /// The first code free for applications (16–255).
    pub const FIRST_APPLICATION: u8 = 16;

    /// The byte on the wire.
    pub const fn code(self) -> u8 {
        self.0
    }

    /// The SPEC's name of this command, if it has one.
    pub const fn name(self) -> Option<&'static str> {
        match self.0 {
            0 => Some("HEARTBEAT"),
            1 => Some("MESSAGE"),
            2 => Some("LOGIN"),
            3 => Some("ERROR"),
            4 => Some("GOAWAY"),
            _ => None,
        }
    }

    /// Codes 5–15 are reserved for later versions of the protocol.
    pub const fn is_reserved(self) -> bool {
        self.0 >= 5 && self.0 < Self::FIRST_APPLICATION
    }

    /// Codes 16–255 are free for applications.
    pub const fn is_application(self) -> bool {
        self.0 >= Self::FIRST_APPLICATION
    }
}

impl From<u8> for Command {
    fn from(code: u8) -> Self {
        Command(code)
    }
}

impl From<Command> for u8 {
    fn from(command: Command) -> Self {
        command.0
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "Command::{name}"),
            None => write!(f, "Command({})", self.0),
        }
    }
}
