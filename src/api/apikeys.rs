//! `/v1/apikeys…`: bearer API keys — create (the key shown once), read, change, revoke,
//! reroll with a grace period, activity, and verify. Every request is audited with the key's
//! id, never the key; a verification records its code as the outcome, and a caller
//! fingerprint new to the key (`source_ip` / `user_agent`, as the verifying service reports
//! them) adds an `apikey.new_fingerprint` event, durable before the answer.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use zeroize::Zeroizing;

use super::context::{Call, call};
use super::fingerprint::{fingerprints_json, record_new_fingerprint, reported_caller, rule};
use super::reply::{self, json};
use super::{AppState, audited, authenticate, authorize, intend, method_not_allowed, store_error, with_state};
use crate::apikeys::{
    ApiKeyError, ApiKeyRecord, ApiKeyState, Code, Meta, NewApiKey, Patch, STATE_RULE, check_required, valid_id,
};
use crate::audit::action::{APIKEY_NEW_FINGERPRINT, Action};
use crate::auth::Principal;
use crate::clock::{from_unix_ms, unix_ms};
use crate::error::{ApiError, ErrorCode};
use crate::policy::Resource;
use crate::timefmt::{parse_duration, rfc3339};

const MAX_LOGGED_ID: usize = 64;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let verify = warp::path!("apikeys" / "verify").and(s()).and(call()).then(verify);
    let collection = warp::path!("apikeys").and(s()).and(call()).then(collection);
    let one = warp::path!("apikeys" / String).and(s()).and(call()).then(one);
    let reroll = warp::path!("apikeys" / String / "reroll")
        .and(s())
        .and(call())
        .then(reroll);
    let activity = warp::path!("apikeys" / String / "activity")
        .and(s())
        .and(call())
        .then(activity);
    verify
        .or(collection)
        .unify()
        .or(one)
        .unify()
        .or(reroll)
        .unify()
        .or(activity)
        .unify()
        .boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitJson {
    limit: u32,
    period: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    principal: String,
    prefix: Option<String>,
    expires_at: Option<String>,
    remaining: Option<u64>,
    ratelimit: Option<RateLimitJson>,
    #[serde(default)]
    permissions: Vec<String>,
    meta: Option<serde_json::Map<String, serde_json::Value>>,
    on_new_fingerprint: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchRequest {
    state: Option<String>,
    meta: Option<serde_json::Map<String, serde_json::Value>>,
    /// `null` removes the credit limit; absent leaves it.
    #[serde(default, deserialize_with = "reply::present")]
    remaining: Option<Option<u64>>,
    /// `null` returns to the server default; absent leaves it.
    #[serde(default, deserialize_with = "reply::present")]
    on_new_fingerprint: Option<Option<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RerollRequest {
    grace_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest {
    key: Zeroizing<String>,
    #[serde(default)]
    permissions: Vec<String>,
    /// The caller's address as the verifying service saw it (fingerprint).
    source_ip: Option<String>,
    /// The caller's user agent as the verifying service saw it (fingerprint).
    user_agent: Option<String>,
}

#[derive(Serialize)]
struct RateLimitOut {
    limit: u32,
    period: String,
}

#[derive(Serialize)]
pub(crate) struct ApiKeyJson {
    id: String,
    prefix: String,
    principal: String,
    state: &'static str,
    meta: Meta,
    permissions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimit: Option<RateLimitOut>,
    /// The rule in force (the key's own, else the server's).
    on_new_fingerprint: &'static str,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked_at: Option<String>,
}

#[derive(Serialize)]
struct WithKey<'a> {
    key: &'a str,
    #[serde(flatten)]
    details: ApiKeyJson,
}

fn api_key_json(state: &AppState, r: ApiKeyRecord) -> ApiKeyJson {
    let rule = r
        .on_new_fingerprint
        .unwrap_or(state.apikeys.settings().on_new_fingerprint);
    ApiKeyJson {
        state: r.state.as_str(),
        on_new_fingerprint: rule.as_str(),
        expires_at: r.expires_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        remaining: r.remaining,
        ratelimit: r.ratelimit.map(|(limit, period_ms)| RateLimitOut {
            limit,
            period: crate::timefmt::format_duration(time::Duration::milliseconds(period_ms)),
        }),
        created_at: rfc3339(from_unix_ms(r.created_at_ms)),
        updated_at: rfc3339(from_unix_ms(r.updated_at_ms)),
        last_used_at: r.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        revoked_at: r.revoked_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        id: r.id,
        prefix: r.prefix,
        principal: r.principal,
        meta: r.meta,
        permissions: r.permissions,
    }
}

pub(crate) fn api_key_error(e: ApiKeyError) -> ApiError {
    match e {
        ApiKeyError::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        ApiKeyError::Invalid(m) => ApiError::invalid(m),
        ApiKeyError::Store(s) => store_error(s),
        ApiKeyError::Corrupt(m) => ApiError::internal(format!("corrupt API key data: {m}")),
        ApiKeyError::Random => ApiError::internal(e),
    }
}

fn resource_of(id: &str) -> String {
    format!("apikey:{}", id.chars().take(MAX_LOGGED_ID).collect::<String>())
}

// ----- POST /v1/apikeys ---------------------------------------------------------------------

async fn collection(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = create(&state, &mut call).await;
    audited(&state, &mut call, Action::CreateApiKey, "apikeys".into(), result).await
}

async fn create(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: CreateRequest = reply::parse_json(&body)?;
    let resource = Resource::ApiKey {
        id: "",
        principal: &req.principal,
    };
    authorize(state, call, &caller, Action::CreateApiKey, &resource)?;
    let expires_at_ms = req
        .expires_at
        .as_deref()
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(unix_ms)
                .map_err(|_| ApiError::invalid("expires_at must be an RFC 3339 time"))
        })
        .transpose()?;
    let ratelimit = req
        .ratelimit
        .map(|r| {
            parse_duration(&r.period)
                .map(|p| (r.limit, p))
                .map_err(|e| ApiError::invalid(format!("ratelimit.period: {e}")))
        })
        .transpose()?;
    let new = NewApiKey {
        principal: req.principal,
        prefix: req.prefix,
        expires_at_ms,
        remaining: req.remaining,
        ratelimit,
        permissions: req.permissions,
        meta: req.meta,
        on_new_fingerprint: rule(req.on_new_fingerprint.as_deref())?,
    };
    intend(state, call, Action::CreateApiKey, "apikeys").await?;
    let (record, key) = state.apikeys.create(new).await.map_err(api_key_error)?;
    call.note.resource = Some(resource_of(&record.id));
    Ok(json(
        StatusCode::CREATED,
        &WithKey {
            key: key.as_str(),
            details: api_key_json(state, record),
        },
    ))
}

