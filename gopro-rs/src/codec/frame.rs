//! A whole frame: header fields and body.

use alloc::borrow::Cow;
use alloc::string::String;

use bytes::{BufMut, Bytes, BytesMut};

use super::{Command, Error, Header, HEADER_LEN, VERSION};

/// One frame. The body is a [`Bytes`]: frames from the [`Decoder`](super::Decoder)
/// share the receive buffer instead of copying out of it.
///
/// ```
/// use gopro::{Command, Frame};
/// let f = Frame::new(Command::MESSAGE, "Hello TCP World!");
/// let wire = f.to_bytes();
/// assert_eq!(&wire[..8], &[0x47, 0x4F, 1, 1, 0, 0, 0, 16]);
/// assert_eq!(&wire[8..], b"Hello TCP World!");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The version byte (1 for frames this crate makes).
    pub version: u8,
    /// The command byte.
    pub command: Command,
    /// The body.
    pub body: Bytes,
}

impl Frame {
    /// A version-1 frame.
    pub fn new(command: impl Into<Command>, body: impl Into<Bytes>) -> Frame {
        Frame {
            version: VERSION,
            command: command.into(),
            body: body.into(),
        }
    }

    /// A HEARTBEAT with an empty body.
    pub fn heartbeat() -> Frame {
        Frame::new(Command::HEARTBEAT, Bytes::new())
    }

    /// An ERROR frame carrying `reason`.
    pub fn error(reason: impl Into<String>) -> Frame {
        Frame::new(Command::ERROR, reason.into())
    }

    /// A GOAWAY frame carrying `reason` (may be empty).
    pub fn goaway(reason: impl Into<String>) -> Frame {
        Frame::new(Command::GOAWAY, reason.into())
    }

    /// The same frame with another version byte.
    pub fn with_version(mut self, version: u8) -> Frame {
        self.version = version;
        self
    }

    /// This frame's header. Fails if the body does not fit the 32-bit length field.
    pub fn header(&self) -> Result<Header, Error> {
        super::Encoder::with_max_body(u32::MAX as usize).header(
            self.version,
            self.command,
            self.body.len(),
        )
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }

    /// Writes header then body into `dst`. Checks only the 32-bit length
    /// field; the [`Encoder`](super::Encoder) also enforces a body limit.
    pub fn encode(&self, dst: &mut impl BufMut) -> Result<(), Error> {
        super::Encoder::with_max_body(u32::MAX as usize).encode_parts(
            self.version,
            self.command,
            &[&self.body],
            dst,
        )?;
        Ok(())
    }

    /// The frame's wire bytes in a new buffer.
    ///
    /// # Panics
    /// If the body is longer than `u32::MAX` bytes; use [`Frame::encode`] to get an error instead.
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf)
            .expect("frame body longer than the 32-bit length field");
        buf.freeze()
    }

    /// The body as UTF-8 text, lossily (ERROR and GOAWAY reasons are UTF-8).
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }
}
