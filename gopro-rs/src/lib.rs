//! # gopro
//!
//! The GoPro binary TCP protocol: an 8-byte big-endian header (magic
//! `0x474F`, version, command, body length) and a body.
//!
//! - [`codec`]: the sans-IO codec — [`Frame`], [`Header`], [`Command`],
//!   [`Decoder`], [`Encoder`]. It builds with `default-features = false`,
//!   with no tokio in it, for `#![no_std]` targets (see "Features").
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
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `std` | on | the standard library: [`Error`] gets its `Io` variant; implies `alloc` |
//! | `alloc` | with `std` | [`Frame`] (its body is a [`bytes::Bytes`]) and the `BytesMut` calls: [`Decoder::decode`], [`Encoder::encode`] … |
//! | `runtime` | on | the tokio server and client; implies `std` |
//! | `cli` | off | the `gopro` command's own dependencies |
//!
//! Without `std` the crate is `#![no_std]`. Without `alloc` as well it needs
//! no allocator: [`Header`], [`Command`], [`Decoder::decode_slice`],
//! [`Decoder::skip_run`], [`Decoder::end_of_stream`] and
//! [`Encoder::encode_slice`] read and write frames in the caller's buffers.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod codec;

#[cfg(feature = "alloc")]
pub use codec::Frame;
pub use codec::{
    Codec, CodecBuilder, Command, Decoder, Encoder, Error, Header, DEFAULT_MAX_BODY, HEADER_LEN,
    MAGIC, VERSION,
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

// The examples of the crate's README (what crates.io shows) are tested too.
#[cfg(all(doctest, feature = "std"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
