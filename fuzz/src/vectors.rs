//! Reads the conformance vectors in `tests/vectors/frames.txt` (the format
//! is described at the top of that file), for the seed corpora.

use crate::Settings;

/// One case: its name, decoder settings and input stream.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub settings: Settings,
    pub input: Vec<u8>,
}

/// Where the vectors are in the checkout.
pub fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/frames.txt")
}

fn hex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex {s:?}")))
        .collect()
}

/// Every case of the vectors file.
pub fn load() -> Vec<Case> {
    let text = std::fs::read_to_string(path()).expect("tests/vectors/frames.txt");
    let mut cases = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        assert!(fields.len() >= 4, "short line: {line}");
        let mut settings = Settings {
            max_body: gopro::DEFAULT_MAX_BODY,
            version: None,
        };
        if fields[1] != "-" {
            for opt in fields[1].split(',') {
                let (key, value) = opt.split_once('=').expect("key=value");
                match key {
                    "max_body" => settings.max_body = value.parse().expect("max_body"),
                    "version" => settings.version = Some(value.parse().expect("version")),
                    other => panic!("unknown option {other}"),
                }
            }
        }
        cases.push(Case {
            name: fields[0].to_string(),
            settings,
            input: hex(fields[2]),
        });
    }
    cases
}
