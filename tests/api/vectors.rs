//! External known-answer vectors through the whole HTTP path: Wycheproof's HMAC files and
//! RFC 4231 are imported with `POST /v1/keys/{name}/import`, then signed and verified over
//! HTTP, so sealing, unwrapping and the MAC itself are all checked against data written by
//! others.
//!
//! The parsers here are deliberately small copies of the ones in the library's test-only
//! `testvectors` module (not reachable from an integration test). They must never write to
//! the vector directory: a mismatch is a bug in sigvault, not in the data.

use std::collections::HashMap;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

fn vector_file(relative: &str) -> String {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/vectors")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read vector file {}: {e}", path.display()))
}

fn hex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex string: {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap_or_else(|_| panic!("bad hex: {text:?}")))
        .collect()
}

/// One MAC known answer: `key` over `msg` gives `tag` (or, when `valid` is false, `tag`
/// is a wrong tag that must not verify).
struct MacCase {
    id: String,
    key: Vec<u8>,
    msg: Vec<u8>,
    tag: Vec<u8>,
    valid: bool,
}

/// A Wycheproof HMAC file split into the cases the API can check (full-length tags) and
/// the ones it cannot (truncated tags: the API verifies only full tags).
struct WycheproofMacFile {
    full: Vec<MacCase>,
    truncated_groups: usize,
    truncated_tests: usize,
}

fn wycheproof_mac(file: &str, hash_bits: u64) -> WycheproofMacFile {
    let root: Value = serde_json::from_str(&vector_file(&format!("wycheproof/testvectors_v1/{file}")))
        .unwrap_or_else(|e| panic!("{file} is not JSON: {e}"));
    let groups = root["testGroups"].as_array().expect("testGroups");
    let mut out = WycheproofMacFile {
        full: Vec::new(),
        truncated_groups: 0,
        truncated_tests: 0,
    };
    let mut seen = 0;
    for group in groups {
        let tag_bits = group["tagSize"].as_u64().expect("tagSize");
        let tests = group["tests"].as_array().expect("tests");
        seen += tests.len() as u64;
        if tag_bits != hash_bits {
            assert!(tag_bits < hash_bits, "{file}: a tag longer than the hash");
            out.truncated_groups += 1;
            out.truncated_tests += tests.len();
            continue;
        }
        for test in tests {
            let field = |name: &str| hex(test[name].as_str().unwrap_or_else(|| panic!("{file}: no {name}")));
            let tc_id = test["tcId"].as_u64().expect("tcId");
            let valid = match test["result"].as_str() {
                Some("valid") => true,
                Some("invalid") => false,
                other => panic!("{file} tcId {tc_id}: result {other:?} is not valid/invalid"),
            };
            let tag = field("tag");
            assert_eq!(tag.len() as u64 * 8, tag_bits, "{file} tcId {tc_id}: tag length");
            out.full.push(MacCase {
                id: format!("{file} tcId {tc_id}"),
                key: field("key"),
                msg: field("msg"),
                tag,
                valid,
            });
        }
    }
    assert_eq!(
        Some(seen),
        root["numberOfTests"].as_u64(),
        "{file}: numberOfTests disagrees with the tests"
    );
    out
}

/// `rfc-nist/HMAC/rfc-4231-<hash>.txt`: blocks of `Len`, `Key`, `Msg`, `MD` with `#`
/// comments anywhere, including between the lines of a block.
fn rfc4231(hash: &str) -> Vec<MacCase> {
    let relative = format!("rfc-nist/HMAC/rfc-4231-{hash}.txt");
    let mut blocks: Vec<HashMap<String, String>> = Vec::new();
    for line in vector_file(&relative).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{relative}: stray line {line:?}"));
        let (name, value) = (name.trim(), value.trim());
        if name == "Len" {
            blocks.push(HashMap::new());
        }
        let block = blocks
            .last_mut()
            .unwrap_or_else(|| panic!("{relative}: {name} before the first Len"));
        assert!(
            block.insert(name.to_owned(), value.to_owned()).is_none(),
            "{relative}: {name} twice in a block"
        );
    }
    blocks
        .iter()
        .enumerate()
        .map(|(i, block)| {
            let field = |name: &str| {
                block
                    .get(name)
                    .unwrap_or_else(|| panic!("{relative} case {i}: no {name}"))
            };
            let msg = hex(field("Msg"));
            let bits: usize = field("Len").parse().expect("Len is a number");
            assert_eq!(msg.len() * 8, bits, "{relative} case {i}: Msg disagrees with Len");
            MacCase {
                id: format!("{relative} case {i}"),
                key: hex(field("Key")),
                msg,
                tag: hex(field("MD")),
                valid: true,
            }
        })
        .collect()
}

/// What running a set of cases through the API did, for exact-count assertions.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    keys_imported: usize,
    valid_checked: usize,
    invalid_checked: usize,
    empty_key_refused: usize,
}

