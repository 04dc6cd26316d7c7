//! The configuration: TOML text and `SIGVAULT_*` environment overrides, merged
//! (`config::merge`) and validated (`config::check`) in both start modes.
//!
//! Input: the TOML file, optionally followed by a line `%%env` and `NAME=value` lines. The
//! PEM files a `[tls]` section names are pointed at a path that does not exist before
//! validation (the target reads no file a fuzzer names; `/dev/zero` would never end).
//! Property: `dev` fills only what is missing, so whatever `serve` accepts, `dev` accepts.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use sigvault::config::{self, Mode};
use sigvault::fuzzing::config_merge;

const NOWHERE: &str = "/nonexistent/sigvault-fuzz/file.pem";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (toml, env_text) = text.split_once("\n%%env\n").unwrap_or((text, ""));
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let mut raw = match config_merge(toml, &env) {
        Ok(raw) => raw,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    if let Some(tls) = raw.tls.as_mut() {
        for file in [&mut tls.cert_file, &mut tls.key_file, &mut tls.client_ca_file] {
            if file.is_some() {
                *file = Some(PathBuf::from(NOWHERE));
            }
        }
    }
    let serve = config::check(Mode::Serve, &raw, &env);
    let dev = config::check(Mode::Dev, &raw, &env);
    if serve.is_ok() {
        assert!(dev.is_ok(), "serve accepts what dev refuses: {:?}", dev.err());
    }
});
