//! The framing state machine: bytes in, frames out.

#[cfg(feature = "alloc")]
use bytes::{Buf, BytesMut};

#[cfg(feature = "alloc")]
use super::Frame;
use super::{Command, Error, Header, HEADER_LEN, MAGIC, VERSION};

/// Turns a byte stream into frames, with no IO of its own.
///
/// Feed it the receive buffer: [`Decoder::decode`] returns `Ok(Some(frame))`
/// when a whole frame is there, `Ok(None)` when more bytes are needed, and an
/// error when the stream cannot be trusted. The header is parsed once and its
/// magic, version and length are checked on the header alone, before any body
/// byte is awaited: the decoder never reserves memory, so a header that
/// announces a large body costs nothing until the body's bytes arrive.
///
/// ```
/// use bytes::BytesMut;
/// use gopro::{Command, Decoder};
///
/// let mut dec = Decoder::new();
/// let mut buf = BytesMut::from(&b"\x47\x4F\x01\x01\x00\x00\x00\x02h"[..]);
/// assert!(dec.decode(&mut buf)?.is_none()); // one body byte missing
/// buf.extend_from_slice(b"i");
/// let frame = dec.decode(&mut buf)?.unwrap();
/// assert_eq!((frame.command, &frame.body[..]), (Command::MESSAGE, &b"hi"[..]));
/// # Ok::<(), gopro::Error>(())
/// ```
///
/// After an error the stream is out of sync: drop the decoder and the buffer.
///
/// [`Decoder::decode`] and the other `BytesMut` calls need the `alloc`
/// feature; [`Decoder::decode_slice`] works on any byte slice, with no
/// allocator.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_body: usize,
    version: Option<u8>,
    state: State,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Waiting for (the rest of) a header.
    Head,
    /// The header was consumed from the buffer; waiting for its body.
    Body(Header),
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder with the default body limit (10 MiB) that accepts any version.
    pub const fn new() -> Decoder {
        Decoder::with_limits(super::DEFAULT_MAX_BODY, None)
    }

    pub(crate) const fn with_limits(max_body: usize, version: Option<u8>) -> Decoder {
        Decoder {
            max_body,
            version,
            state: State::Head,
        }
    }

    /// A builder for the decoder's limits; see [`CodecBuilder`](super::CodecBuilder).
    pub fn builder() -> super::CodecBuilder {
        super::CodecBuilder::new()
    }

    /// The largest body accepted.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Changes the body limit for headers not yet read (a server lifts its
    /// pre-login limit this way once a client has logged in).
    pub fn set_max_body(&mut self, max_body: usize) {
        self.max_body = max_body;
    }

    /// The only version accepted, if one is required.
    pub fn required_version(&self) -> Option<u8> {
        self.version
    }

    /// The header whose body is awaited, if any.
    pub fn pending_header(&self) -> Option<Header> {
        match self.state {
            State::Head => None,
            State::Body(h) => Some(h),
        }
    }

    /// Whether a frame is partly received, counting the bytes still in `src`.
    pub fn is_mid_frame(&self, src: &[u8]) -> bool {
        matches!(self.state, State::Body(_)) || !src.is_empty()
    }

    /// How many more bytes the frame in progress needs (at least 1 while
    /// incomplete; a whole header when nothing is buffered).
    pub fn bytes_needed(&self, src: &[u8]) -> usize {
        match self.state {
            State::Head => HEADER_LEN.saturating_sub(src.len()).max(1),
            State::Body(h) => (h.length as usize).saturating_sub(src.len()).max(1),
        }
    }

    fn check(&self, header: Header) -> Result<Header, Error> {
        if header.length as usize > self.max_body {
            return Err(Error::BodyTooLarge {
                length: header.length.into(),
                limit: self.max_body,
            });
        }
        match self.version {
            Some(expected) if header.version != expected => Err(Error::UnsupportedVersion {
                found: header.version,
                expected,
            }),
            _ => Ok(header),
        }
    }

    /// Takes the next complete frame out of `src`, or returns `Ok(None)` and
    /// keeps what is there until more bytes arrive.
    #[cfg(feature = "alloc")]
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        Ok(self.decode_in_place(src)?.map(|header| Frame {
            version: header.version,
            command: header.command,
            body: src.split_to(header.length as usize).freeze(),
        }))
    }

    /// Like [`Decoder::decode`], but leaves the body in place for callers
    /// that only read it: on `Ok(Some(header))` the header has been consumed
    /// from `src` and the body is `src[..header.length as usize]`, which the
    /// caller must consume (`src.advance(len)`) before the next call. Saves
    /// the reference counting of splitting a [`Bytes`](bytes::Bytes) out.
    ///
    /// ```
    /// use bytes::{Buf, BytesMut};
    /// use gopro::{Command, Decoder, Frame};
    ///
    /// let mut buf = BytesMut::from(&Frame::new(Command::MESSAGE, "hi").to_bytes()[..]);
    /// let mut dec = Decoder::new();
    /// let header = dec.decode_in_place(&mut buf)?.unwrap();
    /// assert_eq!(&buf[..header.length as usize], b"hi");
    /// buf.advance(header.length as usize);
    /// # Ok::<(), gopro::Error>(())
    /// ```
    #[cfg(feature = "alloc")]
    #[inline]
    pub fn decode_in_place(&mut self, src: &mut BytesMut) -> Result<Option<Header>, Error> {
        let mut used = 0;
        let header = self.decode_slice(src, &mut used)?;
        src.advance(used - header.map_or(0, |h| h.length as usize));
        Ok(header)
    }

    /// The lowest level: reads from `src[*at..]` without consuming anything
    /// and moves `*at` past what the decoder used. `Some(header)`: a whole
    /// frame ends at the new `*at`, its body is
    /// `src[*at - header.length as usize..*at]`. `None`: more bytes are
    /// needed, and what `*at` moved past (a header, or nothing) is taken into
    /// the decoder's state. The caller drops the used bytes before the next
    /// call on a new buffer; a server handling many frames from one buffer
    /// can do so once, after the last.
    ///
    /// ```
    /// use gopro::{Command, Decoder, Frame};
    ///
    /// let mut wire = Frame::new(Command::MESSAGE, "a").to_bytes().to_vec();
    /// wire.extend_from_slice(&Frame::heartbeat().to_bytes());
    /// let mut dec = Decoder::new();
    /// let mut at = 0;
    /// let header = dec.decode_slice(&wire, &mut at)?.unwrap();
    /// assert_eq!((at, header.command), (9, Command::MESSAGE));
    /// let header = dec.decode_slice(&wire, &mut at)?.unwrap();
    /// assert_eq!((at, header.command), (17, Command::HEARTBEAT));
    /// # Ok::<(), gopro::Error>(())
    /// ```
    #[inline]
    pub fn decode_slice(&mut self, src: &[u8], at: &mut usize) -> Result<Option<Header>, Error> {
        let rest = &src[*at..];
        let (header, body) = match self.state {
            State::Body(header) => (header, 0),
            State::Head => {
                let Some(head) = rest.first_chunk::<HEADER_LEN>() else {
                    return Ok(None);
                };
                (self.check(Header::parse(head)?)?, HEADER_LEN)
            }
        };
        let end = body + header.length as usize;
        if rest.len() < end {
            self.state = State::Body(header);
            *at += body;
            return Ok(None);
        }
        self.state = State::Head;
        *at += end;
        Ok(Some(header))
    }

    /// Steps `at` over the whole version-1 frames of `command` that come
    /// next in `src`, taking at most `limit` bytes; returns how many. The
    /// same as calling [`decode_slice`](Self::decode_slice) while it returns
    /// such frames, in one tight loop: a server echoing a run of HEARTBEATs
    /// needs only where the run ends. Anything else, or a frame over the
    /// limits, ends the run and is left to `decode_slice`.
    pub fn skip_run(&mut self, src: &[u8], at: &mut usize, command: Command, limit: usize) -> u64 {
        if !matches!(self.state, State::Head) || self.version.is_some_and(|v| v != VERSION) {
            return 0;
        }
        let [magic_hi, magic_lo] = MAGIC.to_be_bytes();
        let prefix = [magic_hi, magic_lo, VERSION, command.0];
        let start = *at;
        let mut count = 0;
        while let Some(head) = src.get(*at..).and_then(<[u8]>::first_chunk::<HEADER_LEN>) {
            let [m0, m1, version, code, l0, l1, l2, l3] = *head;
            if [m0, m1, version, code] != prefix {
                break;
            }
            let length = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
            // (Compared with what is left before adding: no overflow on
            // 32-bit targets, whatever the length says.)
            if length > self.max_body || length > src.len() - *at - HEADER_LEN {
                break;
            }
            let end = *at + HEADER_LEN + length;
            if end - start > limit {
                break;
            }
            *at = end;
            count += 1;
        }
        count
    }

    /// Like [`Decoder::decode`], for when the stream has ended: bytes left
    /// over that do not make a whole frame are an [`Error::UnexpectedEof`],
    /// never a short frame. Returns `Ok(None)` on a clean end between frames.
    #[cfg(feature = "alloc")]
    pub fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        let end = self.end_of_stream(src);
        self.state = State::Head;
        end.map_or(Ok(None), Err)
    }

    /// What the end of the stream means for the bytes `src` still holds,
    /// without decoding or copying them: `None` at a clean end between
    /// frames, else the [`Error::UnexpectedEof`] with the bytes of the
    /// frame in progress that arrived and the bytes it needed. Bytes not yet
    /// decoded count as the start of one frame (call [`Decoder::decode`]
    /// first to take the whole ones). The C layer's `gopro_decoder_finish`
    /// reports it as it is.
    pub fn end_of_stream(&self, src: &[u8]) -> Option<Error> {
        let received = match self.state {
            State::Head if src.is_empty() => return None,
            State::Head => src.len(),
            State::Body(_) => HEADER_LEN + src.len(),
        };
        let expected = match self.state {
            State::Head => HEADER_LEN.max(received),
            State::Body(h) => h.frame_len(),
        };
        Some(Error::UnexpectedEof {
            received: received as u64,
            expected: expected as u64,
        })
    }
}

