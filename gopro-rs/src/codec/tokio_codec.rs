//! `tokio_util::codec` for those who bring their own IO.

use bytes::BytesMut;

use super::{Codec, Error, Frame};

impl tokio_util::codec::Decoder for Codec {
    type Item = Frame;
    type Error = Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        self.decoder_mut().decode(src)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        self.decoder_mut().decode_eof(src)
    }
}

impl tokio_util::codec::Encoder<Frame> for Codec {
    type Error = Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder().encode(&frame, dst)
    }
}

impl tokio_util::codec::Encoder<&Frame> for Codec {
    type Error = Error;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        self.encoder().encode(frame, dst)
    }
}
