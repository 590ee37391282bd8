//! The codec with no allocator: `Decoder::decode_slice` reads frames where
//! they lie in the receive buffer and `Encoder::encode_slice` writes the
//! replies into a fixed transmit buffer (SPEC §3: HEARTBEAT echoed,
//! MESSAGE answered with "Server says: " + body, anything else an ERROR).
#![no_std]
#![no_main]

use gopro::{Codec, Command, Error, VERSION};
use gopro_no_std_example::{receive, send, MAX_BODY, RX_LEN};

const PREFIX: &[u8] = b"Server says: ";

#[no_mangle]
pub extern "C" fn _start() -> ! {
    let codec = Codec::builder().max_body(MAX_BODY).build();
    let mut decoder = codec.decoder().clone();
    let encoder = *codec.encoder();
    let mut rx = [0u8; RX_LEN];
    let mut tx = [0u8; RX_LEN + PREFIX.len()];
    let mut filled = 0;
    loop {
        filled += receive(&mut rx[filled..]);
        let mut at = 0;
        let result: Result<(), Error> = loop {
            match decoder.decode_slice(&rx[..filled], &mut at) {
                Ok(Some(header)) => {
                    let body = &rx[at - header.length as usize..at];
                    let reply = match header.command {
                        Command::HEARTBEAT => {
                            encoder.encode_slice(VERSION, Command::HEARTBEAT, &[body], &mut tx)
                        }
                        Command::MESSAGE => encoder.encode_slice(
                            VERSION,
                            Command::MESSAGE,
                            &[PREFIX, body],
                            &mut tx,
                        ),
                        _ => encoder.encode_slice(
                            VERSION,
                            Command::ERROR,
                            &[b"unknown command"],
                            &mut tx,
                        ),
                    };
                    match reply {
                        Ok(n) => send(&tx[..n]),
                        Err(e) => break Err(e),
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            // The stream cannot be trusted: say why, start over (SPEC §2).
            if let Ok(n) =
                encoder.encode_slice(VERSION, Command::ERROR, &[e.kind().as_bytes()], &mut tx)
            {
                send(&tx[..n]);
            }
            decoder = codec.decoder().clone();
            filled = 0;
            continue;
        }
        // Keep the unused tail (a partial header or body) at the front.
        rx.copy_within(at..filled, 0);
        filled -= at;
    }
}
