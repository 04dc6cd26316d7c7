//! `POST /v1/sigv4/verify` and `POST /v1/sigv4/signing-key`.
//!
//! A service forwards the request it received — method, raw path and query, headers in
//! order, and the body or its hash — and learns who signed it. A verification that ran
//! answers 200 with `valid` and, when false, a `code`; its audit event records that code as
//! the outcome. A credential's new caller fingerprint adds a `credential.new_fingerprint`
//! event (source ip and user agent are the fingerprint's: the caller the service saw).
//! The forwarded request's shape and limits are [`forwarded`]'s.
//!
//! No answer carries a secret, except `signing-key`'s derived key of one scope, given only
//! to a caller the policy allows to have it.

use std::sync::Arc;

pub(crate) mod forwarded;

pub use forwarded::MAX_HEADERS;
use forwarded::VerifyRequest;
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::credentials::credential_error;
use super::fingerprint::record_new_fingerprint;
use super::reply::{self, base64, json};
use super::{AppState, audited, authenticate, authorize, method_not_allowed, with_state};
use crate::audit::action::{Action, CREDENTIAL_NEW_FINGERPRINT};
use crate::credentials::{Verification, valid_access_key_id};
use crate::error::ApiError;
use crate::policy::Resource;
use crate::sigv4::{Form, HttpRequest};
use crate::timefmt::rfc3339;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let verify = warp::path!("sigv4" / "verify").and(s()).and(call()).then(verify);
    let signing_key = warp::path!("sigv4" / "signing-key")
        .and(s())
        .and(call())
        .then(signing_key);
    verify.or(signing_key).unify().boxed()
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
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = verify_request(&state, &mut call).await;
    let resource = call.note.resource.take().unwrap_or_else(|| "sigv4".into());
    audited(&state, &mut call, Action::VerifySigV4, resource, result).await
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
    let (payload, who) = forwarded::check(&req)?;
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
        let event = (CREDENTIAL_NEW_FINGERPRINT, format!("credential:{}", new.id));
        record_new_fingerprint(state, decided, &caller.name, event, new, call.note.api).await?;
    }
    Ok(verification_reply(call, &verification))
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

// ----- /v1/sigv4/signing-key -------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningKeyRequest {
    access_key_id: String,
    date: String,
    region: String,
    service: String,
}

async fn signing_key(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
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
    // A key derived for service `kms` would sign requests to this vault's KMS-compatible API
    // as the credential: a verifying gateway never needs it, so nobody gets it.
    if req.service == "kms" {
        return Err(ApiError::new(
            crate::error::ErrorCode::PermissionDenied,
            "no signing key is derived for service kms: it would sign requests to this vault as the credential",
        ));
    }
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
