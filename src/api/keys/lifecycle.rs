//! The signing-key lifecycle handlers — create, list, get, patch, schedule deletion,
//! restore, rotate, import — and their request bodies.
//!
//! Bodies are parsed with `deny_unknown_fields`. Key material arrives only on `import`, is
//! decoded straight into a secret buffer and reaches the trail only as a keyed
//! fingerprint; no handler here answers with material.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use warp::http::StatusCode;
use warp::reply::Response;

use super::super::approvals::require_approval;
use super::super::context::Call;
use super::super::reply::{base64_field, base64_secret, json, parse_json};
use super::super::{AppState, authenticate, authorize, authorize_key, intend};
use super::key_resource;
use super::view::{KeyJson, key_json};
use crate::audit::action::Action;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::keys::model::{Algorithm, Boundary, KeyState};
use crate::keys::{CreateOptions, KeyPatch};
use crate::policy::Resource;
use crate::timefmt::parse_duration;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateKeyRequest {
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
            Some("hsm") => Boundary::Hsm,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "unknown boundary `{other}` (expected process or hsm)"
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
            deletion_allowed: true,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRequest {
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
pub(crate) struct ImportWrappedRequest {
    wrapped_key: String,
    algorithm: Option<String>,
    boundary: Option<String>,
    exportable: Option<bool>,
    auto_rotate_period: Option<String>,
    owner: Option<String>,
    tags: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchRequest {
    state: Option<String>,
    min_verify_version: Option<u32>,
    #[serde(default, deserialize_with = "super::reply::present")]
    auto_rotate_period: Option<Option<String>>,
    exportable: Option<bool>,
    min_encryption_version: Option<u32>,
    deletion_allowed: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmptyRequest {}

fn algorithm(text: &str) -> Result<Algorithm, ApiError> {
    Algorithm::parse(text).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown algorithm `{text}` (expected hmac-sha256, hmac-sha384 or hmac-sha512)"
        ))
    })
}

/// Reads an optional body that must be empty or `{}`.
pub(crate) async fn no_options(state: &AppState, call: &mut Call) -> Result<(), ApiError> {
    let body = call.read_body(state.limits.max_body_bytes).await?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse_json::<EmptyRequest>(&body)?;
    }
    Ok(())
}

pub(super) async fn create_key(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
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
    intend(state, call, Action::CreateKey, "keys").await?;
    let details = state.keys.create(&req.name, opts).await?;
    Ok(json(StatusCode::CREATED, &key_json(details)))
}

pub(super) async fn list_keys(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
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

pub(super) async fn get_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::GetKey, name).await?;
    call.expect_no_body().await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.get(name).await?)))
}

pub(super) async fn patch_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
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
        min_encryption_version: req.min_encryption_version,
        deletion_allowed: req.deletion_allowed,
    };
    intend(state, call, Action::UpdateKey, &key_resource(name)).await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.patch(name, patch).await?)))
}

pub(super) async fn delete_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
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
    // Under dual control a deletion needs the quorum: it ends in the key's destruction.
    require_approval(state, call, &caller, Action::ScheduleKeyDeletion, &key_resource(name)).await?;
    intend(state, call, Action::ScheduleKeyDeletion, &key_resource(name)).await?;
    Ok(json(
        StatusCode::ACCEPTED,
        &key_json(state.keys.schedule_deletion(name, days).await?),
    ))
}

pub(super) async fn restore_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::CancelKeyDeletion, name).await?;
    no_options(state, call).await?;
    intend(state, call, Action::CancelKeyDeletion, &key_resource(name)).await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.restore(name).await?)))
}

pub(super) async fn rotate_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::RotateKey, name).await?;
    no_options(state, call).await?;
    intend(state, call, Action::RotateKey, &key_resource(name)).await?;
    Ok(json(StatusCode::OK, &key_json(state.keys.rotate(name).await?)))
}

pub(super) async fn import_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: ImportRequest = parse_json(&body)?;
    let material = base64_secret("key_material", &req.key_material)?;
    let common = CommonOptions {
        boundary: req.boundary,
        exportable: req.exportable,
        auto_rotate_period: req.auto_rotate_period,
        owner: req.owner,
        tags: req.tags,
    };
    authorize_import(state, call, &caller, Action::ImportKeyPlaintext, name, &common).await?;
    // Under dual control every plaintext import needs the quorum.
    require_approval(state, call, &caller, Action::ImportKeyPlaintext, &key_resource(name)).await?;
    import_material(
        state,
        call,
        &caller,
        Action::ImportKeyPlaintext,
        name,
        material,
        (req.algorithm, common),
    )
    .await
}

/// `POST /v1/keys/{name}/import-wrapped`: material wrapped to the vault's wrapping key
/// (RSA-OAEP-SHA-256 ‖ AES-KWP), opened in the HSM, then imported as `import` does.
pub(super) async fn import_wrapped(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: ImportWrappedRequest = parse_json(&body)?;
    let wrapped = base64_field("wrapped_key", &req.wrapped_key)?;
    let common = CommonOptions {
        boundary: req.boundary,
        exportable: req.exportable,
        auto_rotate_period: req.auto_rotate_period,
        owner: req.owner,
        tags: req.tags,
    };
    let exists = authorize_import(state, call, &caller, Action::ImportKeyWrapped, name, &common).await?;
    // Under dual control a new version of an existing key needs the quorum (a new key does
    // not: nothing it replaces could be taken over).
    if exists {
        require_approval(state, call, &caller, Action::ImportKeyWrapped, &key_resource(name)).await?;
    }
    let material = state.keys.open_wrapped_import(&wrapped).await?;
    import_material(
        state,
        call,
        &caller,
        Action::ImportKeyWrapped,
        name,
        material,
        (req.algorithm, common),
    )
    .await
}

/// Decides an import of `name` as `action`: on the existing key, or on the key as the
/// request would create it. Returns whether the key exists.
async fn authorize_import(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    name: &str,
    common: &CommonOptions,
) -> Result<bool, ApiError> {
    match state.keys.facts(name).await? {
        Some(existing) => {
            let resource = Resource::Key {
                name,
                owner: existing.owner(),
                tags: existing.tags(),
            };
            authorize(state, call, caller, action, &resource).map(|()| true)
        }
        None => {
            let no_tags = BTreeMap::new();
            let resource = Resource::Key {
                name,
                owner: common.owner.as_deref().unwrap_or(&caller.name),
                tags: common.tags.as_ref().unwrap_or(&no_tags),
            };
            authorize(state, call, caller, action, &resource).map(|()| false)
        }
    }
}

/// The part of both imports after authorization: fingerprint the material for the trail,
/// record the intent, import.
async fn import_material(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    name: &str,
    material: crate::secret::SecretBytes,
    (algorithm_name, common): (Option<String>, CommonOptions),
) -> Result<Response, ApiError> {
    // A keyed fingerprint lets an auditor see the same material imported twice; the
    // material itself never reaches the trail.
    call.note.secret_hmac = Some(state.audit.secret_hmac(material.expose_secret()));
    let alg = algorithm_name.as_deref().map(algorithm).transpose()?;
    // Create options apply only when the import creates the key; an existing key refuses them.
    let explicit = !common.is_empty();
    let create = common.into_options(alg.unwrap_or(Algorithm::HmacSha256), None, caller)?;
    intend(state, call, action, &key_resource(name)).await?;
    let (details, _created) = state.keys.import(name, material, alg, create, explicit).await?;
    Ok(json(StatusCode::CREATED, &key_json(details)))
}
