//! What the fuzz targets share: the request text of the SigV4 targets (the format of the
//! aws-c-auth vectors' `*-signed-request.txt`, so those files are seeds as they are), an
//! HMAC-SHA256 oracle independent of sigvault's, and the properties every parsed SigV4
//! request must have.
//!
//! A failed property panics: that is how a target reports it to libFuzzer. Nothing here
//! decides what sigvault accepts; it only states what an accepted request must look like.

use std::borrow::Cow;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sigvault::fuzzing::{sigv4_path_rules, sigv4_strings_to_sign, sigv4_timestamp};
use sigvault::sigv4::{self, Authorization, Form, Header, HttpRequest, Refusal};

/// The secret of the aws-c-auth vectors: the seeds taken from them verify as they are.
pub const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// Another secret, which must never verify what [`SECRET`] signed.
pub const OTHER_SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEX";

/// A request written as text: `METHOD TARGET[ HTTP/1.1]`, `Name:value` lines (a line that
/// starts with a space or tab continues the previous value, its `\n` kept), then a blank line
/// and the body. Without a blank line the body is unknown (`payload_sha256: None`).
#[derive(Clone)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<Header<'static>>,
    pub payload_sha256: Option<String>,
}

impl RawRequest {
    pub fn parse(text: &str) -> Option<Self> {
        let (head, body) = match text.split_once("\n\n") {
            Some((head, body)) => (head, Some(body)),
            None => (text, None),
        };
        let mut lines = head.split('\n');
        let (method, target) = lines.next()?.split_once(' ')?;
        let target = target.strip_suffix(" HTTP/1.1").unwrap_or(target);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let mut headers: Vec<Header<'static>> = Vec::new();
        for line in lines {
            match headers.last_mut() {
                Some((_, value)) if line.starts_with([' ', '\t']) => {
                    value.to_mut().push('\n');
                    value.to_mut().push_str(line);
                }
                _ => {
                    let (name, value) = line.split_once(':')?;
                    headers.push((Cow::Owned(name.to_owned()), Cow::Owned(value.to_owned())));
                }
            }
        }
        Some(Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers,
            payload_sha256: body.map(|b| hex(&Sha256::digest(b.as_bytes()))),
        })
    }

    pub fn http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            payload_sha256: self.payload_sha256.as_deref(),
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Two parses of one request must agree on everything that is signed or checked.
pub fn assert_same_authorization(a: &Authorization, b: &Authorization) {
    assert_eq!(a.form, b.form);
    assert_eq!(a.access_key_id, b.access_key_id);
    assert_eq!(a.scope, b.scope);
    assert_eq!(a.signed_headers, b.signed_headers);
    assert_eq!(a.signature, b.signature);
    assert_eq!(sigv4_timestamp(a), sigv4_timestamp(b));
}

/// What every accepted authorization must be, and what its canonical request must look like.
pub fn check_parsed(req: &HttpRequest<'_>, auth: &Authorization) {
    let names = &auth.signed_headers;
    assert!(!names.is_empty() && names.iter().any(|n| n == "host"), "{names:?}");
    assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted and unique: {names:?}");
    assert!(
        names
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_graphic() && !b.is_ascii_uppercase())),
        "{names:?}"
    );
    let id_ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    assert!(id_ok(&auth.access_key_id), "{:?}", auth.access_key_id);
    assert!(auth.scope.date.len() == 8 && auth.scope.date.bytes().all(|b| b.is_ascii_digit()));
    let ts = sigv4_timestamp(auth);
    assert_eq!(sigv4::check_time(auth, ts, 0), Ok(()), "valid at its own time");
    match auth.form {
        Form::Header => assert_eq!(sigv4::check_time(auth, ts + 1, 0), Err(Refusal::RequestExpired)),
        Form::Presigned => assert_eq!(sigv4::check_time(auth, ts - 1, 0), Err(Refusal::RequestNotYetValid)),
    }
    for normalize in [None, Some(true), Some(false)] {
        if let Ok(candidates) = sigv4_strings_to_sign(req, auth, normalize) {
            assert!((1..=4).contains(&candidates.len()), "{}", candidates.len());
            for candidate in &candidates {
                assert!(candidate.starts_with(b"AWS4-HMAC-SHA256\n"));
                assert_eq!(candidate.iter().filter(|&&b| b == b'\n').count(), 3);
            }
        }
        let rules = sigv4_path_rules(&auth.scope.service, normalize);
        for omit_token in [false, true] {
            if let Ok(canonical) = sigv4::canonical_request(req, auth, rules, "UNSIGNED-PAYLOAD", omit_token) {
                let normalized = normalize.unwrap_or(auth.scope.service != "s3");
                check_canonical_request(&canonical, req.path, auth, normalized);
            }
        }
    }
}

/// `method\nuri\nquery\n` + one `name:value\n` line per signed header + `\nnames\nhash`: no
/// value may add or remove a line, and the URI and query are fully percent-encoded.
fn check_canonical_request(canonical: &str, path: &str, auth: &Authorization, normalized: bool) {
    let lines: Vec<&str> = canonical.split('\n').collect();
    let n = auth.signed_headers.len();
    assert_eq!(lines.len(), 6 + n, "one line per part: {canonical:?}");
    for (line, name) in lines[3..3 + n].iter().zip(&auth.signed_headers) {
        assert!(line.starts_with(&format!("{name}:")), "{line:?} for {name}");
    }
    assert_eq!(lines[3 + n], "");
    assert_eq!(lines[4 + n], auth.signed_headers.join(";"));
    let uri = lines[1];
    // A path not in origin form (`*`, or the API's caller forgot the `/`: the API refuses
    // it before SigV4 sees it) is encoded as it is.
    if normalized || path.is_empty() || path.starts_with('/') {
        assert!(uri.starts_with('/'), "{uri:?}");
    }
    assert!(encoded(uri, b"/"), "{uri:?}");
    if normalized {
        let segments: Vec<&str> = uri.split('/').skip(1).collect();
        for (i, segment) in segments.iter().enumerate() {
            assert!(*segment != "." && *segment != "..", "{uri:?}");
            assert!(
                !segment.is_empty() || i + 1 == segments.len(),
                "no empty segment: {uri:?}"
            );
        }
    }
    let query = lines[2];
    if !query.is_empty() {
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').expect("every canonical parameter has `=`");
            assert!(encoded(name, b"") && encoded(value, b""), "{pair:?}");
        }
    }
}

/// Only unreserved characters, `allowed`, and `%XX` with upper-case hex digits.
fn encoded(text: &str, allowed: &[u8]) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex_ok = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c));
            if !hex_ok(bytes.get(i + 1)) || !hex_ok(bytes.get(i + 2)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b"-._~".contains(&b) || allowed.contains(&b)) {
            return false;
        }
        i += 1;
    }
    true
}

/// The signature [`SECRET`] makes over the request's most likely string to sign.
pub fn genuine_signature(req: &HttpRequest<'_>, auth: &Authorization) -> Option<[u8; 32]> {
    let candidates = sigv4_strings_to_sign(req, auth, None).ok()?;
    let key = sigv4::signing_key(SECRET, &auth.scope);
    Some(hmac_sha256(key.as_slice(), candidates.first()?))
}
