//! The AWS KMS-compatible API: `POST /` (`[compat] kms_path`) with `X-Amz-Target:
//! TrentService.<Operation>` and AWS's JSON 1.1 protocol, so a service that calls AWS KMS
//! through an AWS SDK (boto3, the Java or Go SDK, the CLI) keeps its client and changes only
//! the endpoint and the credential.
//!
//! A request is authenticated by its SigV4 signature with a sigvault credential (service
//! `kms`, any region), verified by the same [`crate::credentials::CredentialService`] as
//! `POST /v1/sigv4/verify`, fingerprints included. The signer is then the credential's
//! principal with the credential's groups, decided by the same Cedar policies and actions as
//! a token holder (`GenerateMac` is `Sign`, `Encrypt` is `Encrypt`, `DescribeKey` is `GetKey`,
//! …) and audited as the native operation with `"api":"aws-kms"`. Errors are KMS's
//! (`{"__type":"NotFoundException","message":…}`, status 400, 500 for the vault's own).

mod ops;

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::context::{Call, call, request_id};
use super::credentials::credential_error;
use super::fingerprint::record_new_fingerprint;
use super::{AppState, audited_as, with_state};
use crate::audit::action::CREDENTIAL_NEW_FINGERPRINT;
use crate::auth::{Principal, Via};
use crate::credentials::valid_access_key_id;
use crate::error::{ApiError, ErrorCode};
use crate::fingerprint::Fingerprint;
use crate::sigv4::HttpRequest;

/// The `api` member of this API's audit events.
pub(crate) const API: &str = "aws-kms";
/// The account id in the ARNs sigvault hands out (it has no AWS account).
pub(crate) const ACCOUNT: &str = "000000000000";
/// KMS's content type, answers included.
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Checks the path the KMS-compatible API is served at: `/`, or `/` and one to four segments
/// of `[A-Za-z0-9._-]` whose first is not `v1`.
pub fn validate_path(path: &str) -> Result<(), String> {
    if path == "/" {
        return Ok(());
    }
    let rest = path.strip_prefix('/').ok_or("must start with /")?;
    let segments = super::path_segments(rest)?;
    if segments.first() == Some(&"v1") {
        return Err("the native API is under /v1".into());
    }
    Ok(())
}

/// A KMS error: its `__type` and the sigvault error behind it (whose code the audit event
/// records).
pub(crate) struct KmsError {
    kind: &'static str,
    error: ApiError,
}

impl KmsError {
    pub(crate) fn new(kind: &'static str, error: ApiError) -> Self {
        Self { kind, error }
    }

    /// A KMS error of `kind` for a request the caller can fix.
    pub(crate) fn invalid(kind: &'static str, message: impl Into<String>) -> Self {
        Self::new(kind, ApiError::invalid(message))
    }
}

impl From<ApiError> for KmsError {
    fn from(error: ApiError) -> Self {
        Self {
            kind: kind_of(error.code),
            error,
        }
    }
}

impl From<crate::keys::KeyError> for KmsError {
    fn from(e: crate::keys::KeyError) -> Self {
        ApiError::from(e).into()
    }
}

/// KMS's exception for a sigvault code.
fn kind_of(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidArgument | ErrorCode::PayloadTooLarge | ErrorCode::RequestTimeout => "ValidationException",
        ErrorCode::Unauthenticated => "UnrecognizedClientException",
        ErrorCode::PermissionDenied | ErrorCode::ApprovalRequired => "AccessDeniedException",
        ErrorCode::KeyNotFound | ErrorCode::NotFound | ErrorCode::CredentialNotFound => "NotFoundException",
        ErrorCode::FailedPrecondition => "KMSInvalidStateException",
        ErrorCode::AlreadyExists => "AlreadyExistsException",
        ErrorCode::RateLimited => "ThrottlingException",
        ErrorCode::MethodNotAllowed => "UnsupportedOperationException",
        ErrorCode::KekUnavailable | ErrorCode::StoreUnavailable | ErrorCode::AuditUnavailable => {
            "DependencyTimeoutException"
        }
        ErrorCode::IntegrityError | ErrorCode::Internal => "KMSInternalException",
    }
}

