//! `/v1/keys…`: signing-key lifecycle, sign and verify (single and batch).
//!
//! Request bodies are parsed with `deny_unknown_fields`; key material arrives only on
//! `import`, is decoded straight into a secret buffer, and the body buffer holding it is
//! zeroized. Responses never carry material.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

mod sign;
use sign::{sign_message, verify_message};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::reply::{self, base64_secret, json, parse_json};
use super::{AppState, audited, authenticate, authorize, authorize_key, method_not_allowed, with_state};
use crate::audit::action::Action;
use crate::auth::Principal;
use crate::clock::from_unix_ms;
use crate::error::ApiError;
use crate::keys::model::{Algorithm, Boundary, KeyState};
use crate::keys::{CreateOptions, KeyDetails, KeyPatch};
use crate::policy::Resource;
use crate::timefmt::{format_duration, parse_duration, rfc3339};

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// `/v1/keys`, `/v1/keys/{name}` and `/v1/keys/{name}/{action}`, dispatched once on the
/// path tail (the hot sign/verify routes should not pay for trying routes one by one).
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path("keys")
        .and(warp::path::tail())
        .and(with_state(state))
        .and(call())
        .then(dispatch)
        .boxed()
}

async fn dispatch(tail: warp::path::Tail, state: Arc<AppState>, call: Call) -> Response {
    let mut segments = tail.as_str().split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (None | Some(""), None, None) => collection(state, call).await,
        (Some(name), None, None) => item(name.to_owned(), state, call).await,
        (Some(name), Some(action_name), None) if !name.is_empty() => {
            action(name.to_owned(), action_name.to_owned(), state, call).await
        }
        _ => reply::error(ApiError::new(crate::error::ErrorCode::NotFound, "no such route")),
    }
}

async fn collection(state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::ListKeys, list_keys(&state, &mut call).await),
        Method::POST => (Action::CreateKey, create_key(&state, &mut call).await),
        _ => return reply::error(method_not_allowed(&call)),
    };
    audited(&state, &mut call, action, "keys".into(), result).await
}

async fn item(name: String, state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::GetKey, get_key(&state, &mut call, &name).await),
        Method::PATCH => (Action::UpdateKey, patch_key(&state, &mut call, &name).await),
        Method::DELETE => (Action::ScheduleKeyDeletion, delete_key(&state, &mut call, &name).await),
        _ => return reply::error(method_not_allowed(&call)),
    };
    audited(&state, &mut call, action, key_resource(&name), result).await
}

async fn action(name: String, action: String, state: Arc<AppState>, mut call: Call) -> Response {
    let action = match action.as_str() {
        "rotate" => Action::RotateKey,
        "restore" => Action::CancelKeyDeletion,
        "import" => Action::ImportKeyPlaintext,
        "sign" => Action::Sign,
        "verify" => Action::Verify,
        _ => return reply::error(ApiError::new(crate::error::ErrorCode::NotFound, "no such route")),
    };
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call));
    }
    let result = match action {
        Action::RotateKey => rotate_key(&state, &mut call, &name).await,
        Action::CancelKeyDeletion => restore_key(&state, &mut call, &name).await,
        Action::ImportKeyPlaintext => import_key(&state, &mut call, &name).await,
        Action::Sign => sign_message(&state, &mut call, &name).await,
        _ => verify_message(&state, &mut call, &name).await,
    };
    audited(&state, &mut call, action, key_resource(&name), result).await
}

/// `key:<name>` for the audit event; a name that is not a valid key name (it will be
/// refused) is not copied into the trail.
fn key_resource(name: &str) -> String {
    match crate::keys::model::validate_name(name) {
        Ok(()) => format!("key:{name}"),
        Err(_) => "key:<invalid name>".into(),
    }
}

// ----- request and response shapes -----------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyRequest {
    name: String,
    algorithm: String,
    key_size: Option<usize>,
    boundary: Option<String>,
    exportable: Option<bool>,
    auto_rotate_period: Option<String>,
    owner: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

/// The create options that `import` accepts too. (Not a `#[serde(flatten)]` of the
/// requests: serde cannot deny unknown fields through a flatten.)
#[derive(Default)]
struct CommonOptions {
    boundary: Option<String>,
    exportable: Option<bool>,
    auto_rotate_period: Option<String>,
    owner: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

impl CommonOptions {
    fn is_empty(&self) -> bool {
        self.boundary.is_none()
            && self.exportable.is_none()
            && self.auto_rotate_period.is_none()
            && self.owner.is_none()
            && self.tags.is_none()
    }

