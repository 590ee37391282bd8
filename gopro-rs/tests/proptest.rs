//! Property tests of the decoder: any fragmentation, any garbage.

use bytes::BytesMut;
use gopro::{Codec, Command, Decoder, Encoder, Error, Frame, HEADER_LEN};
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Frame> {
    (
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(version, command, body)| Frame::new(command, body).with_version(version))
}

/// Decodes `input` delivered in pieces of the given sizes (cycled).
fn decode_in_chunks(
    decoder: &mut Decoder,
    input: &[u8],
    sizes: &[usize],
) -> Result<Vec<Frame>, Error> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = sizes[i % sizes.len()].min(input.len() - at);
        i += 1;
        buf.extend_from_slice(&input[at..at + n]);
        at += n;
        while let Some(frame) = decoder.decode(&mut buf)? {
            frames.push(frame);
        }
    }
    if let Some(frame) = decoder.decode_eof(&mut buf)? {
        frames.push(frame);
    }
    Ok(frames)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_survive_any_fragmentation(
        frames in prop::collection::vec(frame(), 0..20),
        sizes in prop::collection::vec(1usize..64, 1..16),
    ) {
        let mut wire = BytesMut::new();
        Encoder::new().encode_all(&frames, &mut wire).unwrap();
        let mut decoder = Decoder::new();
        let decoded = decode_in_chunks(&mut decoder, &wire, &sizes).unwrap();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn frames_survive_one_byte_at_a_time(frames in prop::collection::vec(frame(), 0..6)) {
        let mut wire = BytesMut::new();
        Encoder::new().encode_all(&frames, &mut wire).unwrap();
        let decoded = decode_in_chunks(&mut Decoder::new(), &wire, &[1]).unwrap();
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn garbage_never_panics_or_reserves(
        input in prop::collection::vec(any::<u8>(), 0..2048),
        max_body in 0usize..512,
        sizes in prop::collection::vec(1usize..40, 1..8),
        magic_prefix in any::<bool>(),
    ) {
        // Half the cases start like a real header so the length paths get exercised.
        let mut input = input;
        if magic_prefix && input.len() >= 2 {
            input[0] = 0x47;
            input[1] = 0x4F;
        }
        let mut decoder = Codec::builder().max_body(max_body).decoder();
        let mut buf = BytesMut::new();
        let mut consumed = 0usize;
        let mut at = 0;
        let mut i = 0;
        'feed: while at < input.len() {
            let n = sizes[i % sizes.len()].min(input.len() - at);
            i += 1;
            buf.extend_from_slice(&input[at..at + n]);
            at += n;
            loop {
                let capacity = buf.capacity();
                let before = buf.len();
                let result = decoder.decode(&mut buf);
                // The decoder never reserves: capacity only shrinks as frames are split off.
                prop_assert!(buf.capacity() <= capacity);
                prop_assert!(capacity <= max_body + HEADER_LEN + 64 || capacity <= input.len() + 64);
                consumed += before - buf.len();
                match result {
                    Ok(Some(frame)) => prop_assert!(frame.body.len() <= max_body),
                    Ok(None) => break,
                    Err(Error::BadMagic { .. } | Error::BodyTooLarge { .. }) => break 'feed,
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
        }
        prop_assert!(consumed <= at);
        // Whatever happened, ending the stream gives a frame, a clean end or an error: no panic.
        let _ = decoder.decode_eof(&mut buf);
    }

    #[test]
    fn skip_run_steps_over_what_decode_slice_would_give(
        // Mostly HEARTBEATs of version 1, some other commands and versions.
        frames in prop::collection::vec(
            (0u8..4, 0u8..3, prop::collection::vec(any::<u8>(), 0..40)),
            0..30,
        ),
        garbage in prop::collection::vec(any::<u8>(), 0..12),
        cut in any::<prop::sample::Index>(),
        max_body in 0usize..48,
        limit in 0usize..600,
        offset in 0usize..3,
        required in prop::option::of(1u8..3),
    ) {
        let mut wire = BytesMut::new();
        wire.extend_from_slice(&vec![0; offset]);
        for (command, version, body) in &frames {
            let command = if *command < 3 { 0 } else { 1 };
            let version = if *version < 2 { 1 } else { 2 };
            Encoder::new()
                .encode(&Frame::new(command, body.clone()).with_version(version), &mut wire)
                .unwrap();
        }
        wire.extend_from_slice(&garbage);
        let wire = &wire[..offset + cut.index(wire.len() - offset + 1)];
        let decoder = || {
            let builder = Codec::builder().max_body(max_body);
            match required {
                Some(v) => builder.require_version(v).decoder(),
                None => builder.decoder(),
            }
        };

        let (mut fast, mut at) = (decoder(), offset);
        let run = fast.skip_run(wire, &mut at, Command::HEARTBEAT, limit);

        // The same through decode_slice, one frame at a time.
        let (mut slow, mut end, mut count) = (decoder(), offset, 0);
        loop {
            let mut next = end;
            match slow.decode_slice(wire, &mut next) {
                Ok(Some(h))
                    if h.command == Command::HEARTBEAT
                        && h.version == 1
                        && next - offset <= limit =>
                {
                    end = next;
                    count += 1;
                }
                _ => break,
            }
        }
        prop_assert_eq!(run, count);
        prop_assert_eq!(at, end);
        // Nothing is left half-read: decoding goes on where the run ended.
        let (mut a, mut b) = (at, end);
        let mut fresh = decoder();
        prop_assert_eq!(
            format!("{:?}", fast.decode_slice(wire, &mut a)),
            format!("{:?}", fresh.decode_slice(wire, &mut b))
        );
        prop_assert_eq!(a, b);
    }
}
