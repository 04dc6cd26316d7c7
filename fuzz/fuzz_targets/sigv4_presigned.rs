//! The presigned form: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
//! `X-Amz-SignedHeaders` and `X-Amz-Signature` in the query string.
//!
//! Input: the raw query string of `GET /` (with a `Host` header). An accepted query must be
//! well formed (`check_parsed`), expire exactly `X-Amz-Expires` seconds after its date, and
//! written back with its parameters canonically encoded it must parse to the same
//! authorization.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use sigvault::fuzzing::{sigv4_expires, sigv4_timestamp};
use sigvault::sigv4::{self, Authorization, Form, Header, HttpRequest, Refusal};
use sigvault_fuzz::{assert_same_authorization, check_parsed, hex};

fn request<'a>(query: &'a str, headers: &'a [Header<'a>]) -> HttpRequest<'a> {
    HttpRequest {
        method: "GET",
        path: "/",
        query,
        headers,
        payload_sha256: None,
    }
}

/// `A-Za-z0-9-._~` as they are, everything else `%XX`.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The query as a signer writes it (the date is the credential's day at the parsed time).
fn written(auth: &Authorization, amz_date: &str) -> String {
    let s = &auth.scope;
    let credential = format!(
        "{}/{}/{}/{}/aws4_request",
        auth.access_key_id, s.date, s.region, s.service
    );
    format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires={}&X-Amz-SignedHeaders={}&X-Amz-Signature={}",
        encode(&credential),
        encode(amz_date),
        sigv4_expires(auth).expect("presigned"),
        encode(&auth.signed_headers.join(";")),
        hex(&auth.signature)
    )
}

/// `YYYYMMDD'T'HHMMSS'Z'` of Unix seconds.
fn amz_date(unix_s: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_s).expect("a parsed date is in range");
    t.format(time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .expect("formats")
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let headers: Vec<Header<'_>> = vec![(Cow::Borrowed("Host"), Cow::Borrowed("example.amazonaws.com"))];
    let req = request(query, &headers);
    match sigv4::parse(&req) {
        Err(Refusal::MissingAuthorization) => {
            let named = |piece: &str| piece.split('=').next() == Some("X-Amz-Signature");
            assert!(!query.split('&').any(named), "X-Amz-Signature is there");
        }
        Err(_) => {}
        Ok(auth) => {
            assert_eq!(auth.form, Form::Presigned);
            check_parsed(&req, &auth);
            let ts = sigv4_timestamp(&auth);
            let expires = sigv4_expires(&auth).expect("a presigned request has X-Amz-Expires");
            assert!((1..=604_800).contains(&expires));
            assert_eq!(sigv4::check_time(&auth, ts + expires, 0), Ok(()));
            assert_eq!(
                sigv4::check_time(&auth, ts + expires + 1, 0),
                Err(Refusal::RequestExpired)
            );
            let again = written(&auth, &amz_date(ts));
            let reparsed = sigv4::parse(&request(&again, &headers)).expect("a written query parses");
            assert_same_authorization(&auth, &reparsed);
        }
    }
});
