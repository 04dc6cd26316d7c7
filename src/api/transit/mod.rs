//! The Vault Transit-compatible API: HashiCorp Vault's Transit engine routes under a mount
//! (`/v1/transit/…` by default, `[compat] transit_mount`), so a service that calls Vault
//! through hvac or another Vault client keeps its client and changes only the address and
//! the token.
//!
//! The routes are a second face of the same keys: the same [`crate::keys::KeyService`], the
//! same Cedar actions (a Transit `hmac` is `Sign`, `keys/{name}/config` is `UpdateKey`, …),
//! the same audit events with `"api":"vault-transit"`. What differs is only the shape:
//! Vault's envelope (`{"request_id",…,"data":{…}}`), its `vault:v<N>:` prefixes, its
//! `batch_input` / `batch_results`, its error body `{"errors":[…]}` and status codes, and
//! the token in `X-Vault-Token`. Where Vault would do something sigvault does not (key
//! derivation, convergent encryption, plaintext export, asymmetric keys, creating a key on
//! first encrypt), the request is refused with a 400 that says so; docs/API.md lists each.

mod crypto;
mod keys;

use std::sync::Arc;

use serde::Serialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::context::{Call, call, request_id};
use super::keys::key_resource;
use super::{AppState, audited_as, with_state};
use crate::audit::action::Action;
use crate::error::{ApiError, ErrorCode};

/// The `api` member of this API's audit events.
pub(crate) const API: &str = "vault-transit";

/// Top-level segments of the native API under `/v1`: a Transit mount may not take one.
const NATIVE_SEGMENTS: &[&str] = &[
    "keys",
    "audit",
    "sigv4",
    "apikeys",
    "credentials",
    "auth",
    "reports",
    "kek",
    "wrapping-key",
    "approvals",
    "sys",
    "openapi.json",
];

/// Checks a mount path: one to four `/`-separated segments of `[A-Za-z0-9._-]`, none only
/// dots, the first not a native route's.
pub fn validate_mount(mount: &str) -> Result<(), String> {
    let segments = super::path_segments(mount)?;
    if segments.first().is_some_and(|first| NATIVE_SEGMENTS.contains(first)) {
        return Err("the first segment is a route of the native API".into());
    }
    Ok(())
}

