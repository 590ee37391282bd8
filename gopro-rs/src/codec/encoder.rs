//! Frames out: header in one write, then the body.

use bytes::{BufMut, BytesMut};

use super::{Command, Error, Frame, Header};

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

    /// Checks a body of `length` bytes against the limit (and the 32-bit
    /// length field).
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

    /// The header of a frame with a body of `length` bytes, if the limit
    /// allows it. Every layer that writes a frame gets its header here, so
    /// the limit is checked the one way.
    #[inline]
    pub fn header(&self, version: u8, command: Command, length: usize) -> Result<Header, Error> {
        self.check_len(length)?;
        Ok(Header {
            version,
            command,
            // Checked above: at most u32::MAX.
            length: length as u32,
        })
    }

    /// Writes one frame whose body is `parts` one after the other into
    /// `dst`, which may be a growable buffer (`BytesMut`, `Vec<u8>`) or a
    /// caller's slice (`&mut [u8]`). Returns the bytes written, 8 + the
    /// body's length. A body over the limit gives [`Error::BodyTooLarge`],
    /// a `dst` without room for the whole frame [`Error::BufferTooSmall`];
    /// either way nothing is written.
    ///
    /// ```
    /// use gopro::{Command, Encoder, VERSION};
    ///
    /// let mut buf = [0u8; 16];
    /// let n = Encoder::new().encode_parts(VERSION, Command::MESSAGE, &[b"hi", b"!"], &mut &mut buf[..])?;
    /// assert_eq!(&buf[..n], b"GO\x01\x01\x00\x00\x00\x03hi!");
    /// # Ok::<(), gopro::Error>(())
    /// ```
    #[inline]
    pub fn encode_parts(
        &self,
        version: u8,
        command: Command,
        parts: &[&[u8]],
        dst: &mut impl BufMut,
    ) -> Result<usize, Error> {
        let length = parts
            .iter()
            .fold(0usize, |n, part| n.saturating_add(part.len()));
        let header = self.header(version, command, length)?;
        let total = header.frame_len();
        if dst.remaining_mut() < total {
            return Err(Error::BufferTooSmall {
                needed: total,
                capacity: dst.remaining_mut(),
            });
        }
        dst.put_slice(&header.to_bytes());
        for part in parts {
            dst.put_slice(part);
        }
        Ok(total)
    }

    /// Appends one frame to `dst`; nothing is written on error.
    #[inline]
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        dst.reserve(frame.encoded_len());
        self.encode_parts(frame.version, frame.command, &[&frame.body], dst)?;
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
            self.encode_parts(frame.version, frame.command, &[&frame.body], dst)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_parts_writes_one_frame_or_nothing() {
        let encoder = Encoder::with_max_body(4);
        let mut buf = [0xAAu8; 12];
        let n = encoder
            .encode_parts(7, Command(16), &[b"ab", b"", b"cd"], &mut &mut buf[..])
            .unwrap();
        assert_eq!(n, 12);
        assert_eq!(&buf, b"GO\x07\x10\x00\x00\x00\x04abcd");

        // Over the limit: nothing written, the numbers in the error.
        let mut buf = [0xAAu8; 16];
        let err = encoder
            .encode_parts(1, Command(16), &[b"abc", b"de"], &mut &mut buf[..])
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BodyTooLarge {
                    length: 5,
                    limit: 4
                }
            ),
            "{err:?}"
        );
        assert_eq!(buf, [0xAA; 16]);

        // A slice one byte short: nothing written, how much was needed.
        let mut buf = [0xAAu8; 11];
        let err = encoder
            .encode_parts(1, Command(16), &[b"abcd"], &mut &mut buf[..])
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::BufferTooSmall {
                    needed: 12,
                    capacity: 11
                }
            ),
            "{err:?}"
        );
        assert_eq!(buf, [0xAA; 11]);

        // A growable buffer grows.
        let mut out = BytesMut::new();
        encoder
            .encode_parts(1, Command::HEARTBEAT, &[], &mut out)
            .unwrap();
        assert_eq!(&out[..], b"GO\x01\x00\x00\x00\x00\x00");
    }
}
