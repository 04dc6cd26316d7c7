//! `POST /v1/keys/{name}/encrypt`, `/decrypt`, `/rewrap` and `/datakey`: encryption keys
//! (`aes256-gcm`). Plaintexts and data keys arrive and leave base64-encoded; the body buffer
//! that held a plaintext, and the answers' plaintext copies, are zeroized when dropped.

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use zeroize::Zeroizing;

use super::super::context::Call;
use super::super::reply::{base64, base64_field, json, parse_json};
use super::super::{AppState, authenticate, authorize_key};
use crate::audit::action::Action;
use crate::error::ApiError;
use crate::keys::Encrypted;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    plaintext: Zeroizing<String>,
    aad: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CiphertextRequest {
    ciphertext: String,
    aad: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataKeyRequest {
    bits: Option<u32>,
    return_plaintext: Option<bool>,
    aad: Option<String>,
}

#[derive(Serialize)]
struct EncryptedJson {
    ciphertext: String,
    key_version: u32,
}

impl From<Encrypted> for EncryptedJson {
    fn from(e: Encrypted) -> Self {
        Self {
            ciphertext: e.ciphertext,
            key_version: e.version,
        }
    }
}

#[derive(Serialize)]
struct DecryptedJson {
    plaintext: Zeroizing<String>,
    key_version: u32,
}

#[derive(Serialize)]
struct DataKeyJson {
    ciphertext: String,
    key_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<Zeroizing<String>>,
}

fn aad(field: Option<&str>) -> Result<Vec<u8>, ApiError> {
    field.map_or(Ok(Vec::new()), |text| base64_field("aad", text))
}

/// Reads the body of an encryption route (the limit of sign and verify: a plaintext may be
/// as large as a message), zeroized when dropped.
async fn body(state: &AppState, call: &mut Call) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    Ok(Zeroizing::new(
        call.read_body(state.limits.max_sign_body_bytes).await?.to_vec(),
    ))
}

pub(super) async fn encrypt(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Encrypt, name).await?;
    let body = body(state, call).await?;
    let req: EncryptRequest = parse_json(&body)?;
    let plaintext = Zeroizing::new(base64_field("plaintext", &req.plaintext)?);
    let (encrypted, usage) = state.keys.encrypt(name, &plaintext, &aad(req.aad.as_deref())?).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(encrypted.version);
    Ok(json(StatusCode::OK, &EncryptedJson::from(encrypted)))
}

pub(super) async fn decrypt(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Decrypt, name).await?;
    let body = body(state, call).await?;
    let req: CiphertextRequest = parse_json(&body)?;
    let (plaintext, version, usage) = state
        .keys
        .decrypt(name, &req.ciphertext, &aad(req.aad.as_deref())?)
        .await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(version);
    let answer = DecryptedJson {
        plaintext: Zeroizing::new(base64(&plaintext)),
        key_version: version,
    };
    Ok(json(StatusCode::OK, &answer))
}

pub(super) async fn rewrap(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::ReEncrypt, name).await?;
    let body = body(state, call).await?;
    let req: CiphertextRequest = parse_json(&body)?;
    let (encrypted, usage) = state
        .keys
        .rewrap(name, &req.ciphertext, &aad(req.aad.as_deref())?)
        .await?;
    call.note.usage.extend(usage);
    call.note.key_version = Some(encrypted.version);
    Ok(json(StatusCode::OK, &EncryptedJson::from(encrypted)))
}

pub(super) async fn data_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::GenerateDataKey, name).await?;
    let body = body(state, call).await?;
    let req: DataKeyRequest = parse_json(&body)?;
    let bits = req.bits.unwrap_or(256);
    if usize::try_from(bits).ok() != Some(crate::keys::DATA_KEY_BYTES * 8) {
        return Err(ApiError::invalid("bits must be 256 (AES-256 data keys)"));
    }
    let (plaintext, encrypted, usage) = state.keys.data_key(name, &aad(req.aad.as_deref())?).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(encrypted.version);
    let answer = DataKeyJson {
        ciphertext: encrypted.ciphertext,
        key_version: encrypted.version,
        plaintext: req
            .return_plaintext
            .unwrap_or(true)
            .then(|| Zeroizing::new(base64(&plaintext))),
    };
    Ok(json(StatusCode::OK, &answer))
}
