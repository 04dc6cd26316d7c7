//! Readers for the external known-answer vectors in `tests/vectors` (test builds only).
//!
//! The library's unit tests use it as `crate::testvectors`; the black-box suite compiles this
//! same file into `tests/api`, so both read the vectors through one [`vectors_dir`].
//!
//! Owns the path to the vector directory and the parsers for its three formats: Project
//! Wycheproof JSON, NIST CAVS key-wrap response files (`KWP_AE_256.txt`, `KWP_AD_256.txt`)
//! and the RFC 4231 HMAC files. It checks only what it parses — a block with a missing
//! field, a length that disagrees with its header or a bad hex digit panics — and decides
//! nothing about what a vector means for sigvault: the suites that use it do.
//!
//! It must never write to the vector directory: the files are copied verbatim from their
//! sources, and a mismatch is a bug in our code, not in the data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// `tests/vectors`, relative to the crate root rather than the working directory.
pub(crate) fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors"))
}

fn read_vector_file(relative: &str) -> String {
    let path = vectors_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()))
}

/// Decodes a hex string (either case, no separators). Panics on an odd length or a
/// non-hex digit: a vector that does not decode is a parser bug, never a test input.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex string: {s:?}");
    base16ct::mixed::decode_vec(s).unwrap_or_else(|e| panic!("not a hex digit in {s:?}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Project Wycheproof
// ---------------------------------------------------------------------------------------

/// What a Wycheproof test expects of an implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WycheproofResult {
    Valid,
    Invalid,
    /// Legal but weak or unusual input: an implementation may accept or reject it.
    Acceptable,
}

/// One test of a Wycheproof file together with the parameters of its group.
pub(crate) struct WycheproofCase {
    /// Which group of the file the test sits in (0-based, file order).
    pub group_index: usize,
    /// The group object without its `tests` array (`keySize`, `ivSize`, `tagSize`, …).
    pub group: Value,
    pub test: Value,
}

impl WycheproofCase {
    pub(crate) fn tc_id(&self) -> u64 {
        self.test["tcId"]
            .as_u64()
            .expect("every Wycheproof test has a numeric tcId")
    }

    /// A numeric group parameter such as `keySize`, `ivSize` or `tagSize` (in bits).
    pub(crate) fn group_bits(&self, name: &str) -> u64 {
        self.group[name]
            .as_u64()
            .unwrap_or_else(|| panic!("group of tcId {} has no numeric {name}", self.tc_id()))
    }

    /// A hex field of the test (`key`, `iv`, `aad`, `msg`, `ct`, `tag`, …), decoded.
    pub(crate) fn bytes(&self, name: &str) -> Vec<u8> {
        let text = self.test[name]
            .as_str()
            .unwrap_or_else(|| panic!("tcId {} has no string field {name}", self.tc_id()));
        hex(text)
    }

    pub(crate) fn result(&self) -> WycheproofResult {
        match self.test["result"].as_str() {
            Some("valid") => WycheproofResult::Valid,
            Some("invalid") => WycheproofResult::Invalid,
            Some("acceptable") => WycheproofResult::Acceptable,
            other => panic!("tcId {} has an unknown result {other:?}", self.tc_id()),
        }
    }

    pub(crate) fn flags(&self) -> Vec<&str> {
        self.test["flags"]
            .as_array()
            .map(|flags| flags.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// Every test of `wycheproof/testvectors_v1/<file>`, in file order. Checks that the file
/// holds as many tests as its `numberOfTests` announces, so a truncated copy cannot pass
/// by running fewer cases.
pub(crate) fn wycheproof(file: &str) -> Vec<WycheproofCase> {
    let text = read_vector_file(&format!("wycheproof/testvectors_v1/{file}"));
    let mut root: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    let announced = root["numberOfTests"].as_u64().expect("numberOfTests");
    let Some(Value::Array(groups)) = root.get_mut("testGroups").map(Value::take) else {
        panic!("{file} has no testGroups array");
    };
    let mut cases = Vec::new();
    for (group_index, mut group) in groups.into_iter().enumerate() {
        let Some(Value::Array(tests)) = group.get_mut("tests").map(Value::take) else {
            panic!("{file}: a test group has no tests array");
        };
        if let Some(fields) = group.as_object_mut() {
            fields.remove("tests");
        }
        for test in tests {
            cases.push(WycheproofCase {
                group_index,
                group: group.clone(),
                test,
            });
        }
    }
    assert_eq!(
        cases.len() as u64,
        announced,
        "{file}: numberOfTests disagrees with the tests"
    );
    cases
}

// ---------------------------------------------------------------------------------------
// `name = value` block files (NIST CAVS, RFC 4231 via pyca)
// ---------------------------------------------------------------------------------------

/// One block of a `name = value` file, with the `[...]` section header it sits under.
struct Block {
    section: Option<String>,
    fields: BTreeMap<String, String>,
    /// Bare words on their own line, such as CAVS's `FAIL`.
    words: Vec<String>,
}

impl Block {
    fn field(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .unwrap_or_else(|| panic!("block {:?} has no {name}", self.fields))
    }

    fn optional_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Splits `text` into blocks, each starting at a `first_field = …` line. Blank lines and
/// `#` comments are ignored wherever they fall (RFC 4231 files put comments between the
/// lines of a block); CRLF line ends are accepted (the CAVS files use them).
fn blocks(text: &str, first_field: &str) -> Vec<Block> {
    let mut section = None;
    let mut out: Vec<Block> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(header.trim().to_owned());
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            let (name, value) = (name.trim(), value.trim());
            if name == first_field {
                out.push(Block {
                    section: section.clone(),
                    fields: BTreeMap::new(),
                    words: Vec::new(),
                });
            }
            let block = out
                .last_mut()
                .unwrap_or_else(|| panic!("{name} appears before the first {first_field}"));
            let previous = block.fields.insert(name.to_owned(), value.to_owned());
            assert!(previous.is_none(), "{name} appears twice in one block");
        } else {
            let block = out
                .last_mut()
                .unwrap_or_else(|| panic!("{line:?} appears before the first {first_field}"));
            block.words.push(line.to_owned());
        }
    }
    out
}

/// One NIST SP 800-38F key-wrap-with-padding (KWP) case.
pub(crate) struct KwpCase {
    /// `COUNT`, unique within a plaintext length only.
    pub count: u32,
    /// From the `[PLAINTEXT LENGTH = n]` header the case sits under.
    pub(crate) plaintext_bits: usize,
    pub k: Vec<u8>,
    /// `None` for a `FAIL` case (KW-AD files only): `c` must not unwrap.
    pub p: Option<Vec<u8>>,
    pub c: Vec<u8>,
}

/// Parses a CAVS KWP response file such as `rfc-nist/keywrap/KWP_AD_256.txt`.
pub(crate) fn nist_kwp(relative: &str) -> Vec<KwpCase> {
    blocks(&read_vector_file(relative), "COUNT")
        .into_iter()
        .map(|block| {
            let plaintext_bits = block
                .section
                .as_deref()
                .and_then(|s| s.strip_prefix("PLAINTEXT LENGTH"))
                .and_then(|s| s.trim().strip_prefix('='))
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or_else(|| panic!("{relative}: a case outside [PLAINTEXT LENGTH = n]"));
            let fail = match block.words.as_slice() {
                [] => false,
                [word] if word == "FAIL" => true,
                other => panic!("{relative}: unexpected lines {other:?}"),
            };
            let p = block.optional_field("P").map(hex);
            assert_eq!(p.is_none(), fail, "{relative}: a case needs exactly one of P and FAIL");
            if let Some(p) = &p {
                assert_eq!(p.len() * 8, plaintext_bits, "{relative}: P disagrees with its header");
            }
            KwpCase {
                count: block.field("COUNT").parse().expect("COUNT is a number"),
                plaintext_bits,
                k: hex(block.field("K")),
                p,
                c: hex(block.field("C")),
            }
        })
        .collect()
}

/// One RFC 4231 HMAC case.
pub(crate) struct HmacCase {
    pub key: Vec<u8>,
    pub msg: Vec<u8>,
    /// The full-length MAC (the RFC's truncation case is not in these files).
    pub md: Vec<u8>,
}

/// Parses `rfc-nist/HMAC/rfc-4231-<hash>.txt`, `hash` being `sha224` … `sha512`.
pub(crate) fn rfc4231(hash: &str) -> Vec<HmacCase> {
    let relative = format!("rfc-nist/HMAC/rfc-4231-{hash}.txt");
    blocks(&read_vector_file(&relative), "Len")
        .into_iter()
        .map(|block| {
            assert!(block.words.is_empty(), "{relative}: unexpected lines {:?}", block.words);
            // `Len` is the message length in bits.
            let msg_bits: usize = block.field("Len").parse().expect("Len is a number");
            let msg = hex(block.field("Msg"));
            assert_eq!(msg.len() * 8, msg_bits, "{relative}: Msg disagrees with Len");
            HmacCase {
                key: hex(block.field("Key")),
                msg,
                md: hex(block.field("MD")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_both_cases_and_the_empty_string() {
        assert_eq!(hex("00aBfF10"), vec![0x00, 0xab, 0xff, 0x10]);
        assert!(hex("").is_empty());
    }

    #[test]
    #[should_panic(expected = "odd-length")]
    fn hex_refuses_an_odd_number_of_digits() {
        hex("abc");
    }

    #[test]
    #[should_panic(expected = "not a hex digit")]
    fn hex_refuses_a_non_hex_digit() {
        hex("0g");
    }

    #[test]
    fn block_parsing_skips_comments_between_lines_and_keeps_bare_words() {
        let text = "# header\r\n[L = 8]\r\n\r\nN = 0\r\n# note\r\nA = 01\r\nFAIL\r\n\r\nN = 1\r\nA = 02\r\n";
        let parsed = blocks(text, "N");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].section.as_deref(), Some("L = 8"));
        assert_eq!(parsed[0].field("A"), "01");
        assert_eq!(parsed[0].words, vec!["FAIL".to_owned()]);
        assert!(parsed[1].words.is_empty());
    }

    #[test]
    fn the_nist_kwp_files_hold_five_lengths_of_one_hundred_cases() {
        for file in ["KWP_AE_256.txt", "KWP_AD_256.txt"] {
            let cases = nist_kwp(&format!("rfc-nist/keywrap/{file}"));
            assert_eq!(cases.len(), 500, "{file}");
            for bits in [8, 64, 72, 248, 4096] {
                let n = cases.iter().filter(|c| c.plaintext_bits == bits).count();
                assert_eq!(n, 100, "{file}, {bits}-bit plaintexts");
            }
            assert!(cases.iter().all(|c| c.k.len() == 32), "{file}: AES-256 keys only");
        }
        let ae = nist_kwp("rfc-nist/keywrap/KWP_AE_256.txt");
        assert!(ae.iter().all(|c| c.p.is_some()), "KW-AE cases never FAIL");
        let ad = nist_kwp("rfc-nist/keywrap/KWP_AD_256.txt");
        // The CAVS Readme: "Should FAIL 20 times per 100 trials".
        assert_eq!(ad.iter().filter(|c| c.p.is_none()).count(), 100);
        assert_eq!(ad.last().map(|c| c.count), Some(99));
    }

    #[test]
    fn the_rfc_4231_files_hold_six_cases_each() {
        for (hash, md_len) in [("sha224", 28), ("sha256", 32), ("sha384", 48), ("sha512", 64)] {
            let cases = rfc4231(hash);
            assert_eq!(cases.len(), 6, "{hash}");
            assert!(cases.iter().all(|c| c.md.len() == md_len), "{hash}");
        }
        let first = &rfc4231("sha256")[0];
        assert_eq!(first.key, vec![0x0b; 20]);
        assert_eq!(first.msg, b"Hi There");
    }

    #[test]
    fn the_wycheproof_aes_gcm_file_yields_every_test_it_announces() {
        let cases = wycheproof("aes_gcm_test.json");
        assert_eq!(cases.len(), 316);
        assert!(cases.iter().all(|c| c.group.get("tests").is_none()));
        assert_eq!(cases[0].tc_id(), 1);
        assert_eq!(cases[0].group_bits("keySize"), 128);
        assert_eq!(cases[0].result(), WycheproofResult::Valid);
        assert_eq!(cases[0].flags(), vec!["Ktv"]);
        // Groups are numbered in file order, each case carrying its own group's parameters.
        assert_eq!(cases[0].group_index, 0);
        assert!(cases.windows(2).all(|w| w[0].group_index <= w[1].group_index));
        let groups = cases.last().map(|c| c.group_index + 1).unwrap_or(0);
        let text = std::fs::read_to_string(vectors_dir().join("wycheproof/testvectors_v1/aes_gcm_test.json")).unwrap();
        let root: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(Some(groups), root["testGroups"].as_array().map(Vec::len));
    }
}
