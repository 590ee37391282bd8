//! `LengthDelimitedCodec` configured for the GoPro header: the baseline a
//! Rust user would write with off-the-shelf crates. Shared by the
//! `ldc_baseline` example and the codec benchmark (by `#[path]`), so that
//! both measure the same configuration.

use tokio_util::codec::LengthDelimitedCodec;

/// The codec for frames with bodies up to `max_body` bytes.
pub fn ldc_codec(max_body: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_offset(4)
        .length_field_length(4)
        // The length field counts the body only; the frame handed out keeps its header.
        .length_adjustment(8)
        .num_skip(0)
        .max_frame_length(max_body)
        .new_codec()
}
