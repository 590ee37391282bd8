//! The Rust side of `scripts/bench-c.sh`: 1,000,000 frames with 32-byte
//! bodies decoded straight through the core, fed 64 KiB at a time exactly
//! as `bench/bench_decode.c` feeds the C decoder handle.

use std::time::Instant;

use bytes::BytesMut;
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
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut decoder = Decoder::new();
        let mut buf = BytesMut::new();
        let (mut frames, mut bytes) = (0usize, 0usize);
        for chunk in wire.chunks(CHUNK) {
            buf.extend_from_slice(chunk);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                frames += 1;
                bytes += frame.body.len() + usize::from(frame.command.code());
            }
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(frames, FRAMES);
        assert_eq!(bytes, FRAMES * 33);
        best = best.min(secs);
    }
    println!("rust_decode_frames_per_s {:.0}", FRAMES as f64 / best);
}
