//! The bearer API key format `<prefix>_<base62 characters><6-character checksum>`
//! (`apikeys::format::check`), which every presented key passes before any lookup.
//!
//! Input: a presented key. Properties: an accepted key has the documented shape and carries
//! the CRC-32 of everything before the checksum, in base62; and the input with that checksum
//! appended (computed here, independently) is accepted exactly when its shape is right.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigvault::apikeys::format::{FormatError, check, crc32};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// CRC-32 of `body` as six base62 digits, most significant first.
fn checksum(body: &str) -> String {
    let mut value = crc32(body.as_bytes());
    let mut digits = [b'0'; 6];
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("ASCII")
}

/// The documented shape: a prefix of 1 to 16 `a-z 0-9` starting with a letter, `_`, then at
/// least 32 + 6 base62 characters; 151 bytes at most.
fn well_shaped(key: &str) -> Option<&str> {
    let (prefix, rest) = key.split_once('_')?;
    let prefix_ok = (1..=16).contains(&prefix.len())
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = rest.len() >= 38 && rest.bytes().all(|b| b.is_ascii_alphanumeric());
    (prefix_ok && rest_ok && key.len() <= 151).then_some(prefix)
}

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else { return };
    match check(key) {
        Ok(prefix) => {
            assert_eq!(well_shaped(key), Some(prefix), "{key:?}");
            let (body, sum) = key.split_at(key.len() - 6);
            assert_eq!(sum, checksum(body), "{key:?}");
        }
        Err(FormatError::Checksum) => assert!(well_shaped(key).is_some(), "{key:?}"),
        Err(FormatError::Shape) => assert!(well_shaped(key).is_none(), "{key:?}"),
    }
    let summed = format!("{key}{}", checksum(key));
    assert_eq!(check(&summed).ok(), well_shaped(&summed), "{summed:?}");
});