// ----- /v1/apikeys/{id} ---------------------------------------------------------------------

async fn authorize_api_key(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    id: &str,
) -> Result<(), ApiError> {
    let owner = state.apikeys.owner(id).await.map_err(api_key_error)?;
    let resource = Resource::ApiKey {
        id,
        principal: owner.as_deref().unwrap_or(""),
    };
    authorize(state, call, caller, action, &resource)
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no API key has this id"))
    }
}

async fn one(id: String, state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::GetApiKey, get(&state, &mut call, &id).await),
        Method::PATCH => (Action::UpdateApiKey, update(&state, &mut call, &id).await),
        Method::DELETE => (Action::RevokeApiKey, revoke(&state, &mut call, &id).await),
        _ => return reply::error(method_not_allowed(&call, "GET, PATCH, DELETE")),
    };
    audited(&state, &mut call, action, resource_of(&id), result).await
}

async fn get(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_api_key(state, call, &caller, Action::GetApiKey, id).await?;
    call.expect_no_body().await?;
    check_id(id)?;
    let record = state.apikeys.get(id).await.map_err(api_key_error)?;
    Ok(json(StatusCode::OK, &api_key_json(state, record)))
}

async fn update(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_api_key(state, call, &caller, Action::UpdateApiKey, id).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: PatchRequest = reply::parse_json(&body)?;
    check_id(id)?;
    if req.state.is_none() && req.meta.is_none() && req.remaining.is_none() && req.on_new_fingerprint.is_none() {
        return Err(ApiError::invalid(
            "nothing to change: give state, meta, remaining and/or on_new_fingerprint",
        ));
    }
    // Only enabled and disabled can be asked for: revoking is DELETE.
    let new_state = match req.state.as_deref().map(ApiKeyState::parse) {
        None => None,
        Some(Some(s @ (ApiKeyState::Enabled | ApiKeyState::Disabled))) => Some(s),
        Some(Some(ApiKeyState::Revoked) | None) => return Err(ApiError::invalid(STATE_RULE)),
    };
    let patch = Patch {
        state: new_state,
        meta: req.meta,
        remaining: req.remaining,
        on_new_fingerprint: match req.on_new_fingerprint {
            None => None,
            Some(text) => Some(rule(text.as_deref())?),
        },
    };
    intend(state, call, Action::UpdateApiKey, &resource_of(id)).await?;
    let record = state.apikeys.update(id, patch).await.map_err(api_key_error)?;
    Ok(json(StatusCode::OK, &api_key_json(state, record)))
}