/// Imports each distinct key once (many cases share a key), then for every case: a valid
/// one signs to exactly its tag and verifies; an invalid one does not verify (200,
/// `valid: false`) and is not what the key signs. An empty key must be refused with 400.
async fn run_cases(app: &TestApp, algorithm: &str, prefix: &str, cases: &[MacCase]) -> Tally {
    let mut tally = Tally::default();
    let mut names: HashMap<&[u8], String> = HashMap::new();
    for case in cases {
        if case.key.is_empty() {
            let r = app
                .post(
                    &format!("/v1/keys/{prefix}-empty/import"),
                    json!({"key_material": "", "algorithm": algorithm}),
                )
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}: empty key: {}", case.id, r.body);
            assert_eq!(r.code(), "INVALID_ARGUMENT", "{}", case.id);
            tally.empty_key_refused += 1;
            continue;
        }
        if !names.contains_key(case.key.as_slice()) {
            let name = format!("{prefix}-k{}", names.len());
            app.import_key(&name, algorithm, &case.key).await;
            names.insert(&case.key, name);
            tally.keys_imported += 1;
        }
        let name = &names[case.key.as_slice()];
        let (signature, version) = app.sign(name, &case.msg).await;
        assert_eq!(version, 1, "{}", case.id);
        let verified = app.verify(name, &case.msg, &case.tag).await;
        assert_eq!(verified.status, StatusCode::OK, "{}: {}", case.id, verified.body);
        if case.valid {
            assert_eq!(hex_of(&signature), hex_of(&case.tag), "{}: sign", case.id);
            assert_eq!(
                verified.body["valid"],
                json!(true),
                "{}: verify: {}",
                case.id,
                verified.body
            );
            assert_eq!(verified.body["key_version"], json!(1), "{}", case.id);
            tally.valid_checked += 1;
        } else {
            assert_ne!(signature, case.tag, "{}: an invalid tag is what the key signs", case.id);
            assert_eq!(
                verified.body["valid"],
                json!(false),
                "{}: verify: {}",
                case.id,
                verified.body
            );
            tally.invalid_checked += 1;
        }
    }
    tally
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Each Wycheproof HMAC file: 6 groups of 174 tests, 3 of them (87 tests) with truncated
/// tags that the API cannot check; the 87 full-length ones use 34 distinct keys, hold 33
/// valid and 54 invalid cases, and no empty key.
async fn wycheproof_file_passes_through_the_api(file: &str, hash_bits: u64, algorithm: &str) {
    let vectors = wycheproof_mac(file, hash_bits);
    assert_eq!(
        (vectors.truncated_groups, vectors.truncated_tests),
        (3, 87),
        "{file}: truncated-tag groups skipped"
    );
    assert_eq!(vectors.full.len(), 87, "{file}: full-length cases");
    let app = spawn_app().await;
    let tally = run_cases(&app, algorithm, &format!("wp-sha{hash_bits}"), &vectors.full).await;
    assert_eq!(
        tally,
        Tally {
            keys_imported: 34,
            valid_checked: 33,
            invalid_checked: 54,
            empty_key_refused: 0
        },
        "{file}"
    );
}

#[tokio::test]
async fn wycheproof_hmac_sha256_vectors_sign_and_verify_through_the_api() {
    wycheproof_file_passes_through_the_api("hmac_sha256_test.json", 256, "hmac-sha256").await;
}

#[tokio::test]
async fn wycheproof_hmac_sha384_vectors_sign_and_verify_through_the_api() {
    wycheproof_file_passes_through_the_api("hmac_sha384_test.json", 384, "hmac-sha384").await;
}

#[tokio::test]
async fn wycheproof_hmac_sha512_vectors_sign_and_verify_through_the_api() {
    wycheproof_file_passes_through_the_api("hmac_sha512_test.json", 512, "hmac-sha512").await;
}

/// Each RFC 4231 file holds test cases 1–4, 6 and 7 (case 5, the truncated tag, is
/// commented out upstream); cases 6 and 7 share their 131-byte key.
async fn rfc4231_file_passes_through_the_api(hash: &str, tag_len: usize) {
    let cases = rfc4231(hash);
    assert_eq!(cases.len(), 6, "{hash}");
    assert!(
        cases.iter().all(|c| c.tag.len() == tag_len),
        "{hash}: only full-length MDs"
    );
    let app = spawn_app().await;
    let tally = run_cases(&app, &format!("hmac-{hash}"), &format!("rfc4231-{hash}"), &cases).await;
    assert_eq!(
        tally,
        Tally {
            keys_imported: 5,
            valid_checked: 6,
            invalid_checked: 0,
            empty_key_refused: 0
        },
        "{hash}"
    );
}

#[tokio::test]
async fn rfc_4231_hmac_sha256_cases_sign_to_their_mac_through_the_api() {
    rfc4231_file_passes_through_the_api("sha256", 32).await;
}

#[tokio::test]
async fn rfc_4231_hmac_sha384_cases_sign_to_their_mac_through_the_api() {
    rfc4231_file_passes_through_the_api("sha384", 48).await;
}

#[tokio::test]
async fn rfc_4231_hmac_sha512_cases_sign_to_their_mac_through_the_api() {
    rfc4231_file_passes_through_the_api("sha512", 64).await;
}

#[tokio::test]
async fn an_empty_key_cannot_be_imported_while_a_one_byte_key_can() {
    let app = spawn_app().await;
    let tally = run_cases(
        &app,
        "hmac-sha256",
        "edge",
        &[
            MacCase {
                id: "empty key".into(),
                key: Vec::new(),
                msg: b"m".to_vec(),
                tag: Vec::new(),
                valid: true,
            },
            // HMAC-SHA256 with the one-byte key 0x00 over "m", computed independently
            // (Python's hmac module).
            MacCase {
                id: "one-byte key".into(),
                key: vec![0],
                msg: b"m".to_vec(),
                tag: hex("a64092104c76d9ef65599c33c177609ecd49857456eb28133c4daea25bea960a"),
                valid: true,
            },
        ],
    )
    .await;
    assert_eq!(
        tally,
        Tally {
            keys_imported: 1,
            valid_checked: 1,
            invalid_checked: 0,
            empty_key_refused: 1
        }
    );
}