#[cfg(all(test, feature = "alloc"))]
mod end_of_stream_tests {
    use super::*;

    fn eof(e: Option<Error>) -> Option<(u64, u64)> {
        e.map(|e| match e {
            Error::UnexpectedEof { received, expected } => (received, expected),
            other => panic!("{other}"),
        })
    }

    #[test]
    fn end_of_stream_counts_the_frame_in_progress_without_taking_it() {
        let mut d = Decoder::new();
        assert_eq!(eof(d.end_of_stream(b"")), None);
        assert_eq!(eof(d.end_of_stream(b"GO\x01")), Some((3, 8)));
        // A header and 2 of 5 body bytes: the decoder holds the header.
        let mut buf = BytesMut::from(&b"GO\x01\x01\x00\x00\x00\x05ab"[..]);
        assert!(d.decode(&mut buf).unwrap().is_none());
        assert_eq!(eof(d.end_of_stream(&buf)), Some((10, 13)));
        assert_eq!(buf.len(), 2, "nothing taken");
        // A whole frame one byte short of the end, then the last byte.
        buf.extend_from_slice(b"cd");
        assert_eq!(eof(d.end_of_stream(&buf)), Some((12, 13)));
        buf.extend_from_slice(b"e");
        assert!(d.decode(&mut buf).unwrap().is_some());
        assert_eq!(eof(d.end_of_stream(&buf)), None);
    }
}

