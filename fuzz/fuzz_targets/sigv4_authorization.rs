//! The `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` header.
//!
//! Input: the header's value, optionally followed by `\n` and the `X-Amz-Date` value (else
//! `20150830T123600Z`, the vectors' date). An accepted header must be well formed
//! (`check_parsed`), and written back in its canonical spelling it must parse to the same
//! authorization.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use sigvault::sigv4::{self, Authorization, Form, Header, HttpRequest, Refusal};
use sigvault_fuzz::{assert_same_authorization, check_parsed, hex};

fn request<'a>(headers: &'a [Header<'a>]) -> HttpRequest<'a> {
    HttpRequest {
        method: "GET",
        path: "/",
        query: "",
        headers,
        payload_sha256: None,
    }
}

fn headers<'a>(authorization: &'a str, date: &'a str) -> Vec<Header<'a>> {
    vec![
        (Cow::Borrowed("Host"), Cow::Borrowed("example.amazonaws.com")),
        (Cow::Borrowed("X-Amz-Date"), Cow::Borrowed(date)),
        (Cow::Borrowed("Authorization"), Cow::Borrowed(authorization)),
    ]
}

/// The header as a signer writes it.
fn written(auth: &Authorization) -> String {
    let s = &auth.scope;
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
        auth.access_key_id,
        s.date,
        s.region,
        s.service,
        auth.signed_headers.join(";"),
        hex(&auth.signature)
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (value, date) = text.split_once('\n').unwrap_or((text, "20150830T123600Z"));
    let headers = headers(value, date);
    let req = request(&headers);
    match sigv4::parse(&req) {
        Err(refusal) => assert_ne!(refusal, Refusal::MissingAuthorization, "the header is there"),
        Ok(auth) => {
            assert_eq!(auth.form, Form::Header);
            check_parsed(&req, &auth);
            let again = written(&auth);
            let headers = self::headers(&again, date);
            let reparsed = sigv4::parse(&request(&headers)).expect("a written header parses");
            assert_same_authorization(&auth, &reparsed);
        }
    }
});
