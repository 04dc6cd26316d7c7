//! Known-answer tests of the envelope cipher against Project Wycheproof's AES-GCM vectors.
//!
//! Runs `wycheproof/testvectors_v1/aes_gcm_test.json` through the primitives under
//! [`crate::envelope::seal`] and [`crate::envelope::open`]: [`seal_with_nonce`] and
//! [`open_with_nonce`]. Only the parameters sigvault uses can be expressed there — a
//! 256-bit [`Dek`], a 96-bit nonce (`[u8; 12]`) and a 128-bit tag — so every other group is
//! skipped and counted, never silently dropped.
//!
//! `acceptable` cases (Wycheproof: legal but weak input that an implementation may accept
//! or reject) are allowed either outcome, but if one opens it must open to its `msg`, and
//! sealing its `msg` must give its `ct || tag`: AES-GCM is deterministic given key, nonce
//! and AAD, so accepting a ciphertext we would not ourselves produce is never fine. The
//! pinned file has none in the groups we run; the count is asserted so a new one is seen.

use crate::envelope::{Dek, EnvelopeError, NONCE_LEN, TAG_LEN, open_with_nonce, seal_with_nonce};
use crate::testvectors::{WycheproofCase, WycheproofResult, wycheproof};

/// How many cases of each kind ran or were skipped.
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    valid: usize,
    invalid: usize,
    acceptable_opened: usize,
    acceptable_rejected: usize,
    /// AES-128 and AES-192: [`Dek::from_slice`] takes 32-byte keys only.
    skipped_key_size: usize,
    /// Nonces other than 96 bits (and, were there any, tags other than 128 bits): the
    /// nonce is a `[u8; 12]` and the tag is always 16 bytes.
    skipped_iv_or_tag_size: usize,
}

fn run_supported(case: &WycheproofCase, counts: &mut Counts) {
    let id = case.tc_id();
    let dek = Dek::from_slice(&case.bytes("key")).unwrap();
    let nonce: [u8; NONCE_LEN] = case.bytes("iv").try_into().unwrap();
    let aad = case.bytes("aad");
    let msg = case.bytes("msg");
    let mut ct_tag = case.bytes("ct");
    let tag = case.bytes("tag");
    assert_eq!(tag.len(), TAG_LEN, "tcId {id}");
    ct_tag.extend_from_slice(&tag);

    let opened = open_with_nonce(&dek, &nonce, &aad, &ct_tag);
    match case.result() {
        WycheproofResult::Valid => {
            let sealed = seal_with_nonce(&dek, &nonce, &aad, &msg).unwrap();
            assert_eq!(sealed, ct_tag, "tcId {id}: seal must give ct || tag");
            let opened = opened.unwrap_or_else(|e| panic!("tcId {id}: a valid case must open: {e}"));
            assert_eq!(opened.expose_secret(), msg, "tcId {id}: open must give msg");
            counts.valid += 1;
        }
        WycheproofResult::Invalid => {
            assert_eq!(
                opened.err(),
                Some(EnvelopeError::Open),
                "tcId {id} ({:?}) must not open",
                case.flags()
            );
            counts.invalid += 1;
        }
        WycheproofResult::Acceptable => match opened {
            Ok(plain) => {
                assert_eq!(plain.expose_secret(), msg, "tcId {id}: opened to the wrong bytes");
                let sealed = seal_with_nonce(&dek, &nonce, &aad, &msg).unwrap();
                assert_eq!(sealed, ct_tag, "tcId {id}: opened a ciphertext seal does not make");
                counts.acceptable_opened += 1;
            }
            Err(_) => counts.acceptable_rejected += 1,
        },
    }
}

#[test]
fn wycheproof_aes_256_gcm_vectors_with_96_bit_nonces_seal_and_open_as_expected() {
    let cases = wycheproof("aes_gcm_test.json");
    let mut counts = Counts::default();
    for case in &cases {
        if case.group_bits("keySize") != 256 {
            // Proves the skip: the envelope cannot even be keyed with this key.
            assert_eq!(
                Dek::from_slice(&case.bytes("key")).err(),
                Some(EnvelopeError::DekLength)
            );
            counts.skipped_key_size += 1;
        } else if case.group_bits("ivSize") != 96 || case.group_bits("tagSize") != 128 {
            counts.skipped_iv_or_tag_size += 1;
        } else {
            run_supported(case, &mut counts);
        }
    }
    println!("wycheproof aes_gcm_test.json: {counts:?}");

    let run = counts.valid + counts.invalid + counts.acceptable_opened + counts.acceptable_rejected;
    let skipped = counts.skipped_key_size + counts.skipped_iv_or_tag_size;
    assert!(run > 0, "no case matched sigvault's parameters");
    assert_eq!(run + skipped, cases.len());
    // Pinned to the vendored file (C2SP/wycheproof dac1dd47): 316 tests, of which AES-256
    // with a 96-bit IV and a 128-bit tag are 39 valid and 27 modified-tag invalid. A change
    // here means the vectors changed: review the new cases before updating the numbers.
    assert_eq!(
        counts,
        Counts {
            valid: 39,
            invalid: 27,
            acceptable_opened: 0,
            acceptable_rejected: 0,
            skipped_key_size: 211,
            skipped_iv_or_tag_size: 39,
        }
    );
}
