//! Frames out: header in one write, then the body.

#[cfg(feature = "alloc")]
use bytes::{BufMut, BytesMut};

#[cfg(feature = "alloc")]
use super::Frame;
use super::{Command, Error, Header, HEADER_LEN};

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

    /// The header of a frame whose body is `parts`, if the limit allows it
    /// and `room` bytes hold the whole frame.
    #[inline]
    fn header_for(
        &self,
        version: u8,
        command: Command,
        parts: &[&[u8]],
        room: usize,
    ) -> Result<Header, Error> {
        let length = parts
            .iter()
            .fold(0usize, |n, part| n.saturating_add(part.len()));
        let header = self.header(version, command, length)?;
        let needed = header.frame_len();
        if room < needed {
            return Err(Error::BufferTooSmall {
                needed,
                capacity: room,
            });
        }
        Ok(header)
    }

    /// Writes one frame whose body is `parts` one after the other into
    /// `dst`, which may be a growable buffer (`BytesMut`, `Vec<u8>`) or a
    /// caller's slice (`&mut [u8]`). Returns the bytes written, 8 + the
    /// body's length. A body over the limit gives [`Error::BodyTooLarge`],
    /// a `dst` without room for the whole frame [`Error::BufferTooSmall`];
    /// either way nothing is written. Feature `alloc`; without it,
    /// [`Encoder::encode_slice`] does the same into a slice.
    ///
    /// ```
    /// use gopro::{Command, Encoder, VERSION};
    ///
    /// let mut buf = [0u8; 16];
    /// let n = Encoder::new().encode_parts(VERSION, Command::MESSAGE, &[b"hi", b"!"], &mut &mut buf[..])?;
    /// assert_eq!(&buf[..n], b"GO\x01\x01\x00\x00\x00\x03hi!");
    /// # Ok::<(), gopro::Error>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[inline]
    pub fn encode_parts(
        &self,
        version: u8,
        command: Command,
        parts: &[&[u8]],
        dst: &mut impl BufMut,
    ) -> Result<usize, Error> {
        let header = self.header_for(version, command, parts, dst.remaining_mut())?;
        dst.put_slice(&header.to_bytes());
        for part in parts {
            dst.put_slice(part);
        }
        Ok(header.frame_len())
    }

    /// Writes one frame whose body is `parts` one after the other at the
    /// start of `dst`, with no allocator: the encoding half of
    /// [`Decoder::decode_slice`](super::Decoder::decode_slice). Returns the
    /// bytes written, 8 + the body's length; the rest of `dst` is left as it
    /// was. Fails as [`Encoder::encode_parts`] does, writing nothing.
    ///
    /// ```
    /// use gopro::{Command, Encoder, VERSION};
    ///
    /// let mut buf = [0u8; 16];
    /// let n = Encoder::new().encode_slice(VERSION, Command::MESSAGE, &[b"hi", b"!"], &mut buf)?;
    /// assert_eq!(&buf[..n], b"GO\x01\x01\x00\x00\x00\x03hi!");
    /// # Ok::<(), gopro::Error>(())
    /// ```
    #[inline]
    pub fn encode_slice(
        &self,
        version: u8,
        command: Command,
        parts: &[&[u8]],
        dst: &mut [u8],
    ) -> Result<usize, Error> {
        let header = self.header_for(version, command, parts, dst.len())?;
        let (head, mut rest) = dst.split_at_mut(HEADER_LEN);
        head.copy_from_slice(&header.to_bytes());
        for part in parts {
            let (body, after) = rest.split_at_mut(part.len());
            body.copy_from_slice(part);
            rest = after;
        }
        Ok(header.frame_len())
    }

    /// Appends one frame to `dst`; nothing is written on error.
    #[cfg(feature = "alloc")]
    #[inline]
    pub fn encode(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        dst.reserve(frame.encoded_len());
        self.encode_parts(frame.version, frame.command, &[&frame.body], dst)?;
        Ok(())
    }

    /// Appends many frames to `dst` with one reservation; nothing is written
    /// if any of them is over the limit.
    #[cfg(feature = "alloc")]
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

    /// Encodes into a copy of `buf` with `encode_slice` and, with `alloc`,
    /// into another copy with `encode_parts`: both must give the same result
    /// and the same bytes.
    fn encode<const N: usize>(
        encoder: &Encoder,
        version: u8,
        command: Command,
        parts: &[&[u8]],
        buf: [u8; N],
    ) -> (Result<usize, Error>, [u8; N]) {
        let mut out = buf;
        let result = encoder.encode_slice(version, command, parts, &mut out);
        #[cfg(feature = "alloc")]
        {
            let mut other = buf;
            let by_parts = encoder.encode_parts(version, command, parts, &mut &mut other[..]);
            assert_eq!(other, out);
            assert_eq!(result.as_ref().ok(), by_parts.as_ref().ok());
            assert_eq!(
                result.as_ref().err().map(Error::kind),
                by_parts.as_ref().err().map(Error::kind)
            );
        }
        (result, out)
    }

    #[test]
    fn encode_writes_one_frame_or_nothing() {
        let encoder = Encoder::with_max_body(4);
        let (n, buf) = encode(&encoder, 7, Command(16), &[b"ab", b"", b"cd"], [0xAA; 13]);
        assert_eq!(n.unwrap(), 12);
        assert_eq!(
            &buf, b"GO\x07\x10\x00\x00\x00\x04abcd\xAA",
            "the rest untouched"
        );

        // Over the limit: nothing written, the numbers in the error.
        let (err, buf) = encode(&encoder, 1, Command(16), &[b"abc", b"de"], [0xAA; 16]);
        let err = err.unwrap_err();
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
        let (err, buf) = encode(&encoder, 1, Command(16), &[b"abcd"], [0xAA; 11]);
        let err = err.unwrap_err();
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

        // Shorter than a header.
        let (err, _) = encode(&encoder, 1, Command::HEARTBEAT, &[], [0; 7]);
        assert!(matches!(
            err,
            Err(Error::BufferTooSmall {
                needed: 8,
                capacity: 7
            })
        ));
    }

    #[cfg(feature = "alloc")]
    #[test]
    fn encode_parts_grows_a_growable_buffer() {
        let mut out = BytesMut::new();
        Encoder::with_max_body(4)
            .encode_parts(1, Command::HEARTBEAT, &[], &mut out)
            .unwrap();
        assert_eq!(&out[..], b"GO\x01\x00\x00\x00\x00\x00");
    }
}
