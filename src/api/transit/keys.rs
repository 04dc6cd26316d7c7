//! Transit's key routes: create (`POST keys/{name}`), read, list (`LIST keys`), rotate,
//! config, delete. Each is the native operation on the same key, decided by the same
//! action.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use warp::reply::Response;

use super::super::approvals::require_approval;
use super::super::context::Call;
use super::super::reply::parse_json;
use super::super::{AppState, authenticate, authorize, authorize_key, intend};
use super::{data, key_answer, key_resource, no_content};
use crate::audit::action::Action;
use crate::error::{ApiError, ErrorCode};
use crate::keys::model::{Algorithm, Boundary, KeyKind};
use crate::keys::{CreateOptions, KeyDetails, KeyError, KeyPatch};
use crate::policy::Resource;

/// Most keys a listing names (Vault lists without pages).
const MAX_LISTED: usize = 10_000;
const PAGE: u32 = 1000;

/// A number Vault clients may send as a JSON number or as its decimal text.
pub(super) fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(u32),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) => t
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("expected a whole number")),
    }
}

/// A duration as Vault takes it: seconds as a number, or text (`"24h"`, `"90m"`, `"3600"`).
fn lenient_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Number(i64),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Number(n)) => Ok(Some(n)),
        Some(Either::Text(t)) => {
            if let Ok(seconds) = t.parse::<i64>() {
                return Ok(Some(seconds));
            }
            crate::timefmt::parse_duration(&t)
                .map(|d| Some(d.whole_seconds()))
                .map_err(|_| serde::de::Error::custom("expected a duration such as 24h or a number of seconds"))
        }
    }
}

/// A body that may be empty (hvac sends none to rotate), else a JSON object.
pub(super) async fn body<T: for<'de> Deserialize<'de> + Default>(call: &mut Call, limit: u64) -> Result<T, ApiError> {
    let raw = call.read_body(limit).await?;
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&raw)
}

#[derive(Deserialize, Default)]
struct CreateRequest {
    #[serde(rename = "type")]
    key_type: Option<String>,
    /// sigvault's own: the hash of an `hmac` key (sha2-256, sha2-384, sha2-512), which the
    /// key is bound to. Vault takes the hash per call instead.
    algorithm: Option<String>,
    #[serde(default, deserialize_with = "lenient_u32")]
    key_size: Option<u32>,
    exportable: Option<bool>,
    derived: Option<bool>,
    convergent_encryption: Option<bool>,
    allow_plaintext_backup: Option<bool>,
    #[serde(default, deserialize_with = "lenient_duration")]
    auto_rotate_period: Option<i64>,
}

#[derive(Deserialize, Default)]
struct ConfigRequest {
    #[serde(default, deserialize_with = "lenient_u32")]
    min_decryption_version: Option<u32>,
    #[serde(default, deserialize_with = "lenient_u32")]
    min_encryption_version: Option<u32>,
    deletion_allowed: Option<bool>,
    exportable: Option<bool>,
    allow_plaintext_backup: Option<bool>,
    #[serde(default, deserialize_with = "lenient_duration")]
    auto_rotate_period: Option<i64>,
}

