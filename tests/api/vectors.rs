//! External known-answer vectors through the whole HTTP path: Wycheproof's HMAC files and
//! RFC 4231 are imported with `POST /v1/keys/{name}/import`, then signed and verified over
//! HTTP, so sealing, unwrapping and the MAC itself are all checked against data written by
//! others.
//!
//! The files are read by the library's own test-only parsers (`src/testvectors.rs`, compiled
//! into this binary as [`testvectors`]), so both suites read them through one `vectors_dir()`.
//! Nothing here may write to the vector directory: a mismatch is a bug in sigvault.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};

// The KWP parser and some accessors serve only the library's own tests.
#[allow(dead_code, unreachable_pub)]
#[path = "../../src/testvectors.rs"]
mod testvectors;

use testvectors::{WycheproofResult, hex};

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
    let mut out = WycheproofMacFile {
        full: Vec::new(),
        truncated_groups: 0,
        truncated_tests: 0,
    };
    let mut truncated_group_ids = std::collections::BTreeSet::new();
    for case in testvectors::wycheproof(file) {
        let tag_bits = case.group_bits("tagSize");
        if tag_bits != hash_bits {
            assert!(tag_bits < hash_bits, "{file}: a tag longer than the hash");
            truncated_group_ids.insert(case.group_index);
            out.truncated_tests += 1;
            continue;
        }
        let tc_id = case.tc_id();
        let valid = match case.result() {
            WycheproofResult::Valid => true,
            WycheproofResult::Invalid => false,
            WycheproofResult::Acceptable => panic!("{file} tcId {tc_id}: result is neither valid nor invalid"),
        };
        let tag = case.bytes("tag");
        assert_eq!(tag.len() as u64 * 8, tag_bits, "{file} tcId {tc_id}: tag length");
        out.full.push(MacCase {
            id: format!("{file} tcId {tc_id}"),
            key: case.bytes("key"),
            msg: case.bytes("msg"),
            tag,
            valid,
        });
    }
    out.truncated_groups = truncated_group_ids.len();
    out
}

/// `rfc-nist/HMAC/rfc-4231-<hash>.txt`: every case is a valid MAC.
fn rfc4231(hash: &str) -> Vec<MacCase> {
    testvectors::rfc4231(hash)
        .into_iter()
        .enumerate()
        .map(|(i, case)| MacCase {
            id: format!("rfc-4231-{hash} case {i}"),
            key: case.key,
            msg: case.msg,
            tag: case.md,
            valid: true,
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
    base16ct::lower::encode_string(bytes)
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
