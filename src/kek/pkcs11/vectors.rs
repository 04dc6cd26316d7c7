//! Known-answer tests of the PKCS#11 key wrap against NIST SP 800-38F KWP vectors.
//!
//! Runs `rfc-nist/keywrap/KWP_AE_256.txt` and `KWP_AD_256.txt` (AES-256 key wrap with
//! padding, RFC 5649) through [`wrap_bytes`] and [`unwrap_bytes`] — the functions the
//! provider wraps every DEK with — in the real SoftHSM2 module, each vector's `K` imported
//! as a session AES key with the KEK's usage (wrap and unwrap only, sensitive, not
//! extractable). This checks the mechanism and our use of it (template, buffer handling),
//! not a software re-implementation.
//!
//! SoftHSM2 cannot reproduce NIST's wrap of a plaintext that is not a multiple of 8 bytes
//! (see [`is_softhsm_zero_padded_wrap`]); those KW-AE cases are checked for exactly that
//! behaviour, counted and skipped. Unwrapping has no such limit. Each suite runs on its own
//! fresh token, so the two may run in parallel.

use cryptoki::context::Function;
use cryptoki::error::Error as CkError;
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};

use super::error::is_integrity_failure;
use super::objects::{unwrap_bytes, wrap_bytes};
use super::testing;
use super::token::{context, find_token};
use crate::testvectors::{KwpCase, nist_kwp};

/// A logged-in read-write session on a fresh SoftHSM2 token.
fn user_session(tag: &str) -> Session {
    let settings = testing::fresh_token(tag);
    let ctx = context(&settings.module).unwrap();
    let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    session.login(UserType::User, Some(&settings.pin)).unwrap();
    session
}

/// Imports the vector's `K` as a session KEK with the same usage as the provider's KEK.
fn import_kek(session: &Session, key: &[u8]) -> ObjectHandle {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Token(false),
            Attribute::Wrap(true),
            Attribute::Unwrap(true),
            Attribute::Value(key.to_vec()),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
        ])
        .unwrap()
}

fn describe(case: &KwpCase) -> String {
    format!("[PLAINTEXT LENGTH = {}] COUNT = {}", case.plaintext_bits, case.count)
}

/// SoftHSM2 limit, not a sigvault bug: `SoftHSM::WrapKeySym` (2.6.1, and still on its
/// `develop` branch) zero-pads the key value to a multiple of 8 bytes *before* it looks at
/// the mechanism. The padding was added for `CKM_AES_KEY_WRAP` (SoftHSMv2 issue #305, PR
/// #307; issue #626 reports the same code hitting `CKM_AES_CBC`) but also reaches
/// `CKM_AES_KEY_WRAP_PAD`, so RFC 5649's length indicator records the padded length: the
/// module wraps `P || 0…0`, and unwrapping gives the padded bytes back. The ciphertext is
/// then a correct RFC 5649 wrap of different data, and cannot equal NIST's `C`.
///
/// Checked rather than assumed: the wrap has NIST's length and unwraps, in the same
/// module, to exactly `P` zero-padded. sigvault's DEKs are 32 bytes and never hit this;
/// any other secret length would come back from `unwrap_bytes` with trailing zeros.
fn is_softhsm_zero_padded_wrap(session: &Session, kek: ObjectHandle, case: &KwpCase, wrapped: &[u8]) -> bool {
    let plaintext = case.p.as_deref().unwrap_or_default();
    let mut padded = plaintext.to_vec();
    padded.resize(plaintext.len().next_multiple_of(8), 0);
    wrapped.len() == case.c.len()
        && unwrap_bytes(session, kek, wrapped).is_ok_and(|back| back.as_slice() == padded.as_slice())
}

#[test]
fn nist_kwp_ae_256_vectors_wrap_to_the_expected_ciphertext_in_the_hsm() {
    let cases = nist_kwp("rfc-nist/keywrap/KWP_AE_256.txt");
    let session = user_session("kwp-ae");
    let (mut matched, mut aligned, mut skipped_zero_padded) = (0, 0, 0);
    for case in &cases {
        let plaintext = case.p.as_deref().unwrap();
        let kek = import_kek(&session, &case.k);
        let wrapped =
            wrap_bytes(&session, kek, plaintext).unwrap_or_else(|e| panic!("{}: wrap failed: {e}", describe(case)));
        let is_aligned = plaintext.len().is_multiple_of(8);
        if wrapped == case.c {
            matched += 1;
        } else {
            // Only the SoftHSM2 padding above may explain a mismatch; anything else fails.
            assert!(
                !is_aligned && is_softhsm_zero_padded_wrap(&session, kek, case, &wrapped),
                "{}: wrapped to {wrapped:02x?}, expected {:02x?}",
                describe(case),
                case.c
            );
            skipped_zero_padded += 1;
        }
        aligned += usize::from(is_aligned);
        session.destroy_object(kek).unwrap();
    }
    println!(
        "KWP_AE_256: {matched} of {} cases wrapped to NIST's C in the HSM; {skipped_zero_padded} \
         skipped (plaintext not a multiple of 8 bytes: SoftHSM2 zero-pads it before wrapping)",
        cases.len()
    );
    // Every 8-byte-aligned plaintext (the DEK's case) matched, or the loop would have
    // failed. The 1-, 9- and 31-byte plaintexts are the other 300 cases, so on SoftHSM2
    // only 200 of the 500 can match: "most cases" is not reachable with this module.
    assert_eq!(aligned, 200);
    assert!(matched >= aligned, "matched {matched}");
    assert_eq!(matched + skipped_zero_padded, cases.len());
}

#[test]
fn nist_kwp_ad_256_vectors_unwrap_to_the_expected_plaintext_or_fail_in_the_hsm() {
    let cases = nist_kwp("rfc-nist/keywrap/KWP_AD_256.txt");
    let session = user_session("kwp-ad");
    let (mut opened, mut refused) = (0, 0);
    for case in &cases {
        let kek = import_kek(&session, &case.k);
        let unwrapped = unwrap_bytes(&session, kek, &case.c);
        session.destroy_object(kek).unwrap();
        match (&case.p, unwrapped) {
            (Some(expected), Ok(plain)) => {
                assert_eq!(plain.as_slice(), expected.as_slice(), "{}", describe(case));
                opened += 1;
            }
            (Some(_), Err(e)) => panic!("{}: unwrap failed: {e}", describe(case)),
            (None, Ok(_)) => panic!("{}: a FAIL case unwrapped", describe(case)),
            // The integrity check must be what refuses it: an error from C_UnwrapKey itself,
            // with a code the provider's `unwrap_error` reports as a rejected blob rather
            // than an unavailable HSM (SoftHSM2 answers CKR_GENERAL_ERROR).
            (None, Err(CkError::Pkcs11(rv, Function::UnwrapKey))) if is_integrity_failure(rv) => refused += 1,
            (None, Err(e)) => panic!("{}: refused with an unexpected error: {e}", describe(case)),
        }
    }
    println!("KWP_AD_256: {opened} cases unwrapped, {refused} FAIL cases refused, none skipped");
    assert_eq!((opened, refused), (400, 100));
}
