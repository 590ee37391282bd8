//! Shared pieces of the fuzz targets: the decoder settings taken from a fuzz
//! input, an independent reading of SPEC §1–2 to check the decoders
//! against, the server session model and client, and the seed encodings
//! used by `examples/gen_corpus.rs`.

pub mod alloc;
pub mod seed;
pub mod session;

use arbitrary::Arbitrary;
use gopro::{CodecBuilder, Decoder, Error, Frame, DEFAULT_MAX_BODY, HEADER_LEN, MAGIC};

/// The input of `decode`: a settings byte (see [`Settings::from_byte`]),
/// then the stream.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct DecodeInput<'a> {
    pub settings: u8,
    pub data: &'a [u8],
}

impl DecodeInput<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = seed::Writer::new();
        w.u8(self.settings).rest(self.data);
        w.0
    }
}

/// A fuzz input laid out as a settings byte, a list of steps, then the
/// stream: [`SplitInput`] and [`CInput`].
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct StepsInput<'a, T> {
    pub settings: u8,
    pub steps: Vec<T>,
    pub data: &'a [u8],
}

impl<T: seed::Item> StepsInput<'_, T> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = seed::Writer::new();
        w.u8(self.settings)
            .vec(&self.steps, |w, step| step.write(w))
            .rest(self.data);
        w.0
    }
}

/// The input of `decode_split`: settings, where to cut the stream (each
/// taken modulo its length plus one), then the stream.
pub type SplitInput<'a> = StepsInput<'a, u16>;

impl SplitInput<'_> {
    /// The stream in pieces: cut at each position, in order, empty pieces dropped.
    pub fn pieces(&self) -> Vec<&[u8]> {
        let mut cuts: Vec<usize> = self
            .steps
            .iter()
            .map(|&c| usize::from(c) % (self.data.len() + 1))
            .collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([self.data.len()]) {
            if cut > from {
                pieces.push(&self.data[from..cut]);
                from = cut;
            }
        }
        pieces
    }
}

/// One call on a C decoder.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CCall {
    /// `gopro_decoder_feed` with the next this many bytes of the stream.
    Feed(u16),
    /// `gopro_decoder_next`.
    Next,
    /// `gopro_decoder_next_many` with room for this many frames (0 is invalid).
    NextMany(u8),
    /// `gopro_decoder_finish`.
    Finish,
}

/// The input of `c_decoder`: settings, calls, then the stream. After the
/// calls, the rest of the stream is fed and every frame taken.
pub type CInput<'a> = StepsInput<'a, CCall>;

impl seed::Item for CCall {
    fn write(&self, w: &mut seed::Writer) {
        match *self {
            CCall::Feed(n) => {
                w.variant(0, 4).u16(n);
            }
            CCall::Next => {
                w.variant(1, 4);
            }
            CCall::NextMany(cap) => {
                w.variant(2, 4).u8(cap);
            }
            CCall::Finish => {
                w.variant(3, 4);
            }
        }
    }
}

/// Body limits a fuzz input can pick (the low 3 bits of its settings byte).
pub const LIMITS: [usize; 8] = [DEFAULT_MAX_BODY, 0, 1, 4, 8, 255, 16384, u32::MAX as usize];

/// Decoder settings: a body limit and maybe a required version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub max_body: usize,
    pub version: Option<u8>,
}

impl Settings {
    /// Reads the settings byte of a fuzz input: bits 0–2 pick the body
    /// limit from [`LIMITS`]; bit 3 set requires the version in bits 4–7.
    pub fn from_byte(b: u8) -> Settings {
        Settings {
            max_body: LIMITS[usize::from(b & 7)],
            version: (b & 8 != 0).then_some(b >> 4),
        }
    }

    /// The settings `decoder` decodes with.
    pub fn of(decoder: &Decoder) -> Settings {
        Settings {
            max_body: decoder.max_body(),
            version: decoder.required_version(),
        }
    }

    /// The byte that [`Settings::from_byte`] reads back as these settings.
    pub fn to_byte(self) -> Option<u8> {
        let limit = LIMITS.iter().position(|&l| l == self.max_body)? as u8;
        match self.version {
            None => Some(limit),
            Some(v) if v < 16 => Some(limit | 8 | (v << 4)),
            Some(_) => None,
        }
    }

    pub fn builder(self) -> CodecBuilder {
        let builder = CodecBuilder::new().max_body(self.max_body);
        match self.version {
            Some(v) => builder.require_version(v),
            None => builder,
        }
    }
}

/// One frame found in a stream, with where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub frame: Frame,
}

/// How a stream ends after its whole frames.
#[derive(Debug)]
pub enum Ending {
    /// Cleanly, between frames.
    End,
    /// Inside the frame that starts at `start`; `header` if its 8 header
    /// bytes are all there (and pass the checks).
    Partial {
        start: usize,
        header: Option<gopro::Header>,
    },
    /// The header that starts at `start` is refused.
    Error { start: usize, error: Error },
}

/// What a stream decodes to.
#[derive(Debug)]
pub struct Outcome {
    pub frames: Vec<Found>,
    pub ending: Ending,
}

impl Outcome {
    /// Where the whole frames end (where an unfinished frame or a refused
    /// header starts).
    pub fn frames_end(&self) -> usize {
        self.frames.last().map_or(0, |f| f.end)
    }
}

/// SPEC §1–2 read directly, with no state machine: the expected result of
/// decoding `data` in one piece. The limit is checked before the version.
pub fn expected(settings: Settings, data: &[u8]) -> Outcome {
    let mut frames = Vec::new();
    let mut at = 0;
    let ending = loop {
        let rest = &data[at..];
        if rest.is_empty() {
            break Ending::End;
        }
        if rest.len() < HEADER_LEN {
            break Ending::Partial {
                start: at,
                header: None,
            };
        }
        let magic = u16::from_be_bytes([rest[0], rest[1]]);
        if magic != MAGIC {
            break Ending::Error {
                start: at,
                error: Error::BadMagic { found: magic },
            };
        }
        let version = rest[2];
        let command = rest[3];
        let length = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if length as usize > settings.max_body {
            break Ending::Error {
                start: at,
                error: Error::BodyTooLarge {
                    length: length.into(),
                    limit: settings.max_body,
                },
            };
        }
        if let Some(expected) = settings.version {
            if version != expected {
                break Ending::Error {
                    start: at,
                    error: Error::UnsupportedVersion {
                        found: version,
                        expected,
                    },
                };
            }
        }
        let end = HEADER_LEN + length as usize;
        if rest.len() < end {
            break Ending::Partial {
                start: at,
                header: Some(gopro::Header {
                    version,
                    command: command.into(),
                    length,
                }),
            };
        }
        frames.push(Found {
            start: at,
            end: at + end,
            frame: Frame::new(command, rest[HEADER_LEN..end].to_vec()).with_version(version),
        });
        at += end;
    };
    Outcome { frames, ending }
}

/// Panics unless two codec errors are the same error.
pub fn assert_same_error(got: &Error, want: &Error) {
    assert_eq!(got.kind(), want.kind(), "{got} vs {want}");
    assert_eq!(got.to_string(), want.to_string());
}
