//! The same stream cut into pieces at arbitrary points (SPEC §1: any
//! fragmentation) decodes to the same frames and the same ending as in one
//! piece: through `decode` on a growing buffer, and through `decode_slice`
//! the way the server uses it (a cursor over the buffer, the used bytes
//! dropped once per read).
#![no_main]

use bytes::BytesMut;
use gopro::{Decoder, Frame, HEADER_LEN};
use gopro_fuzz::{assert_same_error, expected, Ending, Outcome, Settings, SplitInput};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: SplitInput<'_>| {
    let settings = Settings::from_byte(input.settings);
    let want = expected(settings, input.data);
    let whole = one_piece(settings, input.data);
    let pieces = input.pieces();
    let split = by_decode(settings, &pieces, &want);
    let cursor = by_cursor(settings, &pieces, &want);
    for (got, how) in [(&split, "decode"), (&cursor, "decode_slice")] {
        assert_eq!(got.0, whole.0, "{how}: frames differ from one piece");
        match (&got.1, &whole.1) {
            (None, None) => {}
            (Some(a), Some(b)) => assert_same_error(a, b),
            (a, b) => panic!("{how}: ending {a:?}, in one piece {b:?}"),
        }
    }
    let frames: Vec<Frame> = want.frames.iter().map(|f| f.frame.clone()).collect();
    assert_eq!(whole.0, frames);
});

type Decoded = (Vec<Frame>, Option<gopro::Error>);

fn one_piece(settings: Settings, data: &[u8]) -> Decoded {
    let mut decoder = settings.builder().decoder();
    let mut buf = BytesMut::from(data);
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// Checks the decoder's state between pieces: `fed` bytes of the stream
/// arrived, of which `buffered` are still in the buffer.
fn check_waiting(decoder: &Decoder, buffered: &[u8], fed: usize, want: &Outcome, taken: usize) {
    // The frame in progress starts where the frames taken so far end.
    let start = want.frames[..taken].last().map_or(0, |f| f.end);
    let have = fed - start;
    match decoder.pending_header() {
        None => {
            assert!(have < HEADER_LEN, "a whole header is left unread");
            assert_eq!(buffered.len(), have);
            assert_eq!(decoder.bytes_needed(buffered), HEADER_LEN - have);
        }
        Some(h) => {
            assert!(have >= HEADER_LEN && have < h.frame_len());
            assert_eq!(buffered.len(), have - HEADER_LEN);
            assert_eq!(decoder.bytes_needed(buffered), h.frame_len() - have);
            if let Some(f) = want.frames.get(taken) {
                assert_eq!(h, f.frame.header().unwrap());
            } else if let Ending::Partial { header, .. } = want.ending {
                assert_eq!(Some(h), header);
            } else {
                panic!("waiting for a body, want {:?}", want.ending);
            }
        }
    }
}

/// `decode` on a buffer that grows piece by piece.
fn by_decode(settings: Settings, pieces: &[&[u8]], want: &Outcome) -> Decoded {
    let mut decoder = settings.builder().decoder();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    // A frame comes out as soon as its last byte is in.
                    assert!(want.frames[frames.len()].end <= fed);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        if let Some(next) = want.frames.get(frames.len()) {
            assert!(next.end > fed, "a whole frame was not decoded");
        }
        check_waiting(&decoder, &buf, fed, want, frames.len());
    }
    (frames, None)
}

/// `decode_slice` through a cursor, the used bytes dropped after each piece.
fn by_cursor(settings: Settings, pieces: &[&[u8]], want: &Outcome) -> Decoded {
    let mut decoder = settings.builder().decoder();
    let mut buf: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        fed += piece.len();
        let mut at = 0;
        let error = loop {
            match decoder.decode_slice(&buf, &mut at) {
                Ok(Some(h)) => {
                    assert!(at <= buf.len());
                    let body = buf[at - h.length as usize..at].to_vec();
                    frames.push(Frame::new(h.command, body).with_version(h.version));
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        assert!(at <= buf.len());
        if error.is_some() {
            return (frames, error);
        }
        buf.drain(..at);
        check_waiting(&decoder, &buf, fed, want, frames.len());
    }
    (frames, None)
}
