//! The shared conformance vectors through the Rust decoder and encoder.

mod common;

use bytes::BytesMut;
use common::vectors::{load, Case, Ending};
use gopro::{Error, Frame};

/// Feeds `chunks` one after another, collecting frames until the input is
/// exhausted or an error; then reports how the stream ended.
fn run(case: &Case, chunk: usize) -> (Vec<Frame>, Ending) {
    let mut decoder = case.codec().decoder().clone();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in case.input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Ending::Error(e.kind().to_string())),
            }
        }
    }
    let ending = match decoder.decode_eof(&mut buf) {
        Ok(None) => Ending::End,
        Ok(Some(frame)) => panic!("{}: frame {frame:?} only at eof", case.name),
        Err(Error::UnexpectedEof { .. }) => Ending::Partial,
        Err(e) => Ending::Error(e.kind().to_string()),
    };
    (frames, ending)
}

#[test]
fn vectors_file_covers_the_spec_examples() {
    let cases = load();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    for name in [
        "sec7_heartbeat_empty",
        "sec7_message_hello",
        "sec7_message_reply",
        "sec7_header_10mib_accepted",
        "sec7_header_10mib_plus_1_refused",
        "sec7_little_endian_length_refused",
        "sec7_bad_magic",
    ] {
        assert!(cases.iter().any(|c| c.name == name), "missing {name}");
    }
}

#[test]
fn vectors_decode_whole_and_in_every_chunk_size() {
    for case in load() {
        for chunk in [usize::MAX, 1, 2, 3, 7, 8, 9] {
            let (frames, ending) = run(&case, chunk);
            assert_eq!(frames, case.frames, "{} (chunk {chunk})", case.name);
            assert_eq!(ending, case.ending, "{} (chunk {chunk})", case.name);
        }
    }
}

#[test]
fn vectors_reencode_to_their_bytes() {
    for case in load() {
        let mut out = BytesMut::new();
        case.codec()
            .encoder()
            .encode_all(&case.frames, &mut out)
            .unwrap();
        assert_eq!(
            &out[..],
            &case.input[..out.len()],
            "{}: re-encoding differs",
            case.name
        );
        if case.ending == Ending::End {
            assert_eq!(out.len(), case.input.len(), "{}", case.name);
        }
    }
}

#[test]
fn vectors_through_the_slice_cursor() {
    // The cursor API over the whole input must see the same frames and
    // ending as the buffer API.
    for case in load() {
        let mut decoder = case.codec().decoder().clone();
        let mut at = 0;
        let mut frames = Vec::new();
        let ending = loop {
            match decoder.decode_slice(&case.input, &mut at) {
                Ok(Some(header)) => {
                    let body = case.input[at - header.length as usize..at].to_vec();
                    frames.push(Frame::new(header.command, body).with_version(header.version));
                }
                Ok(None) if at == case.input.len() && decoder.pending_header().is_none() => {
                    break Ending::End
                }
                Ok(None) => break Ending::Partial,
                Err(e) => break Ending::Error(e.kind().to_string()),
            }
        };
        assert_eq!(frames, case.frames, "{}", case.name);
        assert_eq!(ending, case.ending, "{}", case.name);
    }
}
