//! Frames out: header in one write, then the body.

use bytes::{BufMut, BytesMut};

use super::{Error, Frame, Header};

/// Writes frames into a buffer, refusing bodies over its limit (SPEC §2:
/// replies obey the limit too).
///
/// ```
/// use bytes::BytesMut;
/// use gopro::{Command, Encoder, Frame};
///
/// let frames = [Frame::heartbeat(), Frame::new(Command::MESSAGE, "hi")];
/// let mut buf = BytesMut::new();
/// Encoder::new().encode_all(&frames, &mut buf)?;
/// assert_eq!(buf.len(), 8 + 8 + 2);
/// # Ok::<(), gopro::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Encoder {
    max_body: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// An encoder with the default body limit (10 MiB).
    pub const fn new() -> Encoder {
        Encoder::with_max_body(super::DEFAULT_MAX_BODY)
    }

    /// An encoder with another body limit.
    pub const fn with_max_body(max_body: usize) -> Encoder {
        Encoder { max_body }
    }

    /// The largest body written.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The header for a body of `length` bytes, if the limit allows it.
    #[inline]
    pub fn check_len(&self, length: usize) -> Result<(), Error> {
        if length > self.max_body || length > u32::MAX as usize {
            return Err(Error::BodyTooLarge {
                length: length as u64,
                limit: self.max_body.min(u32::MAX as usize),
            });
        }
        Ok(())
    }

    /// Appends one frame to `dst`; nothing is written on error.
    #[inline]
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        self.check_len(frame.body.len())?;
        dst.reserve(frame.encoded_len());
        put_frame(frame, dst);
        Ok(())
    }

    /// Appends many frames to `dst` with one reservation; nothing is written
    /// if any of them is over the limit.
    pub fn encode_all(&self, frames: &[Frame], dst: &mut BytesMut) -> Result<(), Error> {
        let mut total = 0usize;
        for frame in frames {
            self.check_len(frame.body.len())?;
            total += frame.encoded_len();
        }
        dst.reserve(total);
        for frame in frames {
            put_frame(frame, dst);
        }
        Ok(())
    }
}

#[inline]
fn put_frame(frame: &Frame, dst: &mut impl BufMut) {
    let header = Header {
        version: frame.version,
        command: frame.command,
        // The caller checked the length against the limit, which is at most u32::MAX.
        length: frame.body.len() as u32,
    };
    dst.put_slice(&header.to_bytes());
    dst.put_slice(&frame.body);
}
