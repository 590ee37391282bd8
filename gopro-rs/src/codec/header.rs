//! The 8-byte frame header.

use super::{Command, Error};

/// The two magic bytes that open every frame: `"GO"`.
pub const MAGIC: u16 = 0x474F;
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// The size of a header on the wire.
pub const HEADER_LEN: usize = 8;
/// The default body limit: 10 MiB. A body of exactly this size is accepted.
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;

/// A frame header as it is on the wire, but never laid out like it in memory:
/// [`Header::to_bytes`] and [`Header::parse`] do the big-endian conversion.
///
/// ```text
///  0       2       3       4               8
///  +-------+-------+-------+---------------+------------------+
///  | magic |version|command|    length     | body (length B)  |
///  | 47 4F |  01   |  u8   |  u32, BE      |                  |
///  +-------+-------+-------+---------------+------------------+
/// ```
///
/// ```
/// use gopro::{Command, Header};
/// let h = Header::new(Command::MESSAGE, 16);
/// assert_eq!(h.to_bytes(), [0x47, 0x4F, 0x01, 0x01, 0x00, 0x00, 0x00, 0x10]);
/// assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// The version byte.
    pub version: u8,
    /// The command byte.
    pub command: Command,
    /// The body length in bytes.
    pub length: u32,
}

impl Header {
    /// A version-1 header.
    pub const fn new(command: Command, length: u32) -> Header {
        Header {
            version: VERSION,
            command,
            length,
        }
    }

    /// The header's 8 wire bytes, built in one go.
    #[inline]
    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let m = MAGIC.to_be_bytes();
        let l = self.length.to_be_bytes();
        [
            m[0],
            m[1],
            self.version,
            self.command.0,
            l[0],
            l[1],
            l[2],
            l[3],
        ]
    }

    /// Reads a header from its 8 wire bytes, checking the magic only.
    /// Limits and versions are the [`Decoder`](super::Decoder)'s business.
    #[inline]
    pub const fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Header, Error> {
        let magic = u16::from_be_bytes([bytes[0], bytes[1]]);
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        Ok(Header {
            version: bytes[2],
            command: Command(bytes[3]),
            length: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        })
    }

    /// Header plus body: the bytes this frame takes on the wire.
    pub const fn frame_len(&self) -> usize {
        HEADER_LEN + self.length as usize
    }
}
