//! Limits for the decoder and encoder, in one place.

use super::{Decoder, Encoder, DEFAULT_MAX_BODY, VERSION};

/// Configures the codec's limits.
///
/// | setting | default |
/// |---|---|
/// | [`max_body`](CodecBuilder::max_body) | 10 MiB (10,485,760 bytes), exactly that accepted |
/// | [`require_version`](CodecBuilder::require_version) | off: any version is decoded and reported |
///
/// ```
/// use gopro::Codec;
/// let codec = Codec::builder().max_body(64 * 1024).require_version(1).build();
/// assert_eq!(codec.decoder().max_body(), 65536);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct CodecBuilder {
    max_body: usize,
    version: Option<u8>,
}

impl Default for CodecBuilder {
    fn default() -> Self {
        CodecBuilder::new()
    }
}

impl CodecBuilder {
    /// The defaults.
    pub const fn new() -> CodecBuilder {
        CodecBuilder {
            max_body: DEFAULT_MAX_BODY,
            version: None,
        }
    }

    /// The largest body accepted when decoding and written when encoding.
    pub const fn max_body(mut self, max_body: usize) -> Self {
        self.max_body = max_body;
        self
    }

    /// Refuse frames of any other version, on the header alone.
    pub const fn require_version(mut self, version: u8) -> Self {
        self.version = Some(version);
        self
    }

    /// Require the version this crate speaks ([`VERSION`]).
    pub const fn require_current_version(self) -> Self {
        self.require_version(VERSION)
    }

    /// A decoder with these limits.
    pub const fn decoder(&self) -> Decoder {
        Decoder::with_limits(self.max_body, self.version)
    }

    /// An encoder with these limits.
    pub const fn encoder(&self) -> Encoder {
        Encoder::with_max_body(self.max_body)
    }

    /// Decoder and encoder together.
    pub const fn build(&self) -> Codec {
        Codec {
            decoder: self.decoder(),
            encoder: self.encoder(),
        }
    }
}

/// A decoder and an encoder with the same limits. With the `runtime`
/// feature it implements `tokio_util::codec::{Decoder, Encoder}`, so
/// `Framed<TcpStream, Codec>` works for those who bring their own IO.
#[derive(Clone, Debug, Default)]
pub struct Codec {
    decoder: Decoder,
    encoder: Encoder,
}

impl Codec {
    /// The default limits.
    pub const fn new() -> Codec {
        CodecBuilder::new().build()
    }

    /// A builder for other limits.
    pub const fn builder() -> CodecBuilder {
        CodecBuilder::new()
    }

    /// The decoding half.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The decoding half, mutably (e.g. to change its limit).
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.decoder
    }

    /// The encoding half.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}
