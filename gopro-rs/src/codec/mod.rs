//! The sans-IO codec: bytes in, frames out, and back. No sockets, clocks or
//! tokio in here; everything else in the project is a layer over it.
//!
//! A frame is an 8-byte big-endian header and a body (SPEC §1):
//!
//! ```text
//!  offset 0       2         3         4                8
//!         +-------+---------+---------+----------------+----------------+
//!         | magic | version | command | length (u32)   | body           |
//!         | 47 4F |   01    |   u8    | big-endian     | length bytes   |
//!         +-------+---------+---------+----------------+----------------+
//! ```

mod builder;
mod command;
mod decoder;
mod encoder;
mod error;
#[cfg(feature = "alloc")]
mod frame;
mod header;
#[cfg(feature = "runtime")]
mod tokio_codec;

pub use builder::{Codec, CodecBuilder};
pub use command::Command;
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use error::Error;
#[cfg(feature = "alloc")]
pub use frame::Frame;
pub use header::{Header, DEFAULT_MAX_BODY, HEADER_LEN, MAGIC, VERSION};
