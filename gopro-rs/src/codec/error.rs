//! The codec's one error type.

use thiserror::Error;

/// Everything that can go wrong turning bytes into frames or frames into bytes.
///
/// Every decoding variant ([`Error::BadMagic`], [`Error::BodyTooLarge`],
/// [`Error::UnsupportedVersion`], [`Error::UnexpectedEof`]) means the stream cannot be trusted past
/// this point: a server answers with an ERROR frame carrying the message and
/// closes the connection (SPEC §2).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The first two bytes of a header were not `0x47 0x4F` ("GO").
    #[error("bad magic 0x{found:04X}: expected 0x474F (\"GO\"); the peer does not speak GoPro or the stream is out of sync")]
    BadMagic {
        /// The two bytes read, big-endian.
        found: u16,
    },
    /// A header announced (or a frame to encode has) a body over the limit.
    #[error("frame body of {length} bytes exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The body length announced or given.
        length: u64,
        /// The limit in force.
        limit: usize,
    },
    /// The header's version byte is not the one this peer was told to accept.
    #[error("unsupported protocol version {found}: this peer speaks version {expected}")]
    UnsupportedVersion {
        /// The version byte read.
        found: u8,
        /// The version this peer speaks.
        expected: u8,
    },
    /// The stream ended inside a header or a body.
    #[error("unexpected end of stream: {received} of {expected} bytes of a frame received")]
    UnexpectedEof {
        /// Bytes of the unfinished frame that did arrive.
        received: u64,
        /// Bytes the frame needed (8 while the header is incomplete).
        expected: u64,
    },
    /// The caller's buffer has no room for the whole frame; nothing was written.
    #[error("the frame needs {needed} bytes, the buffer has room for {capacity}")]
    BufferTooSmall {
        /// Bytes the frame takes: 8 + its body.
        needed: usize,
        /// Bytes the buffer had room for.
        capacity: usize,
    },
    /// The underlying transport failed (only from IO adapters, never from the sans-IO codec;
    /// feature `std`).
    #[cfg(feature = "std")]
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, stable name for the kind of error: `bad_magic`, `body_too_large`,
    /// `unsupported_version`, `unexpected_eof`, `buffer_too_small` or `io`. The conformance
    /// vectors and the C and Python layers use these names.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadMagic { .. } => "bad_magic",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::UnsupportedVersion { .. } => "unsupported_version",
            Error::UnexpectedEof { .. } => "unexpected_eof",
            Error::BufferTooSmall { .. } => "buffer_too_small",
            #[cfg(feature = "std")]
            Error::Io(_) => "io",
        }
    }
}
