//! The forwarded request of `POST /v1/sigv4/verify`: its body, the limits it must keep, the
//! payload hash to verify with, and the fingerprint of the caller the service saw.
//!
//! Only shape and size are checked here; whether the request is signed is the credential
//! service's to decide. The body is caller input: nothing here may trust it beyond the
//! checks it passed, and a body decoded to hash it is zeroized.

use std::borrow::Cow;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::super::fingerprint::reported_caller;
use super::super::reply::base64_field;
use crate::audit::event::clean_user_agent;
use crate::error::ApiError;
use crate::fingerprint::Fingerprint;
use crate::sigv4::Header;

/// Headers a forwarded request may carry.
pub const MAX_HEADERS: usize = 128;
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 16 * 1024;
const MAX_PATH: usize = 16 * 1024;
const MAX_QUERY: usize = 16 * 1024;
const MAX_METHOD: usize = 32;

/// The body of `POST /v1/sigv4/verify`: the request the service received, borrowed from
/// the body buffer where the JSON needs no unescaping.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest<'a> {
    #[serde(borrow)]
    pub(crate) method: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) path: Cow<'a, str>,
    #[serde(default, borrow)]
    pub(crate) query: Cow<'a, str>,
    #[serde(borrow, deserialize_with = "borrowed_headers")]
    pub(crate) headers: Vec<Header<'a>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload_sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    /// Overrides the path rule of the request's service (S3: no normalisation).
    pub(crate) normalize_path: Option<bool>,
}

/// A JSON string, borrowed from the body when it holds no escape (serde borrows a `Cow` only
/// when it is a field of its own, not inside a tuple).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The `headers` member: `[name, value]` pairs, each string borrowed where it can be (a
/// SigV4 verification reads every header; copying each cost two allocations).
fn borrowed_headers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Header<'de>>, D::Error> {
    let pairs: Vec<(Text<'de>, Text<'de>)> = Deserialize::deserialize(d)?;
    Ok(pairs.into_iter().map(|(name, value)| (name.0, value.0)).collect())
}

/// Checks the forwarded request and returns the payload hash to verify with and the
/// caller's fingerprint. The first refusal wins: limits, then the payload, then the caller
/// (its address and user agent).
pub(crate) fn check(req: &VerifyRequest<'_>) -> Result<(Option<String>, Fingerprint), ApiError> {
    check_request(req)?;
    let payload = payload_hash(req)?;
    let who = caller_fingerprint(req)?;
    Ok((payload, who))
}

/// The limits of a forwarded request: an HTTP method token, a path from `/`, and bounded
/// query and headers.
fn check_request(req: &VerifyRequest<'_>) -> Result<(), ApiError> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
    };
    if req.method.len() > MAX_METHOD || !token(&req.method) {
        return Err(ApiError::invalid("method must be an HTTP method token"));
    }
    if req.path.is_empty() || req.path.len() > MAX_PATH || !req.path.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "path must start with / and be at most {MAX_PATH} bytes"
        )));
    }
    if req.query.len() > MAX_QUERY {
        return Err(ApiError::invalid(format!("query must be at most {MAX_QUERY} bytes")));
    }
    if req.headers.len() > MAX_HEADERS {
        return Err(ApiError::invalid(format!("at most {MAX_HEADERS} headers")));
    }
    for (name, value) in &req.headers {
        if name.len() > MAX_HEADER_NAME || !token(name) {
            return Err(ApiError::invalid(
                "header names must be HTTP tokens of at most 256 bytes",
            ));
        }
        if value.len() > MAX_HEADER_VALUE {
            return Err(ApiError::invalid(format!(
                "header values must be at most {MAX_HEADER_VALUE} bytes"
            )));
        }
    }
    Ok(())
}

/// The payload hash to verify with: of `body` when given (checked against
/// `payload_sha256` when both are), else `payload_sha256`, else unknown.
fn payload_hash(req: &VerifyRequest<'_>) -> Result<Option<String>, ApiError> {
    let given = match req.payload_sha256.as_deref() {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Some(h.to_owned())
        }
        Some(_) => return Err(ApiError::invalid("payload_sha256 must be 64 lowercase hex digits")),
        None => None,
    };
    let Some(body) = req.body.as_deref() else {
        return Ok(given);
    };
    let bytes = zeroize::Zeroizing::new(base64_field("body", body)?);
    let computed = base16ct::lower::encode_string(&Sha256::digest(bytes.as_slice()));
    if given.as_ref().is_some_and(|g| *g != computed) {
        return Err(ApiError::invalid("payload_sha256 is not the SHA-256 of body"));
    }
    Ok(Some(computed))
}

/// The caller of the forwarded request as the service saw it: `source_ip` and
/// `user_agent` as any verification reports them ([`reported_caller`]), the user agent
/// defaulting to the request's own `User-Agent` header, cleaned for the trail.
fn caller_fingerprint(req: &VerifyRequest<'_>) -> Result<Fingerprint, ApiError> {
    let mut who = reported_caller(req.source_ip.as_deref(), req.user_agent.as_deref())?;
    if req.user_agent.is_none()
        && let Some((_, header)) = req.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
    {
        who.user_agent = clean_user_agent(header);
    }
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn fingerprint_of(body: serde_json::Value) -> Result<Fingerprint, ApiError> {
        let text = body.to_string();
        let req: VerifyRequest<'_> = serde_json::from_str(&text).unwrap();
        caller_fingerprint(&req)
    }

    #[test]
    fn header_strings_are_borrowed_from_the_body_unless_they_hold_an_escape() {
        let text = r#"{"method":"GET","path":"/","headers":[["Host","example.com"],["X-Note","a\"b\u00e9"]]}"#;
        let req: VerifyRequest<'_> = serde_json::from_str(text).unwrap();
        let names: Vec<(&str, &str)> = req.headers.iter().map(|(n, v)| (n.as_ref(), v.as_ref())).collect();
        assert_eq!(names, [("Host", "example.com"), ("X-Note", "a\"bé")]);
        assert!(matches!(req.headers[0], (Cow::Borrowed(_), Cow::Borrowed(_))));
        assert!(matches!(req.headers[1].1, Cow::Owned(_)));
        assert!(
            serde_json::from_str::<VerifyRequest<'_>>(r#"{"method":"GET","path":"/","headers":[["Host"]]}"#).is_err()
        );
    }

    #[test]
    fn the_reported_source_ip_is_checked_and_kept_in_its_canonical_form() {
        let who = fingerprint_of(serde_json::json!({
            "method": "GET", "path": "/", "headers": [], "source_ip": "2001:DB8:0:0::1"
        }))
        .unwrap();
        assert_eq!(who.source_ip, "2001:db8::1");
        let refused = fingerprint_of(serde_json::json!({
            "method": "GET", "path": "/", "headers": [], "source_ip": "example.com"
        }))
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidArgument);
    }

    #[test]
    fn the_user_agent_given_wins_over_the_header_and_either_is_cleaned() {
        let headers = serde_json::json!([["Host", "example.com"], ["USER-AGENT", "from-header\u{7}"]]);
        let who = fingerprint_of(serde_json::json!({
            "method": "GET", "path": "/", "headers": headers, "user_agent": "given"
        }))
        .unwrap();
        assert_eq!(who.user_agent, "given");
        let who = fingerprint_of(serde_json::json!({"method": "GET", "path": "/", "headers": headers})).unwrap();
        assert_eq!(
            who.user_agent, "from-header",
            "the header, without its control character"
        );
    }
}
