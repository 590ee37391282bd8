//! The Rust side of `scripts/bench-c.sh`: 1,000,000 frames with 32-byte
//! bodies decoded straight through the core (in place, as the C handle
//! does), fed 64 KiB at a time exactly as `bench/bench_decode.c` feeds the
//! C decoder handle.

use std::time::Instant;

use bytes::{Buf, BytesMut};
use gopro::{Command, Decoder, Frame};

const FRAMES: usize = 1_000_000;
const CHUNK: usize = 64 * 1024;

fn main() {
    let mut wire = BytesMut::new();
    for i in 0..FRAMES {
        let body = [(i % 251) as u8; 32];
        Frame::new(Command::MESSAGE, body.to_vec())
            .encode(&mut wire)
            .unwrap();
    }
    // Both core APIs: `decode` hands out owned `Bytes` bodies; in place, as
    // the C handle does, the same core work minus the FFI.
    for owned in [true, false] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let start = Instant::now();
            let mut decoder = Decoder::new();
            let mut buf = BytesMut::new();
            let (mut frames, mut bytes) = (0usize, 0usize);
            for chunk in wire.chunks(CHUNK) {
                buf.extend_from_slice(chunk);
                if owned {
                    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                        frames += 1;
                        bytes += frame.body.len() + usize::from(frame.command.code());
                    }
                } else {
                    while let Some(header) = decoder.decode_in_place(&mut buf).unwrap() {
                        let body = &buf[..header.length as usize];
                        frames += 1;
                        bytes += body.len() + usize::from(header.command.code());
                        buf.advance(header.length as usize);
                    }
                }
            }
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(frames, FRAMES);
            assert_eq!(bytes, FRAMES * 33);
            best = best.min(secs);
        }
        let name = if owned { "decode" } else { "in_place" };
        println!("rust_{name}_frames_per_s {:.0}", FRAMES as f64 / best);
    }
}