/// `{"__type","message"}` with KMS's status: 400 for the caller's errors, 503 when a
/// dependency (HSM, store, trail) does not answer, 500 for the rest. Server-side causes are
/// logged, never shown.
fn render(kind: &'static str, err: &ApiError) -> Response {
    if err.code.status().is_server_error() {
        tracing::error!(request_id = %request_id(), code = err.code.as_str(), detail = err.detail.as_deref().unwrap_or(""), "request failed");
    }
    let status = match err.code.status() {
        s if s == StatusCode::SERVICE_UNAVAILABLE => s,
        s if s.is_server_error() => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "__type")]
        kind: &'a str,
        message: String,
    }
    let mut response = answer(
        status,
        &Body {
            kind,
            message: format!("{}: {}", err.code.as_str(), err.message),
        },
    );
    if let Some(seconds) = err.retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// The renderer `audited_as` uses for the errors it makes itself (the trail's).
fn render_api_error(err: ApiError) -> Response {
    render(kind_of(err.code), &err)
}

/// A JSON 1.1 answer with the request id as AWS names it.
pub(crate) fn answer<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = super::reply::json(status, body);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(id) = HeaderValue::from_str(&request_id()) {
        response.headers_mut().insert("x-amzn-requestid", id);
    }
    response
}

/// `<kms_path>` with an `X-Amz-Target` header; rejects (falls through to the native API's
/// 404) any other path, and a request without the header: only a KMS client's request is
/// KMS's to answer.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path::full()
        .and(warp::header::optional::<String>("x-amz-target"))
        .and(with_state(state))
        .and_then(
            |full: warp::path::FullPath, target: Option<String>, state: Arc<AppState>| async move {
                if target.is_some() && state.kms_path.as_deref() == Some(full.as_str()) {
                    Ok((full.as_str().to_owned(), state))
                } else {
                    Err(warp::reject::not_found())
                }
            },
        )
        .untuple_one()
        .and(call())
        .then(dispatch)
        .boxed()
}

async fn dispatch(path: String, state: Arc<AppState>, mut call: Call) -> Response {
    call.note.api = Some(API);
    let target = call
        .header("x-amz-target")
        .and_then(|t| t.strip_prefix("TrentService."))
        .map(str::to_owned);
    let operation = target.as_deref().and_then(ops::Operation::parse);
    let Some(operation) = operation else {
        // Not a KMS operation: no key was touched, so nothing to audit (as an unknown route).
        return render(
            "UnknownOperationException",
            &ApiError::new(ErrorCode::NotFound, "unknown or missing X-Amz-Target operation"),
        );
    };
    let action = operation.action();
    let result = if call.method == Method::POST {
        ops::run(&state, &mut call, &path, operation).await
    } else {
        Err(KmsError::new(
            "UnsupportedOperationException",
            ApiError::new(ErrorCode::MethodNotAllowed, "KMS takes POST only"),
        ))
    };
    // A KMS error is answered in KMS's shape; the event records its sigvault code.
    let result = result.or_else(|e| {
        call.note.outcome = Some(e.error.code.as_str());
        if call.note.decision == crate::audit::event::Decision::Undecided && e.error.code == ErrorCode::Unauthenticated
        {
            call.note.decision = crate::audit::event::Decision::Deny;
        }
        Ok::<_, ApiError>(render(e.kind, &e.error))
    });
    let resource = call.note.resource.take().unwrap_or_else(|| "kms".to_owned());
    audited_as(&state, &mut call, (action, resource), result, render_api_error).await
}

/// The signer of a KMS request: its SigV4 signature verified against the credential it
/// names (service `kms`), the credential's principal and groups, and the region it was
/// signed for. `body` is the whole body.
pub(crate) async fn signer(
    state: &AppState,
    call: &mut Call,
    path: &str,
    body: &[u8],
) -> Result<(Principal, String), KmsError> {
    if !state.store_health.serving() {
        return Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store does not answer (store.serve_cached_when_unavailable is off)",
        )
        .into());
    }
    // Failed signatures count against the source address and the access key id they name,
    // as failed tokens do: past the limit, the address waits (`ThrottlingException`).
    let source = call.client.map(|a| a.ip());
    let limited_as = format!(
        "sigv4:{}",
        credential_of(call.header("authorization").unwrap_or_default())
    );
    if let Some(ip) = source
        && let Some(seconds) = state.auth.failures_blocked(ip, &limited_as).await
    {
        state
            .http_metrics
            .auth_limited
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Err(KmsError::new(
            "ThrottlingException",
            ApiError::new(
                ErrorCode::RateLimited,
                "too many failed signatures from this address: try again later",
            )
            .retry_after(seconds),
        ));
    }
    let result = verified_signer(state, call, path, body).await;
    if let (Err(e), Some(ip)) = (&result, source)
        && e.error.code == ErrorCode::Unauthenticated
    {
        state.auth.failed(ip, &limited_as).await;
    }
    result
}

