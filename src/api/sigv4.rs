//! `POST /v1/sigv4/verify` and `POST /v1/sigv4/signing-key`.
//!
//! A service forwards the request it received — method, raw path and query, headers in
//! order, and the body or its hash — and learns who signed it. A verification that ran
//! answers 200 with `valid` and, when false, a `code`; its audit event records that code as
//! the outcome. A credential's new caller fingerprint adds a `credential.new_fingerprint`
//! event (source ip and user agent are the fingerprint's: the caller the service saw).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call, request_id};
use super::credentials::credential_error;
use super::reply::{self, base64, base64_field, json};
use super::{AppState, audited, authenticate, authorize, method_not_allowed, with_state};
use crate::audit::action::{Action, CREDENTIAL_NEW_FINGERPRINT};
use crate::audit::event::{Decision, EventData, clean_user_agent};
use crate::credentials::OnNewFingerprint;
use crate::credentials::activity::Fingerprint;
use crate::credentials::{NewFingerprint, Verification, valid_access_key_id};
use crate::error::{ApiError, ErrorCode};
use crate::policy::Resource;
use crate::sigv4::{Form, HttpRequest};
use crate::timefmt::rfc3339;

/// Headers a forwarded request may carry.
pub const MAX_HEADERS: usize = 128;
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 16 * 1024;
const MAX_PATH: usize = 16 * 1024;
const MAX_QUERY: usize = 16 * 1024;
const MAX_METHOD: usize = 32;
const MAX_USER_AGENT_INPUT: usize = 4096;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let verify = warp::path!("sigv4" / "verify").and(s()).and(call()).then(verify);
    let signing_key = warp::path!("sigv4" / "signing-key")
        .and(s())
        .and(call())
        .then(signing_key);
    verify.or(signing_key).unify().boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest<'a> {
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    #[serde(default, borrow)]
    query: Cow<'a, str>,
    headers: Vec<(String, String)>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload_sha256: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    /// Overrides the path rule of the request's service (S3: no normalisation).
    normalize_path: Option<bool>,
}

#[derive(Serialize)]
struct Valid<'a> {
    valid: bool,
    access_key_id: &'a str,
    principal: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: &'a [String],
    form: &'static str,
}

#[derive(Serialize)]
struct Invalid<'a> {
    valid: bool,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<&'a str>,
}

async fn verify(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call));
    }
    let result = verify_request(&state, &mut call).await;
    let resource = call.note.resource.take().unwrap_or_else(|| "sigv4".into());
    audited(&state, &mut call, Action::VerifySigV4, resource, result).await
}

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
    if req
        .user_agent
        .as_ref()
        .is_some_and(|ua| ua.len() > MAX_USER_AGENT_INPUT)
    {
        return Err(ApiError::invalid("user_agent is too long"));
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

/// Verifies one forwarded request: the caller may verify, the body is well formed, the
/// vault checks the signature; a new caller fingerprint is audited before the answer.
async fn verify_request(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::VerifySigV4,
        &Resource::Collection("sigv4"),
    )?;
    let body = call.read_body(state.limits.max_sign_body_bytes).await?;
    let req: VerifyRequest<'_> = reply::parse_json(&body)?;
    check_request(&req)?;
    let payload = payload_hash(&req)?;
    let who = caller_fingerprint(&req)?;
    let request = HttpRequest {
        method: &req.method,
        path: &req.path,
        query: &req.query,
        headers: &req.headers,
        payload_sha256: payload.as_deref(),
    };
    let verification = state
        .credentials
        .verify(&request, who, req.normalize_path)
        .await
        .map_err(credential_error)?;
    if let Some(id) = &verification.access_key_id
        && valid_access_key_id(id)
    {
        call.note.resource = Some(format!("credential:{id}"));
    }
    if let Some(new) = &verification.new_fingerprint {
        let decided = (call.note.decision, call.note.policy.clone());
        record_new_fingerprint(state, decided, &caller.name, new).await?;
    }
    Ok(verification_reply(call, &verification))
}

