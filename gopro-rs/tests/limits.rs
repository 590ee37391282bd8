//! Every limit at, below and above its boundary, and every error's message.

use bytes::{BufMut, BytesMut};
use gopro::{Codec, Command, Decoder, Encoder, Error, Frame, Header, DEFAULT_MAX_BODY};

fn header(length: u32) -> BytesMut {
    BytesMut::from(&Header::new(Command::MESSAGE, length).to_bytes()[..])
}

#[test]
fn default_body_limit_is_10_mib() {
    assert_eq!(DEFAULT_MAX_BODY, 10_485_760);
    assert_eq!(Decoder::new().max_body(), DEFAULT_MAX_BODY);
    assert_eq!(Encoder::new().max_body(), DEFAULT_MAX_BODY);
}

#[test]
fn exactly_10_mib_decodes_and_one_more_is_refused() {
    for (length, ok) in [
        (DEFAULT_MAX_BODY - 1, true),
        (DEFAULT_MAX_BODY, true),
        (DEFAULT_MAX_BODY + 1, false),
    ] {
        let mut buf = header(length as u32);
        let mut decoder = Decoder::new();
        let result = decoder.decode(&mut buf);
        if !ok {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::BodyTooLarge { length: l, limit } if l == length as u64 && limit == DEFAULT_MAX_BODY)
            );
            continue;
        }
        assert!(result.unwrap().is_none(), "a header alone is not a frame");
        // The header alone reserved nothing for the body.
        assert!(buf.capacity() < 64, "capacity {}", buf.capacity());
        buf.put_bytes(0xAB, length);
        let frame = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame.body.len(), length);
        assert!(buf.is_empty());
    }
}

#[test]
fn configured_limit_at_below_above() {
    let codec = Codec::builder().max_body(100).build();
    for (length, ok) in [(99u32, true), (100, true), (101, false)] {
        let mut decoder = codec.decoder().clone();
        let mut buf = header(length);
        buf.put_bytes(1, length as usize);
        assert_eq!(decoder.decode(&mut buf).is_ok(), ok, "length {length}");
        let frame = Frame::new(Command::MESSAGE, vec![0u8; length as usize]);
        assert_eq!(
            codec.encoder().encode(&frame, &mut BytesMut::new()).is_ok(),
            ok
        );
    }
}

#[test]
fn set_max_body_applies_to_the_next_header() {
    let mut decoder = Codec::builder().max_body(16).decoder();
    let mut buf = header(17);
    assert!(decoder.decode(&mut buf).is_err());
    let mut decoder = Codec::builder().max_body(16).decoder();
    decoder.set_max_body(17);
    let mut buf = header(17);
    buf.put_bytes(0, 17);
    assert_eq!(decoder.decode(&mut buf).unwrap().unwrap().body.len(), 17);
}

#[test]
fn encoder_refuses_over_limit_and_writes_nothing() {
    let encoder = Encoder::with_max_body(4);
    let mut buf = BytesMut::new();
    let frames = [
        Frame::new(Command::MESSAGE, "ok"),
        Frame::new(Command::MESSAGE, "too long"),
    ];
    let err = encoder.encode_all(&frames, &mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame body of 8 bytes exceeds the limit of 4 bytes"
    );
    assert!(buf.is_empty(), "nothing written on error");
}

#[test]
fn error_messages_carry_the_numbers() {
    let mut buf = BytesMut::from(&[0x47, 0x4F, 1, 1, 1, 0, 0, 0][..]);
    let err = Decoder::new().decode(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "frame body of 16777216 bytes exceeds the limit of 10485760 bytes"
    );
    assert_eq!(err.kind(), "body_too_large");

    let mut buf = BytesMut::from(&[0x47, 0x30, 1, 0, 0, 0, 0, 0][..]);
    let err = Decoder::new().decode(&mut buf).unwrap_err();
    assert!(err.to_string().starts_with("bad magic 0x4730"), "{err}");
    assert_eq!(err.kind(), "bad_magic");

    let mut buf = BytesMut::from(&[0x47, 0x4F, 2, 0, 0, 0, 0, 0][..]);
    let err = Codec::builder()
        .require_current_version()
        .decoder()
        .decode(&mut buf)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unsupported protocol version 2: this peer speaks version 1"
    );

    let mut buf = BytesMut::from(&[0x47, 0x4F, 1, 1, 0, 0, 0, 10, b'a'][..]);
    let err = Decoder::new().decode_eof(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected end of stream: 9 of 18 bytes of a frame received"
    );
    assert_eq!(err.kind(), "unexpected_eof");

    let mut buf = BytesMut::from(&[0x47, 0x4F, 1][..]);
    let err = Decoder::new().decode_eof(&mut buf).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unexpected end of stream: 3 of 8 bytes of a frame received"
    );
}

#[test]
fn end_of_stream_between_frames_is_clean() {
    let mut buf = BytesMut::from(&Frame::heartbeat().to_bytes()[..]);
    let mut decoder = Decoder::new();
    assert!(decoder.decode_eof(&mut buf).unwrap().is_some());
    assert!(decoder.decode_eof(&mut buf).unwrap().is_none());
}

#[test]
fn body_is_split_out_without_copying() {
    let wire = Frame::new(Command::MESSAGE, vec![7u8; 1000]).to_bytes();
    let mut buf = BytesMut::from(&wire[..]);
    let start = buf.as_ptr() as usize;
    let frame = Decoder::new().decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.body.as_ptr() as usize, start + 8);
}

#[test]
fn decoder_reports_progress() {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::from(&b"GO\x01"[..]);
    assert_eq!(decoder.bytes_needed(&buf), 5);
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&[1, 0, 0, 0, 4, b'a']);
    assert!(decoder.decode(&mut buf).unwrap().is_none());
    assert_eq!(
        decoder.pending_header(),
        Some(Header::new(Command::MESSAGE, 4))
    );
    assert_eq!(decoder.bytes_needed(&buf), 3);
    assert!(decoder.is_mid_frame(&buf));
}

#[tokio::test]
async fn framed_works_over_any_async_io() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_util::codec::Framed;

    let (a, b) = tokio::io::duplex(64);
    let mut left = Framed::new(a, Codec::new());
    let mut right = Framed::new(b, Codec::new());
    let sent = vec![
        Frame::heartbeat(),
        Frame::new(Command::MESSAGE, vec![9u8; 5000]),
    ];
    let writer = tokio::spawn(async move {
        for f in sent.clone() {
            left.send(f).await.unwrap();
        }
        sent
    });
    let a = right.next().await.unwrap().unwrap();
    let b = right.next().await.unwrap().unwrap();
    assert_eq!(vec![a, b], writer.await.unwrap());
}

#[tokio::test]
async fn framed_reports_truncation_at_eof() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    let (mut a, b) = tokio::io::duplex(64);
    a.write_all(&[0x47, 0x4F, 1, 1, 0, 0, 0, 5, b'x'])
        .await
        .unwrap();
    drop(a);
    let mut read = FramedRead::new(b, Codec::new());
    let err = read.next().await.unwrap().unwrap_err();
    assert!(matches!(err, Error::UnexpectedEof { .. }), "{err}");
}