/// The allocator-free path (`decode_slice` with `Encoder::encode_slice`);
/// these run without the `alloc` feature too.
#[cfg(test)]
mod slice_tests {
    use super::*;
    use crate::Encoder;

    /// Two frames, cut at every byte: the decoder first sees the bytes up to
    /// the cut, then the whole stream, as a receive buffer that grew.
    #[test]
    fn decode_slice_finds_every_frame_wherever_the_stream_is_cut() {
        let mut wire = [0u8; 8 + 3 + 8];
        let encoder = Encoder::new();
        let n = encoder
            .encode_slice(VERSION, Command::MESSAGE, &[b"ab", b"c"], &mut wire)
            .unwrap();
        encoder
            .encode_slice(VERSION, Command::HEARTBEAT, &[], &mut wire[n..])
            .unwrap();
        for cut in 0..=wire.len() {
            let mut dec = Decoder::new();
            let mut at = 0;
            let mut found = [None; 3];
            let mut count = 0;
            for src in [&wire[..cut], &wire[..]] {
                while let Some(header) = dec.decode_slice(src, &mut at).unwrap() {
                    let body = &src[at - header.length as usize..at];
                    found[count] = Some((header.command, body));
                    count += 1;
                }
            }
            assert_eq!(at, wire.len(), "cut at {cut}");
            assert!(!dec.is_mid_frame(&wire[at..]), "cut at {cut}");
            assert_eq!(
                found,
                [
                    Some((Command::MESSAGE, &b"abc"[..])),
                    Some((Command::HEARTBEAT, &b""[..])),
                    None
                ],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn decode_slice_checks_the_header_before_the_body_arrives() {
        let mut dec = Decoder::builder().max_body(4).build().decoder().clone();
        let mut at = 0;
        let err = dec
            .decode_slice(b"GO\x01\x01\x00\x00\x00\x05", &mut at)
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
        assert_eq!(at, 0);
        let err = dec.decode_slice(b"HTTP/1.1", &mut at).unwrap_err();
        assert!(matches!(err, Error::BadMagic { found: 0x4854 }), "{err:?}");
        // An error type for `?` and `Box<dyn Error>` with or without std.
        let err: &dyn core::error::Error = &err;
        assert!(err.source().is_none());
    }
}
