//! A whole request: method, path, query, headers and body through parse, canonical request,
//! string to sign and signature check — the pure half of `POST /v1/sigv4/verify`.
//!
//! Input: the request as text (`METHOD TARGET HTTP/1.1`, `Name:value` lines, a blank line,
//! the body; the aws-c-auth vectors' `*-signed-request.txt` files are seeds as they are).
//! Properties: `verify` refuses with the parse's own refusal; an accepted request is well
//! formed (`check_parsed`); and once it carries the signature [`SECRET`] makes over its
//! canonical form, it verifies under that secret, at its own time, and under no other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigvault::fuzzing::sigv4_timestamp;
use sigvault::sigv4::{self, Authorization, Form, Refusal};
use sigvault_fuzz::{
    OTHER_SECRET, RawRequest, SECRET, assert_same_authorization, check_parsed, genuine_signature, hex,
};

/// The request with its signature replaced, where that changes nothing that is signed: the
/// `Signature=` of an unsigned `Authorization` header, or a literal `X-Amz-Signature=` query
/// parameter (never part of the canonical query).
fn with_signature(raw: &RawRequest, auth: &Authorization, signature: &[u8; 32]) -> Option<RawRequest> {
    let mut signed = raw.clone();
    match auth.form {
        Form::Header => {
            if auth.signed_headers.iter().any(|n| n == "authorization") {
                return None;
            }
            let old = format!("Signature={}", hex(&auth.signature));
            let (_, value) = signed
                .headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))?;
            if !value.contains(&old) {
                return None;
            }
            *value = value.replacen(&old, &format!("Signature={}", hex(signature)), 1).into();
        }
        Form::Presigned => {
            let old = format!("X-Amz-Signature={}", hex(&auth.signature));
            let mut pieces: Vec<String> = raw.query.split('&').map(str::to_owned).collect();
            let piece = pieces.iter_mut().find(|p| **p == old)?;
            *piece = format!("X-Amz-Signature={}", hex(signature));
            signed.query = pieces.join("&");
        }
    }
    Some(signed)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some(raw) = RawRequest::parse(text) else { return };
    let req = raw.http();
    let auth = match sigv4::parse(&req) {
        Ok(auth) => auth,
        Err(refusal) => {
            let verified = sigv4::verify(&req, SECRET, 0, 900, None);
            assert_eq!(verified.err(), Some(refusal), "verify refuses as parse does");
            return;
        }
    };
    check_parsed(&req, &auth);
    let Some(signature) = genuine_signature(&req, &auth) else {
        return;
    };
    let Some(signed) = with_signature(&raw, &auth, &signature) else {
        return;
    };
    let req = signed.http();
    let ts = sigv4_timestamp(&auth);
    let verified = sigv4::verify(&req, SECRET, ts, 0, None).expect("a genuinely signed request verifies");
    assert_eq!(verified.signature, signature);
    let mut expected = auth.clone();
    expected.signature = signature;
    assert_same_authorization(&expected, &verified);
    let forged = sigv4::verify(&req, OTHER_SECRET, ts, 0, None);
    assert_eq!(
        forged.err(),
        Some(Refusal::SignatureMismatch),
        "another secret never verifies"
    );
});