/// The hash of a Transit name (`sha2-256`, …) as sigvault's HMAC algorithm.
pub(super) fn hmac_algorithm(name: &str) -> Result<Algorithm, ApiError> {
    match name {
        "sha2-256" => Ok(Algorithm::HmacSha256),
        "sha2-384" => Ok(Algorithm::HmacSha384),
        "sha2-512" => Ok(Algorithm::HmacSha512),
        other => Err(ApiError::invalid(format!(
            "unsupported algorithm `{}` (sigvault's HMAC keys use sha2-256, sha2-384 or sha2-512)",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// Transit's name of an HMAC algorithm's hash.
pub(super) fn hash_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HmacSha384 => "sha2-384",
        Algorithm::HmacSha512 => "sha2-512",
        _ => "sha2-256",
    }
}

fn refuse_unsupported(
    derived: Option<bool>,
    convergent: Option<bool>,
    plaintext_backup: Option<bool>,
) -> Result<(), ApiError> {
    if derived == Some(true) || convergent == Some(true) {
        return Err(ApiError::invalid(
            "key derivation and convergent encryption are not supported by sigvault",
        ));
    }
    if plaintext_backup == Some(true) {
        return Err(ApiError::invalid(
            "plaintext backups are not supported by sigvault (use the native, sealed backup)",
        ));
    }
    Ok(())
}

fn rotation_period(seconds: Option<i64>) -> Result<Option<Option<time::Duration>>, ApiError> {
    match seconds {
        None => Ok(None),
        Some(0) => Ok(Some(None)),
        Some(s) if s > 0 => Ok(Some(Some(time::Duration::seconds(s)))),
        Some(_) => Err(ApiError::invalid("auto_rotate_period must not be negative")),
    }
}

/// A key that exists, answered to a create as Vault answers a second create: left as it is,
/// and shown only to a caller the policies let read it (`CreateKey` and then `GetKey` on the
/// existing key), recorded with outcome `exists`.
async fn existing(
    state: &AppState,
    call: &mut Call,
    caller: &crate::auth::Principal,
    name: &str,
) -> Result<Response, ApiError> {
    authorize_key(state, call, caller, Action::CreateKey, name).await?;
    authorize_key(state, call, caller, Action::GetKey, name).await?;
    call.note.outcome = Some("exists");
    key_answer(state, name).await
}

/// `POST keys/{name}`: creates the key; a key that exists is left as it is ([`existing`]).
pub(super) async fn create(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let req: CreateRequest = body(call, state.limits.max_body_bytes).await?;
    if state.keys.facts(name).await?.is_some() {
        return existing(state, call, &caller, name).await;
    }
    let resource = Resource::Key {
        name,
        owner: &caller.name,
        tags: &BTreeMap::new(),
    };
    authorize(state, call, &caller, Action::CreateKey, &resource)?;
    refuse_unsupported(req.derived, req.convergent_encryption, req.allow_plaintext_backup)?;
    let algorithm = match req.key_type.as_deref().unwrap_or("aes256-gcm96") {
        "aes256-gcm96" => {
            if req.algorithm.is_some() {
                return Err(ApiError::invalid("algorithm applies to hmac keys only"));
            }
            Algorithm::Aes256Gcm
        }
        "hmac" => hmac_algorithm(req.algorithm.as_deref().unwrap_or("sha2-256"))?,
        other => {
            return Err(ApiError::invalid(format!(
                "key type `{}` is not supported by sigvault (aes256-gcm96 and hmac are)",
                other.chars().take(32).collect::<String>()
            )));
        }
    };
    let opts = CreateOptions {
        algorithm,
        key_size: req.key_size.map(|s| s as usize),
        boundary: Boundary::Process,
        exportable: req.exportable.unwrap_or(false),
        auto_rotate_period: rotation_period(req.auto_rotate_period)?.flatten(),
        owner: caller.name.clone(),
        tags: BTreeMap::new(),
        // Vault's default: a key cannot be deleted until its config allows it.
        deletion_allowed: false,
    };
    intend(state, call, Action::CreateKey, &key_resource(name)).await?;
    match state.keys.create(name, opts).await {
        Ok(_) => key_answer(state, name).await,
        // Made by another request meanwhile: decided and answered as an existing key.
        Err(KeyError::AlreadyExists(_)) => existing(state, call, &caller, name).await,
        Err(e) => Err(e.into()),
    }
}

/// `GET keys/{name}`: 404 with Vault's empty error list when there is no such key.
pub(super) async fn read(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::GetKey, name).await?;
    call.expect_no_body().await?;
    key_answer(state, name).await.map_err(|e| match e.code {
        ErrorCode::KeyNotFound => ApiError::new(ErrorCode::NotFound, e.message),
        _ => e,
    })
}

/// `LIST keys` (or `GET keys?list=true`): every key name, as Vault lists them (no pages, at
/// most 10,000); 404 when there are none, as Vault answers an empty listing.
pub(super) async fn list(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::ListKeys, &Resource::Collection("keys"))?;
    call.expect_no_body().await?;
    let mut names: Vec<String> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state.keys.list(after.as_deref(), PAGE).await?;
        let full = page.len() == PAGE as usize;
        after = page.last().map(|k| k.record.name.clone());
        names.extend(page.into_iter().map(|k| k.record.name));
        if !full || names.len() >= MAX_LISTED {
            break;
        }
    }
    names.truncate(MAX_LISTED);
    if names.is_empty() {
        return Err(ApiError::new(ErrorCode::NotFound, "no keys"));
    }
    Ok(data(&serde_json::json!({ "keys": names })))
}

