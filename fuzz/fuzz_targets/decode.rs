//! Any bytes through the Rust decoder, in one piece, by every entry point
//! (`decode`, `decode_in_place`, `decode_slice`, `decode_eof`): each yields
//! the frames, "need more" or the error that SPEC §1–2 say
//! ([`gopro_fuzz::expected`]), never consumes more than it was given, and
//! every decoded frame re-encodes to exactly its bytes in the input.
#![no_main]

use bytes::{Buf, BytesMut};
use gopro::{Decoder, Encoder, Error, HEADER_LEN};
use gopro_fuzz::{assert_same_error, expected, DecodeInput, Ending, Outcome, Settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: DecodeInput<'_>| {
    let settings = Settings::from_byte(input.settings);
    let data = input.data;
    let want = expected(settings, data);
    with_decode(settings, data, &want);
    with_decode_in_place(settings, data, &want);
    with_decode_slice(settings, data, &want);
    with_decode_eof(settings, data, &want);
});

/// `Decoder::decode` on one buffer holding the whole input.
fn with_decode(settings: Settings, data: &[u8], want: &Outcome) {
    let mut decoder = settings.builder().decoder();
    let encoder = Encoder::with_max_body(settings.max_body);
    let mut buf = BytesMut::from(data);
    let mut frames = 0;
    loop {
        let before = data.len() - buf.len();
        let result = decoder.decode(&mut buf);
        let used = data.len() - buf.len();
        assert!(used <= data.len() && used >= before);
        match result {
            Ok(Some(frame)) => {
                let w = want.frames.get(frames).expect("an extra frame");
                assert_eq!((before, used), (w.start, w.end));
                assert_eq!(frame, w.frame);
                // Re-encoding gives back exactly the frame's input bytes.
                let mut out = BytesMut::new();
                encoder.encode(&frame, &mut out).expect("within the limit");
                assert_eq!(&out[..], &data[before..used]);
                assert_eq!(&frame.to_bytes()[..], &data[before..used]);
                frames += 1;
            }
            Ok(None) => {
                assert_eq!(frames, want.frames.len(), "frames missing");
                check_need_more(&decoder, &buf, data, want);
                // Asking again changes nothing.
                assert!(decoder.decode(&mut buf).unwrap().is_none());
                assert_eq!(data.len() - buf.len(), used);
                return;
            }
            Err(e) => {
                let start = assert_error_ending(&e, frames, want);
                // The refused header is not consumed.
                assert_eq!(used, start);
                assert_eq!(used, before);
                return;
            }
        }
    }
}

/// What the decoder says about the frame it waits for.
fn check_need_more(decoder: &gopro::Decoder, buf: &[u8], data: &[u8], want: &Outcome) {
    match want.ending {
        Ending::End => {
            assert!(buf.is_empty());
            assert!(!decoder.is_mid_frame(buf));
            assert_eq!(decoder.pending_header(), None);
            assert_eq!(decoder.bytes_needed(buf), HEADER_LEN);
        }
        Ending::Partial { start, header } => {
            let have = data.len() - start;
            assert!(decoder.is_mid_frame(buf));
            assert_eq!(decoder.pending_header(), header);
            match header {
                None => {
                    assert_eq!(buf.len(), have);
                    assert_eq!(decoder.bytes_needed(buf), HEADER_LEN - have);
                }
                Some(h) => {
                    assert_eq!(buf.len(), have - HEADER_LEN);
                    assert_eq!(decoder.bytes_needed(buf), h.frame_len() - have);
                }
            }
        }
        Ending::Error { .. } => panic!("need more, want {:?}", want.ending),
    }
}

/// `Decoder::decode_in_place`: the body stays at the front of the buffer.
fn with_decode_in_place(settings: Settings, data: &[u8], want: &Outcome) {
    let run = run(
        settings,
        data,
        Decoder::decode_in_place,
        |header, frames, buf| {
            let w = &want.frames[frames];
            let len = header.length as usize;
            assert_eq!(data.len() - buf.len(), w.end - len);
            assert_eq!(
                (header.version, header.command),
                (w.frame.version, w.frame.command)
            );
            assert_eq!(&buf[..len], &w.frame.body[..]);
            buf.advance(len);
        },
    );
    match run.error {
        None => {
            assert_eq!(run.frames, want.frames.len());
            assert!(!matches!(want.ending, Ending::Error { .. }));
        }
        Some(e) => {
            let start = assert_error_ending(&e, run.frames, want);
            assert_eq!(data.len() - run.buf.len(), start);
        }
    }
}