/// The caller of the forwarded request as the service saw it: `source_ip` in its canonical
/// form (`""` when not given), and `user_agent`, else the request's own `User-Agent`
/// header, cleaned for the trail.
fn caller_fingerprint(req: &VerifyRequest<'_>) -> Result<Fingerprint, ApiError> {
    let source_ip = match req.source_ip.as_deref() {
        Some(ip) => ip
            .parse::<IpAddr>()
            .map_err(|_| ApiError::invalid("source_ip must be an IP address"))?
            .to_string(),
        None => String::new(),
    };
    let user_agent = match req.user_agent.as_deref() {
        Some(ua) => ua.to_owned(),
        None => req
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("user-agent"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default(),
    };
    Ok(Fingerprint {
        source_ip,
        user_agent: clean_user_agent(&user_agent),
    })
}

/// The 200 answer of a verification that ran: who signed, or the refusal's code, which
/// also becomes the audit event's outcome. An access key id is echoed only when it is
/// well formed.
fn verification_reply(call: &mut Call, verification: &Verification) -> Response {
    match &verification.result {
        Ok(v) => json(
            StatusCode::OK,
            &Valid {
                valid: true,
                access_key_id: &v.access_key_id,
                principal: &v.principal,
                region: &v.scope.region,
                service: &v.scope.service,
                signed_headers: &v.signed_headers,
                form: match v.form {
                    Form::Header => "header",
                    Form::Presigned => "presigned",
                },
            },
        ),
        Err(rejection) => {
            let code = rejection.code();
            call.note.outcome = Some(code);
            json(
                StatusCode::OK,
                &Invalid {
                    valid: false,
                    code,
                    access_key_id: verification
                        .access_key_id
                        .as_deref()
                        .filter(|id| valid_access_key_id(id)),
                },
            )
        }
    }
}

/// The `credential.new_fingerprint` event, durable before the verification is answered.
async fn record_new_fingerprint(
    state: &AppState,
    (decision, policy): (Decision, Option<String>),
    reporter: &str,
    new: &NewFingerprint,
) -> Result<(), ApiError> {
    let outcome = match (new.first, new.rule) {
        (true, _) => "learned",
        (false, OnNewFingerprint::Record) => "recorded",
        (false, OnNewFingerprint::Alert) => "alerted",
        (false, OnNewFingerprint::Deactivate) => "deactivated",
    };
    let event = EventData {
        time_ms: crate::clock::unix_ms(state.clock.now()),
        request_id: request_id(),
        principal: reporter.to_owned(),
        action: CREDENTIAL_NEW_FINGERPRINT.into(),
        resource: format!("credential:{}", new.access_key_id),
        key_version: None,
        decision,
        policy,
        outcome: outcome.into(),
        source_ip: Some(new.fingerprint.source_ip.clone()).filter(|ip| !ip.is_empty()),
        user_agent: Some(new.fingerprint.user_agent.clone()).filter(|ua| !ua.is_empty()),
        secret_hmac: None,
    };
    state
        .audit
        .record(event)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))
}

// ----- /v1/sigv4/signing-key -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SigningKeyRequest {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

async fn signing_key(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call));
    }
    let result = derive(&state, &mut call).await;
    let resource = call.note.resource.take().unwrap_or_else(|| "sigv4".into());
    audited(&state, &mut call, Action::DeriveSigningKey, resource, result).await
}

async fn derive(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: SigningKeyRequest = reply::parse_json(&body)?;
    if !valid_access_key_id(&req.access_key_id) {
        return Err(ApiError::invalid(
            "access_key_id must be 1 to 128 characters of A-Z a-z 0-9",
        ));
    }
    call.note.resource = Some(format!("credential:{}", req.access_key_id));
    let owner = state
        .credentials
        .owner(&req.access_key_id)
        .await
        .map_err(credential_error)?;
    let resource = Resource::Credential {
        id: &req.access_key_id,
        principal: owner.as_deref().unwrap_or(""),
    };
    authorize(state, call, &caller, Action::DeriveSigningKey, &resource)?;
    let (key, scope, expires) = state
        .credentials
        .derive(&req.access_key_id, &req.date, &req.region, &req.service)
        .await
        .map_err(credential_error)?;
    // The derived key goes to the caller the policy allowed; it is good for one scope only.
    let encoded = zeroize::Zeroizing::new(base64(key.as_slice()));
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "signing_key": encoded.as_str(),
            "scope": scope.to_string_scope(),
            "expires_at": rfc3339(expires),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint_of(body: serde_json::Value) -> Result<Fingerprint, ApiError> {
        let text = body.to_string();
        let req: VerifyRequest<'_> = serde_json::from_str(&text).unwrap();
        caller_fingerprint(&req)
    }

    #[test]
    fn the_source_ip_is_kept_in_its_canonical_form_so_one_caller_is_one_fingerprint() {
        let who = fingerprint_of(serde_json::json!({
            "method": "GET", "path": "/", "headers": [], "source_ip": "2001:DB8:0:0::1"
        }))
        .unwrap();
        assert_eq!(who.source_ip, "2001:db8::1");
        let who = fingerprint_of(serde_json::json!({"method": "GET", "path": "/", "headers": []})).unwrap();
        assert_eq!(who.source_ip, "", "not given");
    }

    #[test]
    fn a_source_ip_that_is_not_an_address_is_refused() {
        let refused = fingerprint_of(serde_json::json!({
            "method": "GET", "path": "/", "headers": [], "source_ip": "example.com"
        }))
        .unwrap_err();
        assert_eq!(refused.code, ErrorCode::InvalidArgument);
        assert_eq!(refused.message, "source_ip must be an IP address");
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
