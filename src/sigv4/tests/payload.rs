//! Which payload hash a request is verified against, and the presigned candidates.

use super::*;

const SIGNED_WITH_HASH: &str = "host;x-amz-content-sha256;x-amz-date";

fn post(body: &[u8]) -> Req {
    let mut req = Req::get("/");
    req.method = "POST".to_owned();
    req.payload = Some(sha256_hex(body));
    req
}

#[test]
fn a_declared_body_hash_that_contradicts_the_body_is_a_mismatch() {
    let req = post(b"the body").with_header("x-amz-content-sha256", &sha256_hex(b"the body"));
    let signed = sign_header(req, "service", SIGNED_WITH_HASH);
    assert!(signed.verify().is_ok());
    let mut other_body = signed.clone();
    other_body.payload = Some(sha256_hex(b"another body"));
    assert_eq!(other_body.verify().unwrap_err(), Refusal::SignatureMismatch);
    // The caller may not know the body: the declared hash is then taken as signed.
    let mut unknown_body = signed;
    unknown_body.payload = None;
    assert!(unknown_body.verify().is_ok());
}

#[test]
fn an_unsigned_payload_header_form_request_verifies_whatever_the_body() {
    let req = post(b"the body").with_header("x-amz-content-sha256", UNSIGNED_PAYLOAD);
    let signed = sign_header(req, "service", SIGNED_WITH_HASH);
    assert!(signed.verify().is_ok());
    let mut other_body = signed;
    other_body.payload = Some(sha256_hex(b"another body"));
    assert!(other_body.verify().is_ok());
}

#[test]
fn a_streaming_payload_mode_is_signed_verbatim() {
    let req = post(b"chunks").with_header("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD");
    let signed = sign_header(req, "service", SIGNED_WITH_HASH);
    let auth = signed.parse().unwrap();
    let candidates = strings_to_sign(&signed.http(), &auth, PathRules::for_service("service")).unwrap();
    assert_eq!(candidates.len(), 1);
    let canonical = canonical_request(
        &signed.http(),
        &auth,
        PathRules::for_service("service"),
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        false,
    )
    .unwrap();
    assert!(canonical.ends_with("\nSTREAMING-AWS4-HMAC-SHA256-PAYLOAD"));
    assert!(signed.verify().is_ok());
}

#[test]
fn without_a_declared_hash_the_header_form_signs_the_body_or_the_empty_hash() {
    let signed = sign_header(post(b"the body"), "service", "host;x-amz-date");
    assert!(signed.verify().is_ok());
    let mut unknown_body = signed.clone();
    unknown_body.payload = None;
    assert_eq!(unknown_body.verify().unwrap_err(), Refusal::SignatureMismatch);

    let mut empty = Req::get("/");
    empty.payload = None;
    let empty = sign_header(empty, "service", "host;x-amz-date");
    let auth = empty.parse().unwrap();
    let canonical = canonical_request(
        &empty.http(),
        &auth,
        PathRules::for_service("service"),
        EMPTY_SHA256,
        false,
    );
    assert!(canonical.unwrap().ends_with(EMPTY_SHA256));
    assert!(empty.verify().is_ok());
}

#[test]
fn a_presigned_url_verifies_over_unsigned_payload_or_the_body_hash() {
    for candidate in [0, 1] {
        let req = presign(post(b"the body"), candidate);
        let auth = req.parse().unwrap();
        assert_eq!((auth.form, auth.expires_s), (Form::Presigned, Some(3600)));
        let candidates = strings_to_sign(&req.http(), &auth, PathRules::for_service("service")).unwrap();
        assert_eq!(candidates.len(), 2);
        assert!(req.verify().is_ok(), "candidate {candidate}");
        // Only the body-hash signature covers the body.
        let mut other_body = req.clone();
        other_body.payload = Some(sha256_hex(b"another body"));
        assert_eq!(other_body.verify().is_ok(), candidate == 0, "candidate {candidate}");
    }
}

#[test]
fn a_presigned_url_with_a_declared_hash_has_one_payload_candidate() {
    let req = presign(post(b"x").with_header("x-amz-content-sha256", UNSIGNED_PAYLOAD), 0);
    let auth = req.parse().unwrap();
    let candidates = strings_to_sign(&req.http(), &auth, PathRules::for_service("service")).unwrap();
    assert_eq!(candidates.len(), 1);
    assert!(req.verify().is_ok());
}

#[test]
fn a_session_token_is_signed_unless_it_was_appended_after_signing() {
    let mut with_token = Req::get("/");
    with_token.query = "X-Amz-Security-Token=tok%2Fen".to_owned();
    let signed = presign(with_token, 0);
    let auth = signed.parse().unwrap();
    assert_eq!(
        strings_to_sign(&signed.http(), &auth, PathRules::for_service("service"))
            .unwrap()
            .len(),
        4
    );
    assert!(signed.verify().is_ok());
    let mut changed = signed.clone();
    changed.query = changed.query.replace("tok%2Fen", "tok%2Fem");
    assert_eq!(changed.verify().unwrap_err(), Refusal::SignatureMismatch);

    // Signed without the token (candidate 2 = UNSIGNED-PAYLOAD, token left out), token
    // added afterwards: accepted, and the token is then not covered by the signature.
    let mut appended = Req::get("/");
    appended.query = "X-Amz-Security-Token=tok%2Fen".to_owned();
    let appended = presign(appended, 2);
    assert!(appended.verify().is_ok());
    let mut changed = appended;
    changed.query = changed.query.replace("tok%2Fen", "tok%2Fem");
    assert!(changed.verify().is_ok());
}

#[test]
fn the_header_form_has_a_single_candidate_even_with_a_token_in_the_query() {
    let mut req = Req::get("/");
    req.query = "X-Amz-Security-Token=abc".to_owned();
    let signed = sign_header(req, "service", "host;x-amz-date");
    let auth = signed.parse().unwrap();
    assert_eq!(
        strings_to_sign(&signed.http(), &auth, PathRules::for_service("service"))
            .unwrap()
            .len(),
        1
    );
    let mut without = signed.clone();
    without.query = String::new();
    assert_eq!(without.verify().unwrap_err(), Refusal::SignatureMismatch);
}
