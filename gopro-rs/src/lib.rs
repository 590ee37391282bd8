//! # gopro
//!
//! The GoPro binary TCP protocol: an 8-byte big-endian header (magic
//! `0x474F`, version, command, body length) and a body.
//!
//! - [`codec`]: the sans-IO codec — [`Frame`], [`Header`], [`Command`],
//!   [`Decoder`], [`Encoder`]. It builds with `default-features = false`,
//!   with no tokio in it.
//! - `server` and `client` (feature `runtime`, on by default): the tokio
//!   server and client over the codec.
//!
//! ```
//! use bytes::BytesMut;
//! use gopro::{Command, Decoder, Frame};
//!
//! let wire = Frame::new(Command::MESSAGE, "Hello TCP World!").to_bytes();
//! let mut buf = BytesMut::from(&wire[..]);
//! let frame = Decoder::new().decode(&mut buf)?.expect("a whole frame");
//! assert_eq!(frame.body, "Hello TCP World!");
//! # Ok::<(), gopro::Error>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;

pub use codec::{
    Codec, CodecBuilder, Command, Decoder, Encoder, Error, Frame, Header, DEFAULT_MAX_BODY,
    HEADER_LEN, MAGIC, VERSION,
};

#[cfg(feature = "runtime")]
pub mod blocking;
#[cfg(feature = "runtime")]
pub mod client;
#[cfg(feature = "runtime")]
pub mod server;
#[cfg(feature = "runtime")]
pub mod settings;
#[cfg(feature = "runtime")]
mod stream;
#[cfg(feature = "runtime")]
pub mod tls;

#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod error_samples;
