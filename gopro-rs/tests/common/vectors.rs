//! Reads the shared conformance vectors in `tests/vectors/frames.txt` (the
//! format is described at the top of that file). The fuzz crate's
//! `gen_corpus` example includes this file too, for its seed corpora: keep
//! it free of other test helpers.

use gopro::{Codec, CodecBuilder, Frame};

/// What a case expects after its frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    End,
    Partial,
    Error(String),
}

/// One case: its name, decoder settings, input stream and what it decodes to.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub codec: CodecBuilder,
    pub input: Vec<u8>,
    pub frames: Vec<Frame>,
    pub ending: Ending,
}

impl Case {
    /// A codec with the case's settings.
    pub fn codec(&self) -> Codec {
        self.codec.build()
    }
}

fn hex_field(s: &str) -> Vec<u8> {
    if s == "-" {
        Vec::new()
    } else {
        hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
    }
}

/// Every case of the vectors file.
pub fn load() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/frames.txt");
    let text = std::fs::read_to_string(path).expect("tests/vectors/frames.txt");
    let mut cases = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() >= 4, "short line: {line}");
        let mut codec = Codec::builder();
        if fields[1] != "-" {
            for opt in fields[1].split(',') {
                let (key, value) = opt.split_once('=').expect("key=value");
                match key {
                    "max_body" => codec = codec.max_body(value.parse().unwrap()),
                    "version" => codec = codec.require_version(value.parse().unwrap()),
                    other => panic!("unknown option {other}"),
                }
            }
        }
        let mut frames = Vec::new();
        let mut ending = None;
        for token in &fields[3..] {
            assert!(ending.is_none(), "{}: tokens after the ending", fields[0]);
            if let Some(rest) = token.strip_prefix("frame:") {
                let parts: Vec<&str> = rest.split(':').collect();
                assert_eq!(parts.len(), 3, "{token}");
                frames.push(
                    Frame::new(parts[1].parse::<u8>().unwrap(), hex_field(parts[2]))
                        .with_version(parts[0].parse().unwrap()),
                );
            } else if let Some(kind) = token.strip_prefix("error:") {
                ending = Some(Ending::Error(kind.to_string()));
            } else if *token == "end" {
                ending = Some(Ending::End);
            } else if *token == "partial" {
                ending = Some(Ending::Partial);
            } else {
                panic!("unknown token {token}");
            }
        }
        cases.push(Case {
            name: fields[0].to_string(),
            codec,
            input: hex_field(fields[2]),
            frames,
            ending: ending.unwrap_or_else(|| panic!("{}: no ending", fields[0])),
        });
    }
    cases
}