/// `/v1/<mount>/…`; rejects (falls through to the next route) anything outside the mount.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path::tail()
        .and(with_state(state))
        .and_then(|tail: warp::path::Tail, state: Arc<AppState>| async move {
            let rest = state
                .transit_mount
                .as_deref()
                .and_then(|mount| tail.as_str().strip_prefix(mount))
                .and_then(|rest| {
                    if rest.is_empty() {
                        Some("")
                    } else {
                        rest.strip_prefix('/')
                    }
                })
                .map(str::to_owned);
            match rest {
                Some(rest) => Ok((rest, state)),
                None => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(call())
        .then(dispatch)
        .boxed()
}

/// The `LIST` method Vault clients send for listings.
fn is_list(method: &Method) -> bool {
    method.as_str() == "LIST"
}

async fn dispatch(rest: String, state: Arc<AppState>, mut call: Call) -> Response {
    call.note.api = Some(API);
    token_from_vault_header(&mut call);
    let segments: Vec<&str> = rest.split('/').collect();
    let route = match segments.as_slice() {
        // Vault clients list with `LIST` or `GET ?list=true`; a plain `GET` lists too.
        ["keys"] | ["keys", ""] => match &call.method {
            m if is_list(m) || *m == Method::GET => Route::List,
            _ => return error(method_not_allowed()),
        },
        ["keys", name] if !name.is_empty() => match call.method {
            Method::POST | Method::PUT => Route::Create(name),
            Method::GET => Route::Read(name),
            Method::DELETE => Route::Delete(name),
            _ => return error(method_not_allowed()),
        },
        ["keys", name, "rotate"] => Route::Rotate(name),
        ["keys", name, "config"] => Route::Config(name),
        ["hmac", name] => Route::Hmac(name, None),
        ["hmac", name, algorithm] => Route::Hmac(name, Some(algorithm)),
        ["verify", name] => Route::Verify(name, None),
        ["verify", name, algorithm] => Route::Verify(name, Some(algorithm)),
        ["encrypt", name] => Route::Encrypt(name),
        ["decrypt", name] => Route::Decrypt(name),
        ["rewrap", name] => Route::Rewrap(name),
        ["datakey", kind @ ("plaintext" | "wrapped"), name] => Route::DataKey(name, *kind == "plaintext"),
        _ => return error(ApiError::new(ErrorCode::NotFound, "unsupported path")),
    };
    // Everything but a key's read, delete and the listing is a write (POST or PUT).
    let write = !matches!(
        route,
        Route::List | Route::Read(_) | Route::Delete(_) | Route::Create(_)
    );
    if write && call.method != Method::POST && call.method != Method::PUT {
        return error(method_not_allowed());
    }
    let (action, resource, result) = match route {
        Route::List => (Action::ListKeys, "keys".to_owned(), keys::list(&state, &mut call).await),
        Route::Create(name) => (
            Action::CreateKey,
            key_resource(name),
            keys::create(&state, &mut call, name).await,
        ),
        Route::Read(name) => (
            Action::GetKey,
            key_resource(name),
            keys::read(&state, &mut call, name).await,
        ),
        Route::Delete(name) => (
            Action::ScheduleKeyDeletion,
            key_resource(name),
            keys::delete(&state, &mut call, name).await,
        ),
        Route::Rotate(name) => (
            Action::RotateKey,
            key_resource(name),
            keys::rotate(&state, &mut call, name).await,
        ),
        Route::Config(name) => (
            Action::UpdateKey,
            key_resource(name),
            keys::config(&state, &mut call, name).await,
        ),
        Route::Hmac(name, algorithm) => (
            Action::Sign,
            key_resource(name),
            crypto::hmac(&state, &mut call, name, algorithm).await,
        ),
        Route::Verify(name, algorithm) => (
            Action::Verify,
            key_resource(name),
            crypto::verify(&state, &mut call, name, algorithm).await,
        ),
        Route::Encrypt(name) => (
            Action::Encrypt,
            key_resource(name),
            crypto::encrypt(&state, &mut call, name).await,
        ),
        Route::Decrypt(name) => (
            Action::Decrypt,
            key_resource(name),
            crypto::decrypt(&state, &mut call, name).await,
        ),
        Route::Rewrap(name) => (
            Action::ReEncrypt,
            key_resource(name),
            crypto::rewrap(&state, &mut call, name).await,
        ),
        Route::DataKey(name, plaintext) => (
            Action::GenerateDataKey,
            key_resource(name),
            crypto::data_key(&state, &mut call, name, plaintext).await,
        ),
    };
    audited_as(&state, &mut call, (action, resource), result, error).await
}

enum Route<'a> {
    List,
    Create(&'a str),
    Read(&'a str),
    Delete(&'a str),
    Rotate(&'a str),
    Config(&'a str),
    Hmac(&'a str, Option<&'a str>),
    Verify(&'a str, Option<&'a str>),
    Encrypt(&'a str),
    Decrypt(&'a str),
    Rewrap(&'a str),
    DataKey(&'a str, bool),
}

/// Vault clients send their token as `X-Vault-Token`; it is the caller token of a bearer
/// `Authorization` header that the request does not carry already.
fn token_from_vault_header(call: &mut Call) {
    if call.headers.contains_key(header::AUTHORIZATION) {
        return;
    }
    let bearer = call
        .headers
        .get("x-vault-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok());
    if let Some(bearer) = bearer {
        call.headers.insert(header::AUTHORIZATION, bearer);
    }
}

fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "unsupported operation")
}

/// Vault's answer envelope around `data`.
pub(super) fn data<T: Serialize>(body: &T) -> Response {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        request_id: String,
        lease_id: &'static str,
        renewable: bool,
        lease_duration: u32,
        data: &'a T,
        wrap_info: Option<()>,
        warnings: Option<()>,
        auth: Option<()>,
    }
    super::reply::json(
        StatusCode::OK,
        &Envelope {
            request_id: request_id(),
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: body,
            wrap_info: None,
            warnings: None,
            auth: None,
        },
    )
}

/// 204, as Vault answers a delete.
pub(super) fn no_content() -> Response {
    let mut response = Response::new(Vec::new().into());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// Vault's status for an error: 400 for what the caller can fix (Vault answers a missing
/// key, a refused version or a disabled key with 400 too), 403 for a missing, unknown or
/// refused token, and the native status for the rest (404, 405, 413, 429, 5xx).
fn vault_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::Unauthenticated | ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::InvalidArgument
        | ErrorCode::FailedPrecondition
        | ErrorCode::AlreadyExists
        | ErrorCode::KeyNotFound => StatusCode::BAD_REQUEST,
        other => other.status(),
    }
}

/// `{"errors":["<message>"]}` with Vault's status, and the native headers (`Retry-After`,
/// `Allow`). Server-side causes are logged, never shown, as for the native API.
pub(crate) fn error(err: ApiError) -> Response {
    if err.code.status().is_server_error() {
        tracing::error!(request_id = %request_id(), code = err.code.as_str(), detail = err.detail.as_deref().unwrap_or(""), "request failed");
    }
    // The stable code leads the message: Vault clients show the message, and scripts can
    // match the code as they do on the native API.
    let message = format!("{}: {}", err.code.as_str(), err.message);
    let mut response = super::reply::json(vault_status(err.code), &serde_json::json!({ "errors": [message] }));
    if let Some(seconds) = err.retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Some(methods) = err.allow {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(methods));
    }
    response
}

/// A key's read as `keys/{name}` answers it (and create, rotate and config, as Vault does).
pub(super) async fn key_answer(state: &AppState, name: &str) -> Result<Response, ApiError> {
    let details = state.keys.get(name).await?;
    Ok(data(&keys::KeyData::from(&details)))
}
