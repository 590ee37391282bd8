//! Writes the seed corpora, fuzz/corpus/<target>/, from the conformance
//! vectors in tests/vectors/frames.txt plus a few hand-made sessions.
//! Each seed is checked to decode back (through `arbitrary`) to the input
//! it was made from. Run from anywhere:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;

use arbitrary::{Arbitrary, Unstructured};
use gopro_fuzz::session::{Op, SessionInput, GOOD_LOGIN};
use gopro_fuzz::{CCall, CInput, DecodeInput, Settings, SplitInput};

// The tests' reader of the vectors file, so that the file has one parser.
// The seeds need only each case's settings and input, not what it expects.
#[allow(dead_code)]
#[path = "../../gopro-rs/tests/common/vectors.rs"]
mod vectors;

/// Panics unless `bytes` decodes to `input`.
fn round_trip<'a, T: Arbitrary<'a> + PartialEq + Debug>(input: &T, bytes: &'a [u8]) {
    let back = T::arbitrary_take_rest(Unstructured::new(bytes)).expect("the seed decodes");
    assert_eq!(&back, input, "the seed does not decode to its input");
}

fn write(dir: &Path, seeds: &BTreeMap<String, Vec<u8>>) {
    if dir.exists() {
        std::fs::remove_dir_all(dir).unwrap();
    }
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    println!("{}: {} seeds", dir.display(), seeds.len());
}

fn frame(command: u8, body: &[u8]) -> Op {
    Op::Frame {
        command,
        body: body.to_vec(),
    }
}