    fn into_options(
        self,
        algorithm: Algorithm,
        key_size: Option<usize>,
        caller: &Principal,
    ) -> Result<CreateOptions, ApiError> {
        let boundary = match self.boundary.as_deref() {
            None | Some("process") => Boundary::Process,
            Some("hsm") => {
                return Err(ApiError::invalid(
                    "boundary `hsm` is not available on this server yet; use `process`",
                ));
            }
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "unknown boundary `{other}` (expected process)"
                )));
            }
        };
        let auto_rotate_period = self
            .auto_rotate_period
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| ApiError::invalid(format!("auto_rotate_period: {e}")))?;
        Ok(CreateOptions {
            algorithm,
            key_size,
            boundary,
            exportable: self.exportable.unwrap_or(false),
            auto_rotate_period,
            owner: self.owner.unwrap_or_else(|| caller.name.clone()),
            tags: self.tags.unwrap_or_default(),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    key_material: zeroize::Zeroizing<String>,
    algorithm: Option<String>,
    boundary: Option<String>,
    exportable: Option<bool>,
    auto_rotate_period: Option<String>,
    owner: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchRequest {
    state: Option<String>,
    min_verify_version: Option<u32>,
    #[serde(default, deserialize_with = "super::reply::present")]
    auto_rotate_period: Option<Option<String>>,
    exportable: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyRequest {}

#[derive(Serialize)]
struct KeyJson {
    name: String,
    algorithm: &'static str,
    boundary: &'static str,
    owner: String,
    tags: BTreeMap<String, String>,
    state: &'static str,
    latest_version: u32,
    min_verify_version: u32,
    exportable: bool,
    auto_rotate_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_due_at: Option<String>,
    created_at: String,
    versions: Vec<VersionJson>,
}

#[derive(Serialize)]
struct VersionJson {
    version: u32,
    created_at: String,
    sign_count: u64,
    verify_count: u64,
    last_used_at: Option<String>,
}

fn key_json(d: KeyDetails) -> KeyJson {
    let r = d.record;
    KeyJson {
        auto_rotate_period: r
            .auto_rotate_period_s
            .map(|s| format_duration(time::Duration::seconds(s))),
        deletion_due_at: r.deletion_due_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        created_at: rfc3339(from_unix_ms(r.created_at_ms)),
        versions: d
            .versions
            .into_iter()
            .map(|v| VersionJson {
                version: v.version,
                created_at: rfc3339(from_unix_ms(v.created_at_ms)),
                sign_count: v.sign_count,
                verify_count: v.verify_count,
                last_used_at: v.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
            })
            .collect(),
        name: r.name,
        algorithm: r.algorithm.as_str(),
        boundary: r.boundary.as_str(),
        owner: r.owner,
        tags: r.tags,
        state: r.state.as_str(),
        latest_version: r.latest_version,
        min_verify_version: r.min_verify_version,
        exportable: r.exportable,
    }
}

fn algorithm(text: &str) -> Result<Algorithm, ApiError> {
    Algorithm::parse(text).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown algorithm `{text}` (expected hmac-sha256, hmac-sha384 or hmac-sha512)"
        ))
    })
}

/// Reads an optional body that must be empty or `{}`.
async fn no_options(state: &AppState, call: &mut Call) -> Result<(), ApiError> {
    let body = call.read_body(state.limits.max_body_bytes).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse_json::<EmptyRequest>(&body)?;
    }
    Ok(())
}

// ----- lifecycle handlers ---------------------------------------------------------------

async fn create_key(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: CreateKeyRequest = parse_json(&body)?;
    call.note.resource = Some(key_resource(&req.name));
    let no_tags = BTreeMap::new();
    let resource = Resource::Key {
        name: &req.name,
        owner: req.owner.as_deref().unwrap_or(&caller.name),
        tags: req.tags.as_ref().unwrap_or(&no_tags),
    };
    authorize(state, call, &caller, Action::CreateKey, &resource)?;
    let common = CommonOptions {
        boundary: req.boundary,
        exportable: req.exportable,
        auto_rotate_period: req.auto_rotate_period,
        owner: req.owner,
        tags: req.tags,
    };
    let opts = common.into_options(algorithm(&req.algorithm)?, req.key_size, &caller)?;
    let details = state.keys.create(&req.name, opts).await?;
    Ok(json(StatusCode::CREATED, &key_json(details)))
}

