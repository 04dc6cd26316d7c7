//! `POST /v1/keys/{name}/export`: a version of an exportable key, wrapped to a custodian's
//! RSA public key (RSA-OAEP-SHA-256 of a fresh AES-256 key ‖ AES-KWP of the material: the
//! format the custodian's tooling already unwraps). The event names the recipient key by its
//! fingerprint in `secret_hmac`. (The wrapped import is in [`super::lifecycle`].)
//!
//! `POST /v1/keys/{name}/backup` and `/restore-backup`: the whole key as one blob sealed
//! under the KEK ([`crate::keys::KeyService::backup`]), and the key back from it.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;

use super::super::approvals::require_approval;
use super::super::context::Call;
use super::super::reply::{base64, base64_field, json, parse_json};
use super::super::{AppState, authenticate, authorize_key, intend};
use super::key_resource;
use super::view::key_json;
use crate::audit::action::Action;
use crate::error::ApiError;
use crate::keys::{WRAPPING_FORMAT, recipient_fingerprint};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportRequest {
    version: Option<u32>,
    public_key_pem: String,
}

#[derive(Serialize)]
struct ExportJson {
    wrapped_key: String,
    wrapping: &'static str,
    key_version: u32,
    recipient_fingerprint: String,
}

pub(super) async fn export(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::ExportKey, name).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: ExportRequest = parse_json(&body)?;
    call.note.secret_hmac = Some(recipient_fingerprint(&req.public_key_pem)?);
    // Material leaves the vault: the trail holds the intent before it does.
    require_approval(state, call, &caller, Action::ExportKey, &key_resource(name)).await?;
    intend(state, call, Action::ExportKey, &key_resource(name)).await?;
    let exported = state.keys.export(name, req.version, &req.public_key_pem).await?;
    call.note.key_version = Some(exported.version);
    Ok(json(
        StatusCode::OK,
        &ExportJson {
            wrapped_key: base64(&exported.wrapped),
            wrapping: WRAPPING_FORMAT,
            key_version: exported.version,
            recipient_fingerprint: exported.recipient_fingerprint,
        },
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreRequest {
    backup: String,
}

#[derive(Serialize)]
struct BackupJson {
    backup: String,
    name: String,
    latest_version: u32,
}

pub(super) async fn backup(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::BackupKey, name).await?;
    super::lifecycle::no_options(state, call).await?;
    let (blob, latest_version) = state.keys.backup(name).await?;
    Ok(json(
        StatusCode::OK,
        &BackupJson {
            backup: base64(&blob),
            name: name.to_owned(),
            latest_version,
        },
    ))
}

pub(super) async fn restore_backup(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::RestoreKey, name).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: RestoreRequest = parse_json(&body)?;
    let blob = base64_field("backup", &req.backup)?;
    intend(state, call, Action::RestoreKey, &key_resource(name)).await?;
    let details = state.keys.restore_backup(name, &blob).await?;
    Ok(json(StatusCode::CREATED, &key_json(details)))
}
