//! The shape of a bearer API key: `<prefix>_<32 base62 random characters><6-character
//! checksum>`. The checksum (CRC-32 of everything before it, in base62) lets secret scanners
//! — and sigvault itself — reject a mistyped or made-up key without a lookup; it is not a
//! security control (anyone can compute it), the 190 random bits are.

use zeroize::Zeroizing;

/// Base62 alphabet, in ASCII order.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters of a generated key (32 × log2(62) ≈ 190 bits).
pub(crate) const RANDOM_LEN: usize = 32;
/// Characters of the checksum (62^6 > 2^32).
pub(crate) const CHECKSUM_LEN: usize = 6;
pub(crate) const DEFAULT_PREFIX: &str = "sk";
pub(crate) const MAX_PREFIX_LEN: usize = 16;
/// Longest key accepted for checking (prefix, `_`, a generous random part, checksum).
pub(crate) const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + 128 + CHECKSUM_LEN;

/// Why a presented key is not a key sigvault could have made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("the key is not `<prefix>_<base62 characters><checksum>`")]
    Shape,
    #[error("the key's checksum does not match")]
    Checksum,
}

/// A prefix is 1–16 characters of `a-z 0-9`, starting with a letter.
pub(crate) fn valid_prefix(prefix: &str) -> bool {
    (1..=MAX_PREFIX_LEN).contains(&prefix.len())
        && prefix.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's `crc32`): the checksum's input.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// `value` as exactly [`CHECKSUM_LEN`] base62 digits, most significant first.
fn base62_fixed(mut value: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        let digit = usize::try_from(value % 62).unwrap_or(0);
        *slot = BASE62.get(digit).copied().unwrap_or(b'0');
        value /= 62;
    }
    out
}

/// A new key with `prefix` (already validated). The buffer is zeroized when dropped.
pub fn generate(prefix: &str) -> Result<Zeroizing<String>, getrandom::Error> {
    let mut out = Zeroizing::new(String::with_capacity(prefix.len() + 1 + RANDOM_LEN + CHECKSUM_LEN));
    out.push_str(prefix);
    out.push('_');
    let mut filled = 0;
    let mut raw = Zeroizing::new([0u8; 64]);
    while filled < RANDOM_LEN {
        getrandom::fill(raw.as_mut_slice())?;
        // Rejection sampling: bytes >= 248 (= 4 × 62) are dropped, so every character is
        // equally likely.
        for &b in raw.iter() {
            if filled == RANDOM_LEN {
                break;
            }
            if b < 248 {
                out.push(char::from(BASE62.get(usize::from(b % 62)).copied().unwrap_or(b'0')));
                filled += 1;
            }
        }
    }
    let checksum = base62_fixed(crc32(out.as_bytes()));
    out.extend(checksum.iter().map(|&b| char::from(b)));
    Ok(out)
}

/// Checks shape and checksum; returns the prefix. Nothing is looked up.
pub fn check(key: &str) -> Result<&str, FormatError> {
    if key.len() > MAX_KEY_LEN || !key.is_ascii() {
        return Err(FormatError::Shape);
    }
    let (prefix, rest) = key.split_once('_').ok_or(FormatError::Shape)?;
    if !valid_prefix(prefix)
        || rest.len() < RANDOM_LEN + CHECKSUM_LEN
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Err(FormatError::Shape);
    }
    let split = key.len() - CHECKSUM_LEN;
    let (body, checksum) = (
        key.get(..split).ok_or(FormatError::Shape)?,
        key.get(split..).ok_or(FormatError::Shape)?,
    );
    if base62_fixed(crc32(body.as_bytes())).as_slice() != checksum.as_bytes() {
        return Err(FormatError::Checksum);
    }
    Ok(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        // The check value of CRC-32/ISO-HDLC over "123456789".
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn generated_keys_have_the_documented_shape_and_pass_their_own_check() {
        let key = generate("sk").unwrap();
        assert_eq!(key.len(), 2 + 1 + RANDOM_LEN + CHECKSUM_LEN);
        assert!(key.starts_with("sk_"));
        assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(check(&key), Ok("sk"));
        assert_ne!(*generate("sk").unwrap(), *key, "random");
    }

    #[test]
    fn a_changed_character_anywhere_fails_the_checksum_or_the_shape() {
        let key = generate("live").unwrap();
        for i in 0..key.len() {
            let mut bytes = key.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(check(&changed).is_err(), "position {i}: {changed}");
        }
    }

    #[test]
    fn malformed_keys_are_refused_by_shape() {
        for bad in [
            "",
            "sk",
            "sk_",
            "sk_short",
            "SK_0123456789012345678901234567890123456789",
            "sk-abc",
            "_abc",
        ] {
            assert_eq!(check(bad), Err(FormatError::Shape), "{bad}");
        }
        let long = format!("sk_{}", "a".repeat(200));
        assert_eq!(check(&long), Err(FormatError::Shape));
        let key = generate("sk").unwrap();
        let non_ascii = format!("{}é", &key[..key.len() - 1]);
        assert_eq!(check(&non_ascii), Err(FormatError::Shape));
    }

    #[test]
    fn prefixes_are_lowercase_alphanumerics_starting_with_a_letter() {
        for ok in ["sk", "live", "a1", "abcdefghijklmnop"] {
            assert!(valid_prefix(ok), "{ok}");
        }
        for bad in ["", "1sk", "Sk", "s_k", "abcdefghijklmnopq", "sk-live"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
