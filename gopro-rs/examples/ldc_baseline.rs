//! Benchmark baseline: the GoPro server a Rust user would write with
//! off-the-shelf crates — tokio, `Framed` and `LengthDelimitedCodec`
//! configured for the GoPro header, with replies flushed once per batch.
//!
//! `cargo run --release --example ldc_baseline -- 127.0.0.1:9002`

#[path = "common/ldc.rs"]
mod ldc;
#[path = "common/listen.rs"]
mod listen;

use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

fn has_frame(buf: &BytesMut) -> bool {
    buf.len() >= 8 && buf.len() - 8 >= u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize
}

fn main() -> std::io::Result<()> {
    listen::serve("127.0.0.1:9002", |socket| async move {
        let mut framed = Framed::new(socket, ldc::ldc_codec(10 * 1024 * 1024));
        while let Some(Ok(frame)) = framed.next().await {
            if frame[0] != 0x47 || frame[1] != 0x4F {
                return;
            }
            let command = frame[3];
            let body = frame.freeze().slice(8..);
            let reply = match command {
                0 => body,
                1 => {
                    let mut b = BytesMut::with_capacity(body.len() + 13);
                    b.put_slice(b"Server says: ");
                    b.put_slice(&body);
                    b.freeze()
                }
                _ => return,
            };
            // LengthDelimitedCodec's encoder would subtract the
            // decoder's length adjustment, so the reply is written
            // into Framed's write buffer directly; `flush` sends
            // it once no further whole frame is waiting.
            let out = framed.write_buffer_mut();
            out.put_slice(&[0x47, 0x4F, 1, command]);
            out.put_u32(reply.len() as u32);
            out.put_slice(&reply);
            if !has_frame(framed.read_buffer())
                && SinkExt::<bytes::Bytes>::flush(&mut framed).await.is_err()
            {
                return;
            }
        }
    })
}
