//! Codec throughput against tokio-util's `LengthDelimitedCodec` configured
//! for the same header, with the magic and command checks a user would add.

#[path = "../examples/common/ldc.rs"]
mod ldc;

use std::hint::black_box;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gopro::{Command, Decoder, Encoder, Frame, MAGIC};
use tokio_util::codec::{Decoder as _, Encoder as _, LengthDelimitedCodec};

const SMALL_FRAMES: usize = 1_000_000;
const LARGE_FRAMES: usize = 1_000;

fn frames(count: usize, body: usize) -> Vec<Frame> {
    (0..count)
        .map(|i| Frame::new(Command::MESSAGE, Bytes::from(vec![(i % 251) as u8; body])))
        .collect()
}

fn wire(frames: &[Frame]) -> Bytes {
    let mut buf = BytesMut::new();
    Encoder::new().encode_all(frames, &mut buf).unwrap();
    buf.freeze()
}

/// The `LengthDelimitedCodec` baseline, as the `ldc_baseline` example uses it.
fn baseline_codec() -> LengthDelimitedCodec {
    ldc::ldc_codec(gopro::DEFAULT_MAX_BODY)
}

/// What a user of `LengthDelimitedCodec` writes to get a frame out of its output.
fn baseline_frame(mut raw: BytesMut) -> Frame {
    assert_eq!(u16::from_be_bytes([raw[0], raw[1]]), MAGIC, "bad magic");
    let version = raw[2];
    let command = Command(raw[3]);
    let body = raw.split_off(8).freeze();
    Frame {
        version,
        command,
        body,
    }
}

fn decode(c: &mut Criterion) {
    for (name, count, body) in [
        ("32B", SMALL_FRAMES, 32),
        ("64KiB", LARGE_FRAMES, 64 * 1024),
    ] {
        let input = wire(&frames(count, body));
        let mut group = c.benchmark_group(format!("decode_{name}"));
        group.throughput(Throughput::Elements(count as u64));
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("gopro", count), |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&input[..]);
                let mut decoder = Decoder::new();
                let mut n = 0;
                while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                    black_box(&frame);
                    n += 1;
                }
                assert_eq!(n, count);
            })
        });
        group.bench_function(BenchmarkId::new("length_delimited", count), |b| {
            b.iter(|| {
                let mut buf = BytesMut::from(&input[..]);
                let mut codec = baseline_codec();
                let mut n = 0;
                while let Some(raw) = codec.decode(&mut buf).unwrap() {
                    black_box(baseline_frame(raw));
                    n += 1;
                }
                assert_eq!(n, count);
            })
        });
        group.finish();
    }
}

/// One server read at 50 x 64: 64 HEARTBEATs, stepped over frame by frame
/// with `decode_slice` or as one run with `skip_run`.
fn scan(c: &mut Criterion) {
    let input = wire(
        &(0..64)
            .map(|_| Frame::new(Command::HEARTBEAT, Bytes::from(vec![7; 32])))
            .collect::<Vec<_>>(),
    );
    let mut group = c.benchmark_group("scan_64_heartbeats");
    group.throughput(Throughput::Elements(64));
    group.bench_function("decode_slice", |b| {
        let mut decoder = Decoder::new();
        b.iter(|| {
            let mut at = 0;
            let mut n = 0;
            while let Some(header) = decoder.decode_slice(black_box(&input), &mut at).unwrap() {
                black_box(header);
                n += 1;
            }
            assert_eq!(n, 64);
        })
    });
    group.bench_function("skip_run", |b| {
        let mut decoder = Decoder::new();
        b.iter(|| {
            let mut at = 0;
            let n = decoder.skip_run(black_box(&input), &mut at, Command::HEARTBEAT, usize::MAX);
            assert_eq!(n, 64);
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    for (name, count, body) in [
        ("32B", SMALL_FRAMES, 32),
        ("64KiB", LARGE_FRAMES, 64 * 1024),
    ] {
        let frames = frames(count, body);
        let total = wire(&frames).len();
        let mut group = c.benchmark_group(format!("encode_{name}"));
        group.throughput(Throughput::Elements(count as u64));
        group.sample_size(10);
        group.bench_function(BenchmarkId::new("gopro_each", count), |b| {
            let mut buf = BytesMut::with_capacity(total);
            let encoder = Encoder::new();
            b.iter(|| {
                buf.clear();
                for frame in &frames {
                    encoder.encode(frame, &mut buf).unwrap();
                }
                black_box(buf.len());
            })
        });
        group.bench_function(BenchmarkId::new("gopro_all", count), |b| {
            let mut buf = BytesMut::with_capacity(total);
            let encoder = Encoder::new();
            b.iter(|| {
                buf.clear();
                encoder.encode_all(&frames, &mut buf).unwrap();
                black_box(buf.len());
            })
        });
        group.bench_function(BenchmarkId::new("length_delimited", count), |b| {
            let mut buf = BytesMut::with_capacity(total);
            let mut codec = baseline_codec();
            b.iter(|| {
                buf.clear();
                for frame in &frames {
                    // The user writes magic, version and command; the codec adds length and body.
                    buf.put_slice(&[0x47, 0x4F, frame.version, frame.command.0]);
                    codec.encode(frame.body.clone(), &mut buf).unwrap();
                }
                black_box(buf.len());
            })
        });
        group.finish();
    }
}

criterion_group!(benches, decode, scan, encode);
criterion_main!(benches);