async fn revoke(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_api_key(state, call, &caller, Action::RevokeApiKey, id).await?;
    call.expect_no_body().await?;
    check_id(id)?;
    intend(state, call, Action::RevokeApiKey, &resource_of(id)).await?;
    let record = state.apikeys.revoke(id).await.map_err(api_key_error)?;
    Ok(json(StatusCode::OK, &api_key_json(state, record)))
}

async fn reroll(id: String, state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = reroll_key(&state, &mut call, &id).await;
    audited(&state, &mut call, Action::RerollApiKey, resource_of(&id), result).await
}

async fn reroll_key(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_api_key(state, call, &caller, Action::RerollApiKey, id).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: RerollRequest = reply::parse_json(&body)?;
    check_id(id)?;
    let grace = i64::try_from(req.grace_seconds)
        .map(time::Duration::seconds)
        .map_err(|_| ApiError::invalid("grace_seconds is too large"))?;
    intend(state, call, Action::RerollApiKey, &resource_of(id)).await?;
    let (record, key) = state.apikeys.reroll(id, grace).await.map_err(api_key_error)?;
    Ok(json(
        StatusCode::OK,
        &WithKey {
            key: key.as_str(),
            details: api_key_json(state, record),
        },
    ))
}

// ----- GET /v1/apikeys/{id}/activity -----------------------------------------------------------

async fn activity(id: String, state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = read_activity(&state, &mut call, &id).await;
    audited(&state, &mut call, Action::ReadApiKeyActivity, resource_of(&id), result).await
}

async fn read_activity(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_api_key(state, call, &caller, Action::ReadApiKeyActivity, id).await?;
    call.expect_no_body().await?;
    check_id(id)?;
    let a = state.apikeys.activity(id).await.map_err(api_key_error)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "id": id,
            "last_used_at": a.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
            "fingerprints": fingerprints_json(a.fingerprints),
        }),
    ))
}

// ----- POST /v1/apikeys/verify ----------------------------------------------------------------

#[derive(Serialize)]
struct Verified<'a> {
    valid: bool,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    principal: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a Meta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<i64>,
}

async fn verify(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = verify_key(&state, &mut call).await;
    let resource = call.note.resource.take().unwrap_or_else(|| "apikeys".into());
    audited(&state, &mut call, Action::VerifyApiKey, resource, result).await
}

async fn verify_key(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::VerifyApiKey,
        &Resource::Collection("apikeys"),
    )?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: VerifyRequest = reply::parse_json(&body)?;
    check_required(&req.permissions).map_err(api_key_error)?;
    let who = reported_caller(req.source_ip.as_deref(), req.user_agent.as_deref())?;
    let outcome = state
        .apikeys
        .verify(&req.key, &req.permissions, who)
        .await
        .map_err(api_key_error)?;
    let key = outcome.key.as_deref();
    if let Some(k) = key {
        call.note.resource = Some(resource_of(&k.record.id));
    }
    if let Some(new) = &outcome.new_fingerprint {
        let decided = (call.note.decision, call.note.policy.clone());
        let event = (APIKEY_NEW_FINGERPRINT, resource_of(&new.id));
        record_new_fingerprint(state, decided, &caller.name, event, new, call.note.api).await?;
    }
    if outcome.code != Code::Valid {
        call.note.outcome = Some(outcome.code.as_str());
    }
    // A found key's principal and meta are told only with VALID: a caller holding a
    // disabled or expired key learns why, not whose it is.
    let valid = outcome.code == Code::Valid;
    Ok(json(
        StatusCode::OK,
        &Verified {
            valid,
            code: outcome.code.as_str(),
            id: key.map(|k| k.record.id.as_str()),
            principal: key.filter(|_| valid).map(|k| k.record.principal.as_str()),
            meta: key.filter(|_| valid).map(|k| &k.record.meta),
            remaining: outcome.remaining,
            retry_after_ms: outcome.retry_after_ms,
        },
    ))
}
