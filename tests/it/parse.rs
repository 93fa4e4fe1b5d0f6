//! The config and state parsers never panic, whatever the input: random text, random
//! bytes, and small random edits of valid files.

use std::path::Path;

use proptest::prelude::*;
use pushwake::config::{Env, Settings};
use pushwake::state;

const EXAMPLE: &str = include_str!("../../config.example.toml");

const STATE: &str = r#"{
  "version": 1,
  "watches": [
    {"repo": "octo/trainer", "branch": "release/v2", "last_sha": "0123456789abcdef0123456789abcdef01234567",
     "etag": "\"0123\"", "last_checked": "2026-11-28T10:00:00Z", "last_error": null}
  ]
}"#;

fn env() -> Env {
    [
        ("GITHUB_TOKEN".to_owned(), "t".to_owned()),
        ("HOME".to_owned(), "/tmp".to_owned()),
    ]
    .into_iter()
    .collect()
}

/// Applies edits (position, byte) to `text`: each replaces, inserts or deletes one byte.
fn mutate(text: &str, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    for &(pos, op, b) in edits {
        if bytes.is_empty() {
            bytes.push(b);
            continue;
        }
        let pos = pos % bytes.len();
        match op % 3 {
            0 => bytes[pos] = b,
            1 => bytes.insert(pos, b),
            _ => {
                bytes.remove(pos);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn config_parser_never_panics_on_any_text(text in "\\PC{0,300}") {
        let _ = Settings::from_toml(Path::new("c.toml"), &text, &env());
    }

    #[test]
    fn config_parser_never_panics_on_edited_configs(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
    ) {
        let bytes = mutate(EXAMPLE, &edits);
        let text = String::from_utf8_lossy(&bytes);
        let _ = Settings::from_toml(Path::new("c.toml"), &text, &env());
    }

    #[test]
    fn state_parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = state::parse(&bytes);
    }

    #[test]
    fn state_parser_never_panics_on_edited_state(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8)
    ) {
        let _ = state::parse(&mutate(STATE, &edits));
    }
}

#[test]
fn the_unedited_inputs_parse() {
    Settings::from_toml(Path::new("c.toml"), EXAMPLE, &env()).unwrap();
    state::parse(STATE.as_bytes()).unwrap();
}