/// Hand-made sessions: (name, server, operations).
fn sessions() -> Vec<(&'static str, u8, Vec<Op>)> {
    let hello = b"Hello TCP World!";
    vec![
        (
            "open-pipeline",
            0,
            vec![
                frame(0, b""),
                frame(1, hello),
                frame(0, b"ping"),
                frame(42, b"x"),
                frame(16, b"abc"),
                frame(17, b"no"),
                frame(18, b""),
                frame(19, b"twice"),
                Op::Read,
            ],
        ),
        (
            "open-byte-by-byte",
            0,
            vec![
                frame(1, hello),
                frame(2, b"user:pw"),
                Op::Flush { piece: 1 },
                Op::Read,
            ],
        ),
        (
            "open-message-reply-over-limit",
            0,
            vec![frame(1, &[b'm'; 40]), frame(0, b"after"), Op::Read],
        ),
        (
            "open-body-over-limit",
            0,
            vec![
                frame(0, b"before"),
                Op::Big {
                    command: 1,
                    length: 49,
                    fill: b'z',
                },
                frame(0, b"never"),
                Op::Read,
            ],
        ),
        (
            "open-partial-then-rest",
            0,
            vec![
                Op::Partial {
                    command: 1,
                    body: b"split".to_vec(),
                    keep: 10,
                },
                Op::Read,
                Op::Raw(b"lit".to_vec()),
                Op::Read,
            ],
        ),
        (
            "open-bad-magic",
            0,
            vec![
                frame(0, b""),
                Op::Raw(b"GET / HTTP/1.1\r\n".to_vec()),
                Op::Read,
            ],
        ),
        (
            "open-version-2",
            0,
            vec![
                Op::Header {
                    version: 2,
                    command: 1,
                    length: 2,
                },
                Op::Raw(b"v2".to_vec()),
                Op::Read,
            ],
        ),
        (
            "auth-login-then-serve",
            1,
            vec![
                frame(1, b"too early"),
                frame(0, b"hb ok"),
                frame(16, b"early"),
                Op::Read,
                Op::Login,
                frame(1, hello),
                frame(16, b"now"),
                Op::Read,
            ],
        ),
        (
            "auth-three-bad-logins",
            1,
            vec![
                Op::BadLogin {
                    credentials: b"guest".to_vec(),
                },
                Op::BadLogin {
                    credentials: b"".to_vec(),
                },
                Op::Read,
                Op::BadLogin {
                    credentials: b"admin:admin".to_vec(),
                },
                frame(1, b"never"),
                Op::Read,
            ],
        ),
        (
            "auth-prelogin-limit",
            1,
            vec![
                Op::Big {
                    command: 2,
                    length: 25,
                    fill: b'a',
                },
                Op::Read,
            ],
        ),
        (
            "auth-limit-lifted-after-login",
            1,
            vec![Op::Login, frame(0, &[7; 60]), frame(1, &[8; 90]), Op::Read],
        ),
        (
            "auth-bad-then-good-login",
            1,
            vec![
                Op::BadLogin {
                    credentials: GOOD_LOGIN[..5].to_vec(),
                },
                Op::Login,
                Op::BadLogin {
                    credentials: b"x".to_vec(),
                },
                frame(1, b"still in"),
                Op::Read,
            ],
        ),
        (
            "big-header-before-login",
            2,
            vec![
                Op::Header {
                    version: 1,
                    command: 1,
                    length: 16 * 1024 + 1,
                },
                Op::Read,
            ],
        ),
        (
            "big-announced-body-after-login",
            2,
            vec![
                Op::Login,
                Op::Read,
                Op::Header {
                    version: 1,
                    command: 1,
                    length: 4 * 1024 * 1024,
                },
                Op::Raw(vec![0; 100]),
                Op::Flush { piece: 7 },
                Op::Read,
            ],
        ),
        (
            "big-over-limit-after-login",
            2,
            vec![
                Op::Login,
                Op::Header {
                    version: 1,
                    command: 0,
                    length: 4 * 1024 * 1024 + 1,
                },
                Op::Read,
            ],
        ),
        (
            "big-prelogin-body-at-limit",
            2,
            vec![
                Op::Big {
                    command: 0,
                    length: 16 * 1024,
                    fill: 1,
                },
                Op::Flush { piece: 255 },
                Op::Read,
            ],
        ),
    ]
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let cases = vectors::load();

    let mut decode = BTreeMap::new();
    let mut split = BTreeMap::new();
    let mut c = BTreeMap::new();
    let mut session = BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        let settings = Settings::of(case.codec().decoder())
            .to_byte()
            .unwrap_or_else(|| panic!("{}: settings not in LIMITS", case.name));
        let data = &case.input[..];

        let input = DecodeInput { settings, data };
        let bytes = input.to_bytes();
        round_trip(&input, &bytes);
        decode.insert(case.name.clone(), bytes);

        if data.len() >= 2 {
            let n = data.len() as u16;
            let input = SplitInput {
                settings,
                steps: vec![1, 7, 8, 9, n / 2, n - 1],
                data,
            };
            let bytes = input.to_bytes();
            round_trip(&input, &bytes);
            split.insert(case.name.clone(), bytes);
        }

        let input = CInput {
            settings,
            steps: vec![
                CCall::Feed(1),
                CCall::Next,
                CCall::Feed(8),
                CCall::NextMany(2),
                CCall::Finish,
                CCall::Feed(u16::MAX),
                CCall::NextMany(if i % 2 == 0 { 1 } else { 8 }),
                CCall::Next,
                CCall::Finish,
            ],
            data,
        };
        let bytes = input.to_bytes();
        round_trip(&input, &bytes);
        c.insert(case.name.clone(), bytes);

        // The vector's stream sent to a server, after a login on every other.
        let server = (i % 3) as u8;
        let mut ops = Vec::new();
        if i % 2 == 0 {
            ops.push(Op::Login);
        }
        ops.extend([Op::Raw(data.to_vec()), Op::Read]);
        let input = SessionInput { server, ops };
        let bytes = input.to_bytes();
        round_trip(&input, &bytes);
        session.insert(format!("vector-{}", case.name), bytes);
    }
    for (name, server, ops) in sessions() {
        let input = SessionInput { server, ops };
        let bytes = input.to_bytes();
        round_trip(&input, &bytes);
        session.insert(name.to_string(), bytes);
    }

    write(&root.join("decode"), &decode);
    write(&root.join("decode_split"), &split);
    write(&root.join("c_decoder"), &c);
    write(&root.join("session"), &session);
}