/// The access key id an `Authorization` header names (`Credential=<id>/…`), or "" — only to
/// count failures by, never trusted.
fn credential_of(authorization: &str) -> &str {
    authorization
        .split_once("Credential=")
        .and_then(|(_, rest)| rest.split('/').next())
        .map(str::trim)
        .filter(|id| valid_access_key_id(id))
        .unwrap_or_default()
}

/// [`signer`] past the failure limit.
async fn verified_signer(
    state: &AppState,
    call: &mut Call,
    path: &str,
    body: &[u8],
) -> Result<(Principal, String), KmsError> {
    let headers: Vec<(Cow<'_, str>, Cow<'_, str>)> = call
        .headers
        .iter()
        .filter_map(|(name, value)| Some((Cow::Borrowed(name.as_str()), Cow::Borrowed(value.to_str().ok()?))))
        .collect();
    let payload = base16ct::lower::encode_string(&Sha256::digest(body));
    // The signature must cover this body: a declared payload hash other than the body's
    // (`UNSIGNED-PAYLOAD`, a streaming form) would let a replayed signature carry any body.
    if let Some(declared) = call.header("x-amz-content-sha256")
        && !declared.eq_ignore_ascii_case(&payload)
    {
        return Err(KmsError::new(
            "IncompleteSignatureException",
            ApiError::new(
                ErrorCode::Unauthenticated,
                "x-amz-content-sha256 must be the body's SHA-256: a KMS request's signature covers its body",
            ),
        ));
    }
    let request = HttpRequest {
        method: "POST",
        path,
        query: &call.query,
        headers: &headers,
        payload_sha256: Some(&payload),
    };
    let who = Fingerprint {
        source_ip: call
            .client
            .map(|a| crate::model::audit::ip_text(a.ip()))
            .unwrap_or_default(),
        user_agent: call.header("user-agent").unwrap_or_default().to_owned(),
    };
    let verification = state
        .credentials
        .verify(&request, who, None)
        .await
        .map_err(|e| KmsError::from(credential_error(e)))?;
    drop(headers);
    // A caller fingerprint new to the credential is recorded whatever the verdict, as
    // `POST /v1/sigv4/verify` records it (reported by the credential itself here).
    if let Some(new) = &verification.new_fingerprint {
        let decided = (call.note.decision, call.note.policy.clone());
        let event = (CREDENTIAL_NEW_FINGERPRINT, format!("credential:{}", new.id));
        let reporter = verification
            .access_key_id
            .as_deref()
            .filter(|id| valid_access_key_id(id))
            .map_or_else(|| "-".to_owned(), |id| format!("credential:{id}"));
        record_new_fingerprint(state, decided, &reporter, event, new, Some(API)).await?;
    }
    let verified = match verification.result {
        Ok(v) => v,
        Err(rejection) => {
            let code = rejection.code();
            let kind = match code {
                "UNKNOWN_ACCESS_KEY" | "INACTIVE_ACCESS_KEY" => "UnrecognizedClientException",
                "SIGNATURE_MISMATCH" | "REQUEST_EXPIRED" | "REQUEST_NOT_YET_VALID" => "InvalidSignatureException",
                "MISSING_AUTHORIZATION" => "MissingAuthenticationTokenException",
                _ => "IncompleteSignatureException",
            };
            return Err(KmsError::new(
                kind,
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    format!("the request's signature was refused: {code}"),
                ),
            ));
        }
    };
    // The header form only (a presigned URL would be a bearer credential for days), with the
    // operation and the host under the signature.
    if verified.form != crate::sigv4::Form::Header
        || !["host", "x-amz-target"]
            .iter()
            .all(|h| verified.signed_headers.iter().any(|s| s == h))
    {
        return Err(KmsError::new(
            "IncompleteSignatureException",
            ApiError::new(
                ErrorCode::Unauthenticated,
                "sign KMS requests in the Authorization header, with host and x-amz-target among the signed headers",
            ),
        ));
    }
    if verified.scope.service != "kms" {
        return Err(KmsError::new(
            "InvalidSignatureException",
            ApiError::new(
                ErrorCode::Unauthenticated,
                "the credential scope names another service: sign for service kms",
            ),
        ));
    }
    call.note.principal = Some(verified.principal.clone());
    let principal = Principal {
        name: verified.principal,
        groups: verified.groups,
        via: Via::Token,
    };
    // The region the request was signed for goes into the ARNs of the answer.
    Ok((principal, verified.scope.region))
}