async fn list_keys(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::ListKeys, &Resource::Collection("keys"))?;
    call.expect_no_body().await?;
    let limit = call.page_limit(DEFAULT_PAGE, MAX_PAGE)?;
    let after = match call.query_param("cursor")?.filter(|c| !c.is_empty()) {
        None => None,
        Some(cursor) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .ok_or_else(|| ApiError::invalid("cursor is not one this server issued"))?,
        ),
    };
    let page = state.keys.list(after.as_deref(), limit).await?;
    let next = (page.len() == limit as usize)
        .then(|| {
            page.last()
                .map(|k| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&k.record.name))
        })
        .flatten();
    let keys: Vec<KeyJson> = page.into_iter().map(key_json).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "keys": keys, "next": next })))
}

async fn get_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::GetKey, name).await?;
    call.expect_no_body().await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.get(name).await?)))
}

async fn patch_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::UpdateKey, name).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: PatchRequest = parse_json(&body)?;
    let state_change = match req.state.as_deref() {
        None => None,
        Some("enabled") => Some(KeyState::Enabled),
        Some("disabled") => Some(KeyState::Disabled),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "state `{other}` cannot be set (expected enabled or disabled)"
            )));
        }
    };
    let auto_rotate_period = match req.auto_rotate_period {
        None => None,
        Some(None) => Some(None),
        Some(Some(text)) => Some(Some(
            parse_duration(&text).map_err(|e| ApiError::invalid(format!("auto_rotate_period: {e}")))?,
        )),
    };
    let patch = KeyPatch {
        state: state_change,
        min_verify_version: req.min_verify_version,
        auto_rotate_period,
        exportable: req.exportable,
    };
    Ok(json(StatusCode::OK, &key_json(state.keys.patch(name, patch).await?)))
}

async fn delete_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::ScheduleKeyDeletion, name).await?;
    call.expect_no_body().await?;
    let days = call
        .query_param("pending_days")?
        .map(|d| {
            d.parse::<u32>()
                .map_err(|_| ApiError::invalid("pending_days must be a whole number of days"))
        })
        .transpose()?;
    Ok(json(
        StatusCode::ACCEPTED,
        &key_json(state.keys.schedule_deletion(name, days).await?),
    ))
}

async fn restore_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::CancelKeyDeletion, name).await?;
    no_options(state, call).await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.restore(name).await?)))
}

async fn rotate_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::RotateKey, name).await?;
    no_options(state, call).await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.rotate(name).await?)))
}

async fn import_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: ImportRequest = parse_json(&body)?;
    let material = base64_secret("key_material", &req.key_material)?;
    match state.keys.facts(name).await? {
        Some(existing) => {
            let resource = Resource::Key {
                name,
                owner: existing.owner(),
                tags: existing.tags(),
            };
            authorize(state, call, &caller, Action::ImportKeyPlaintext, &resource)?;
        }
        None => {
            let no_tags = BTreeMap::new();
            let resource = Resource::Key {
                name,
                owner: req.owner.as_deref().unwrap_or(&caller.name),
                tags: req.tags.as_ref().unwrap_or(&no_tags),
            };
            authorize(state, call, &caller, Action::ImportKeyPlaintext, &resource)?;
        }
    }
    // A keyed fingerprint lets an auditor see the same material imported twice; the
    // material itself never reaches the trail.
    call.note.secret_hmac = Some(state.audit.secret_hmac(material.expose_secret()));
    let alg = req.algorithm.as_deref().map(algorithm).transpose()?;
    let common = CommonOptions {
        boundary: req.boundary,
        exportable: req.exportable,
        auto_rotate_period: req.auto_rotate_period,
        owner: req.owner,
        tags: req.tags,
    };
    // Create options apply only when the import creates the key; an existing key refuses them.
    let explicit = !common.is_empty();
    let create = common.into_options(alg.unwrap_or(Algorithm::HmacSha256), None, &caller)?;
    let (details, _created) = state.keys.import(name, material, alg, create, explicit).await?;
    Ok(json(StatusCode::CREATED, &key_json(details)))
}
