//! `POST /v1/auth/tokens`, `GET|DELETE /v1/auth/tokens/{id}`, `GET /v1/auth/whoami`, and
//! `POST /v1/sys/policies/reload`. Every request is audited; a token appears only in the
//! answer of its creation, never in the trail or the store.

use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::reply::{self, json};
use super::{AppState, audited, authenticate, authorize, intend, method_not_allowed, store_error, with_state};
use crate::audit::action::Action;
use crate::auth::TokenRecord;
use crate::auth::{NewToken, TokenError};
use crate::clock::from_unix_ms;
use crate::error::{ApiError, ErrorCode};
use crate::policy::Resource;
use crate::timefmt::{parse_duration, rfc3339};

/// The id under which the bootstrap root token can be revoked (`DELETE /v1/auth/tokens/root`).
pub(crate) const ROOT_ID: &str = "root";
/// Longest token id accepted in a path.
const MAX_ID_LEN: usize = 64;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let tokens = warp::path!("auth" / "tokens").and(s()).and(call()).then(tokens);
    let token = warp::path!("auth" / "tokens" / String).and(s()).and(call()).then(token);
    let whoami = warp::path!("auth" / "whoami").and(s()).and(call()).then(whoami);
    let reload = warp::path!("sys" / "policies" / "reload")
        .and(s())
        .and(call())
        .then(reload_policies);
    tokens.or(token).unify().or(whoami).unify().or(reload).unify().boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateTokenRequest {
    principal: String,
    #[serde(default)]
    groups: Vec<String>,
    ttl: Option<String>,
    description: Option<String>,
}

#[derive(Serialize)]
struct TokenJson {
    id: String,
    principal: String,
    groups: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

/// The answer of a creation: the token (its only appearance) and the token's metadata.
#[derive(Serialize)]
struct CreatedJson<'a> {
    token: &'a str,
    #[serde(flatten)]
    details: TokenJson,
}

fn token_json(record: TokenRecord) -> TokenJson {
    TokenJson {
        groups: record.groups,
        id: record.id,
        principal: record.principal,
        description: record.description,
        created_at: rfc3339(from_unix_ms(record.created_at_ms)),
        expires_at: record.expires_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        revoked_at: record.revoked_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::Invalid(m) => ApiError::invalid(m),
        TokenError::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        TokenError::Store(s) => store_error(s),
        TokenError::Random => ApiError::internal(e),
    }
}

async fn tokens(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = create_token(&state, &mut call).await;
    audited(&state, &mut call, Action::CreateToken, "tokens".into(), result).await
}

async fn create_token(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::CreateToken,
        &Resource::Collection("tokens"),
    )?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: CreateTokenRequest = reply::parse_json(&body)?;
    let ttl = req
        .ttl
        .as_deref()
        .map(|t| parse_duration(t).map_err(|e| ApiError::invalid(format!("ttl: {e}"))))
        .transpose()?;
    let new = NewToken {
        principal: req.principal,
        groups: req.groups,
        ttl,
        description: req.description,
    };
    // A request that cannot create a token is refused before its intent is written.
    crate::auth::check_new_token(&new, state.auth_settings.max_token_ttl).map_err(token_error)?;
    intend(state, call, Action::CreateToken, "tokens").await?;
    let (record, token) = state
        .auth
        .create_token(new, state.auth_settings.max_token_ttl)
        .await
        .map_err(token_error)?;
    call.note.resource = Some(format!("token:{}", record.id));
    let created = CreatedJson {
        token: token.expose_secret(),
        details: token_json(record),
    };
    Ok(json(StatusCode::CREATED, &created))
}

async fn token(id: String, state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::ReadToken, read_token(&state, &mut call, &id).await),
        Method::DELETE => (Action::RevokeToken, revoke_token(&state, &mut call, &id).await),
        _ => return reply::error(method_not_allowed(&call, "GET, DELETE")),
    };
    audited(&state, &mut call, action, token_resource(&id), result).await
}

/// `token:<id>` for the audit event (an over-long id cut to the longest valid length).
fn token_resource(id: &str) -> String {
    format!("token:{}", id.chars().take(MAX_ID_LEN).collect::<String>())
}

fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no caller token has this id"))
    }
}

async fn read_token(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::ReadToken, &Resource::Collection("tokens"))?;
    call.expect_no_body().await?;
    check_id(id)?;
    let record = state.auth.get_token(id).await.map_err(token_error)?;
    Ok(json(StatusCode::OK, &token_json(record)))
}

async fn revoke_token(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::RevokeToken,
        &Resource::Collection("tokens"),
    )?;
    call.expect_no_body().await?;
    if id == ROOT_ID {
        intend(state, call, Action::RevokeToken, &token_resource(id)).await?;
        state.auth.revoke_root().await.map_err(token_error)?;
        return Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "id": ROOT_ID,
                "principal": "root",
                "groups": ["admin"],
                "revoked_at": rfc3339(state.clock.now()),
            }),
        ));
    }
    check_id(id)?;
    intend(state, call, Action::RevokeToken, &token_resource(id)).await?;
    let record = state.auth.revoke_token(id).await.map_err(token_error)?;
    Ok(json(StatusCode::OK, &token_json(record)))
}

async fn whoami(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = who(&state, &mut call).await;
    audited(&state, &mut call, Action::WhoAmI, "self".into(), result).await
}

async fn who(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::WhoAmI, &Resource::Collection("self"))?;
    call.expect_no_body().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "principal": caller.name,
            "groups": caller.groups,
            "via": caller.via.as_str(),
        }),
    ))
}

async fn reload_policies(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = reload(&state, &mut call).await;
    audited(&state, &mut call, Action::ReloadPolicies, "policies".into(), result).await
}

async fn reload(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ReloadPolicies,
        &Resource::Collection("policies"),
    )?;
    call.expect_no_body().await?;
    super::approvals::require_approval(state, call, &caller, Action::ReloadPolicies, "policies").await?;
    intend(state, call, Action::ReloadPolicies, "policies").await?;
    match state.policies.reload() {
        Ok(count) => {
            tracing::info!(policies = count, "policies reloaded");
            Ok(json(StatusCode::OK, &serde_json::json!({ "policies": count })))
        }
        Err(errors) => {
            tracing::warn!(errors = %errors, "policy reload refused; the previous set stays in force");
            Err(ApiError::invalid(format!(
                "the policies were not reloaded (the previous set stays in force): {errors}"
            )))
        }
    }
}