/// `DELETE keys/{name}`: schedules the key's deletion (the native waiting period; Vault
/// deletes at once), which its `deletion_allowed` must permit. 204.
pub(super) async fn delete(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::ScheduleKeyDeletion, name).await?;
    call.expect_no_body().await?;
    require_approval(state, call, &caller, Action::ScheduleKeyDeletion, &key_resource(name)).await?;
    intend(state, call, Action::ScheduleKeyDeletion, &key_resource(name)).await?;
    state.keys.schedule_deletion(name, None).await?;
    Ok(no_content())
}

/// `POST keys/{name}/rotate`: a new latest version; answers the key.
pub(super) async fn rotate(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::RotateKey, name).await?;
    // hvac sends no body; Vault ignores one.
    let _: serde_json::Map<String, serde_json::Value> = body(call, state.limits.max_body_bytes).await?;
    intend(state, call, Action::RotateKey, &key_resource(name)).await?;
    state.keys.rotate(name).await?;
    key_answer(state, name).await
}

/// `POST keys/{name}/config`: `min_decryption_version` (sigvault's `min_verify_version`),
/// `min_encryption_version`, `deletion_allowed`, `exportable` (true→false only: a key is made
/// exportable at creation), `auto_rotate_period` (0: off). Answers the key.
pub(super) async fn config(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::UpdateKey, name).await?;
    let req: ConfigRequest = body(call, state.limits.max_body_bytes).await?;
    refuse_unsupported(None, None, req.allow_plaintext_backup)?;
    // Vault reads 0 as "leave the floor where it is" for min_decryption_version.
    let min_verify_version = req.min_decryption_version.filter(|v| *v != 0);
    let patch = KeyPatch {
        state: None,
        min_verify_version,
        auto_rotate_period: rotation_period(req.auto_rotate_period)?,
        exportable: req.exportable,
        min_encryption_version: req.min_encryption_version,
        deletion_allowed: req.deletion_allowed,
    };
    intend(state, call, Action::UpdateKey, &key_resource(name)).await?;
    state.keys.patch(name, patch).await?;
    key_answer(state, name).await
}

/// A key as Transit's read shows it.
#[derive(Serialize)]
pub(super) struct KeyData {
    name: String,
    #[serde(rename = "type")]
    key_type: &'static str,
    keys: BTreeMap<String, i64>,
    latest_version: u32,
    min_available_version: u32,
    min_decryption_version: u32,
    min_encryption_version: u32,
    deletion_allowed: bool,
    derived: bool,
    exportable: bool,
    allow_plaintext_backup: bool,
    imported_key: bool,
    supports_encryption: bool,
    supports_decryption: bool,
    supports_derivation: bool,
    supports_signing: bool,
    auto_rotate_period: i64,
    /// sigvault's own: the hash an `hmac` key is bound to.
    #[serde(skip_serializing_if = "Option::is_none")]
    algorithm: Option<&'static str>,
    /// sigvault's own: `enabled`, `disabled` or `pending_deletion`.
    state: &'static str,
}

impl From<&KeyDetails> for KeyData {
    fn from(d: &KeyDetails) -> Self {
        let r = &d.record;
        let kind = r.algorithm.kind();
        let encryption = kind == KeyKind::Encryption;
        Self {
            name: r.name.clone(),
            key_type: match kind {
                KeyKind::Mac => "hmac",
                KeyKind::Encryption => "aes256-gcm96",
                _ => "aes256-kwp",
            },
            keys: d
                .versions
                .iter()
                .map(|v| (v.version.to_string(), v.created_at_ms.div_euclid(1000)))
                .collect(),
            latest_version: r.latest_version,
            min_available_version: 0,
            min_decryption_version: r.min_verify_version,
            min_encryption_version: r.min_encryption_version,
            deletion_allowed: r.deletion_allowed,
            derived: false,
            exportable: r.exportable,
            allow_plaintext_backup: false,
            imported_key: r.origin == crate::keys::model::KeyOrigin::Imported,
            supports_encryption: encryption,
            supports_decryption: encryption,
            supports_derivation: false,
            supports_signing: false,
            auto_rotate_period: r.auto_rotate_period_s.unwrap_or(0),
            algorithm: (kind == KeyKind::Mac).then(|| hash_name(r.algorithm)),
            state: r.state.as_str(),
        }
    }
}
