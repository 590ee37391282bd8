//! Benchmark baseline: the GoPro server a Rust user would write with
//! off-the-shelf crates — tokio, `Framed` and `LengthDelimitedCodec`
//! configured for the GoPro header, with replies flushed once per batch.
//!
//! `cargo run --release --example ldc_baseline -- 127.0.0.1:9002`

use bytes::{BufMut, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_offset(4)
        .length_field_length(4)
        .length_adjustment(8)
        .num_skip(0)
        .max_frame_length(10 * 1024 * 1024)
        .new_codec()
}

fn has_frame(buf: &BytesMut) -> bool {
    buf.len() >= 8 && buf.len() - 8 >= u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9002".into());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = TcpListener::bind(&addr).await?;
            println!("listening on {}", listener.local_addr()?);
            loop {
                let (socket, _) = listener.accept().await?;
                socket.set_nodelay(true)?;
                tokio::spawn(async move {
                    let mut framed = Framed::new(socket, codec());
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
                });
            }
        })
}