/// `Decoder::decode_slice`: the cursor ends where `decode` stops consuming.
fn with_decode_slice(settings: Settings, data: &[u8], want: &Outcome) {
    let mut decoder = settings.builder().decoder();
    let mut at = 0;
    let mut frames = 0;
    loop {
        let before = at;
        match decoder.decode_slice(data, &mut at) {
            Ok(Some(header)) => {
                let w = &want.frames[frames];
                assert_eq!((before, at), (w.start, w.end));
                let len = header.length as usize;
                assert_eq!(&data[at - len..at], &w.frame.body[..]);
                assert_eq!(header, w.frame.header().unwrap());
                frames += 1;
            }
            Ok(None) => {
                assert_eq!(frames, want.frames.len());
                let used = match want.ending {
                    Ending::End => data.len(),
                    Ending::Partial { start, header } => start + header.map_or(0, |_| HEADER_LEN),
                    Ending::Error { .. } => panic!("need more, want an error"),
                };
                assert_eq!(at, used);
                // Again from the same cursor: still nothing, cursor unmoved.
                assert!(decoder.decode_slice(data, &mut at).unwrap().is_none());
                assert_eq!(at, used);
                return;
            }
            Err(e) => {
                let start = assert_error_ending(&e, frames, want);
                assert_eq!((before, at), (start, start));
                return;
            }
        }
    }
}

/// `Decoder::decode_eof`: the same frames, then a clean end or
/// `UnexpectedEof` with the right counts, never a short frame.
fn with_decode_eof(settings: Settings, data: &[u8], want: &Outcome) {
    let run = run(settings, data, Decoder::decode_eof, |frame, frames, _| {
        assert_eq!(frame, want.frames[frames].frame);
    });
    assert_eq!(run.frames, want.frames.len());
    let Some(e) = run.error else {
        assert!(matches!(want.ending, Ending::End), "{:?}", want.ending);
        assert!(run.buf.is_empty());
        return;
    };
    match &want.ending {
        Ending::End => panic!("unexpected error {e}"),
        Ending::Partial { start, header } => {
            let want_error = Error::UnexpectedEof {
                received: (data.len() - start) as u64,
                expected: header.map_or(HEADER_LEN, |h| h.frame_len()) as u64,
            };
            assert_same_error(&e, &want_error);
        }
        Ending::Error { error, .. } => assert_same_error(&e, error),
    }
}

/// Where a [`run`] stopped.
struct Run {
    /// What was left in the buffer.
    buf: BytesMut,
    /// How many items came before the stop.
    frames: usize,
    /// Why it stopped: `None` for "need more".
    error: Option<Error>,
}

/// Calls `next` on a decoder with `settings` over one buffer holding all of
/// `data` until it needs more or fails; `check` sees each item it yields,
/// with the item's index and the buffer after it.
fn run<T>(
    settings: Settings,
    data: &[u8],
    mut next: impl FnMut(&mut Decoder, &mut BytesMut) -> Result<Option<T>, Error>,
    mut check: impl FnMut(T, usize, &mut BytesMut),
) -> Run {
    let mut decoder = settings.builder().decoder();
    let mut buf = BytesMut::from(data);
    let mut frames = 0;
    let error = loop {
        match next(&mut decoder, &mut buf) {
            Ok(Some(item)) => {
                check(item, frames, &mut buf);
                frames += 1;
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    Run { buf, frames, error }
}

/// The decoder stopped with `e` after `frames` frames: that must be the
/// input's error, after all its frames. Returns where the refused frame
/// starts.
fn assert_error_ending(e: &Error, frames: usize, want: &Outcome) -> usize {
    assert_eq!(frames, want.frames.len(), "frames missing");
    let Ending::Error { start, error } = &want.ending else {
        panic!("unexpected error {e}, want {:?}", want.ending);
    };
    assert_same_error(e, error);
    *start
}
