//! `POST /v1/keys/{name}/encrypt`, `/decrypt`, `/rewrap` and `/datakey`: encryption keys
//! (`aes256-gcm`), the first three also in a batch form (`{"batch":[…]}`, each item with its
//! own `aad` and `reference`, each succeeding or failing on its own, as sign's); and
//! `/wrap`, `/unwrap` of key-wrapping keys (`aes256-kwp`, RFC 5649). Plaintexts and data keys arrive and leave base64-encoded; the body buffer
//! that held a plaintext, and the answers' plaintext copies, are zeroized when dropped.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use zeroize::Zeroizing;

use super::super::context::Call;
use super::super::reply::{base64, base64_field, json, parse_json};
use super::super::{AppState, authenticate, authorize_key};
use super::sign::{Batch, BatchItem, check_batch};
use crate::audit::action::Action;
use crate::error::ApiError;
use crate::keys::Encrypted;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    plaintext: Option<Zeroizing<String>>,
    aad: Option<String>,
    batch: Option<Vec<EncryptItem>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptItem {
    plaintext: Zeroizing<String>,
    aad: Option<String>,
    reference: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CiphertextRequest {
    ciphertext: Option<String>,
    aad: Option<String>,
    batch: Option<Vec<CiphertextItem>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CiphertextItem {
    ciphertext: String,
    aad: Option<String>,
    reference: Option<String>,
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

/// One item of a request: its text (plaintext or ciphertext), `aad` and batch `reference`.
type Item<T> = (T, Option<String>, Option<String>);

/// The items of a request: its single form as one item (`false`), or its batch form (`true`),
/// checked as sign's is (not empty, at most `limits.max_batch_items`, references at most 256
/// bytes; `aad` given per item). `field` names the single form's text field.
fn items<T>(
    state: &AppState,
    single: Option<T>,
    aad: Option<String>,
    batch: Option<Vec<Item<T>>>,
    field: &str,
) -> Result<(Vec<Item<T>>, bool), ApiError> {
    match (single, batch) {
        (Some(text), None) => Ok((vec![(text, aad, None)], false)),
        (None, Some(items)) if aad.is_none() => {
            check_batch(
                state,
                items.len(),
                items.iter().filter_map(|(_, _, r)| r.as_ref().map(String::len)),
            )?;
            Ok((items, true))
        }
        (None, Some(_)) => Err(ApiError::invalid("with batch, give aad per item")),
        _ => Err(ApiError::invalid(format!("give either {field} or batch"))),
    }
}

/// An answer that names the key version it used.
trait Versioned {
    fn key_version(&self) -> u32;
}

impl Versioned for EncryptedJson {
    fn key_version(&self) -> u32 {
        self.key_version
    }
}

impl Versioned for DecryptedJson {
    fn key_version(&self) -> u32 {
        self.key_version
    }
}

/// The answer of [`items`]' request: the single form's result, or one per batch item.
fn answer<T: Serialize + Versioned>(
    call: &mut Call,
    batch: bool,
    answers: Vec<(Result<T, ApiError>, Option<String>)>,
) -> Result<Response, ApiError> {
    if batch {
        let batch = answers
            .into_iter()
            .map(|(result, reference)| BatchItem {
                outcome: result.into(),
                reference: reference.map(Cow::Owned),
            })
            .collect();
        return Ok(json(StatusCode::OK, &Batch { batch }));
    }
    let one = answers
        .into_iter()
        .next()
        .map(|(result, _)| result)
        .ok_or_else(|| ApiError::invalid("nothing to answer"))??;
    call.note.key_version = Some(one.key_version());
    Ok(json(StatusCode::OK, &one))
}

async fn encrypt_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    plaintext: &str,
    aad_field: Option<&str>,
) -> Result<EncryptedJson, ApiError> {
    let plaintext = Zeroizing::new(base64_field("plaintext", plaintext)?);
    let (encrypted, usage) = state.keys.encrypt(name, &plaintext, &aad(aad_field)?).await?;
    call.note.usage.push(usage);
    Ok(EncryptedJson::from(encrypted))
}

async fn decrypt_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    ciphertext: &str,
    aad_field: Option<&str>,
) -> Result<DecryptedJson, ApiError> {
    let (plaintext, version, usage) = state.keys.decrypt(name, ciphertext, &aad(aad_field)?).await?;
    call.note.usage.push(usage);
    Ok(DecryptedJson {
        plaintext: Zeroizing::new(base64(&plaintext)),
        key_version: version,
    })
}

async fn rewrap_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    ciphertext: &str,
    aad_field: Option<&str>,
) -> Result<EncryptedJson, ApiError> {
    let (encrypted, usage) = state.keys.rewrap(name, ciphertext, &aad(aad_field)?).await?;
    call.note.usage.extend(usage);
    Ok(EncryptedJson::from(encrypted))
}

pub(super) async fn encrypt(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Encrypt, name).await?;
    let body = body(state, call).await?;
    let req: EncryptRequest = parse_json(&body)?;
    let batch = req
        .batch
        .map(|items| items.into_iter().map(|i| (i.plaintext, i.aad, i.reference)).collect());
    let (items, batch) = items(state, req.plaintext, req.aad, batch, "plaintext")?;
    let mut answers = Vec::with_capacity(items.len());
    for (plaintext, aad, reference) in items {
        answers.push((
            encrypt_one(state, call, name, &plaintext, aad.as_deref()).await,
            reference,
        ));
    }
    answer(call, batch, answers)
}

/// The items of a decrypt or rewrap request.
fn ciphertexts(state: &AppState, req: CiphertextRequest) -> Result<(Vec<Item<String>>, bool), ApiError> {
    let batch = req
        .batch
        .map(|items| items.into_iter().map(|i| (i.ciphertext, i.aad, i.reference)).collect());
    items(state, req.ciphertext, req.aad, batch, "ciphertext")
}

pub(super) async fn decrypt(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Decrypt, name).await?;
    let body = body(state, call).await?;
    let (items, batch) = ciphertexts(state, parse_json(&body)?)?;
    let mut answers = Vec::with_capacity(items.len());
    for (ciphertext, aad, reference) in items {
        answers.push((
            decrypt_one(state, call, name, &ciphertext, aad.as_deref()).await,
            reference,
        ));
    }
    answer(call, batch, answers)
}

pub(super) async fn rewrap(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::ReEncrypt, name).await?;
    let body = body(state, call).await?;
    let (items, batch) = ciphertexts(state, parse_json(&body)?)?;
    let mut answers = Vec::with_capacity(items.len());
    for (ciphertext, aad, reference) in items {
        answers.push((
            rewrap_one(state, call, name, &ciphertext, aad.as_deref()).await,
            reference,
        ));
    }
    answer(call, batch, answers)
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrapRequest {
    key_material: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnwrapRequest {
    wrapped_key: String,
    key_version: u32,
}

#[derive(Serialize)]
struct WrappedJson {
    wrapped_key: String,
    key_version: u32,
}

#[derive(Serialize)]
struct UnwrappedJson {
    key_material: Zeroizing<String>,
}

/// Reads a body of a wrapping route (key material: the ordinary body limit), zeroized when
/// dropped.
async fn small_body(state: &AppState, call: &mut Call) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    Ok(Zeroizing::new(
        call.read_body(state.limits.max_body_bytes).await?.to_vec(),
    ))
}

pub(super) async fn wrap_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::WrapKey, name).await?;
    let body = small_body(state, call).await?;
    let req: WrapRequest = parse_json(&body)?;
    let material = Zeroizing::new(base64_field("key_material", &req.key_material)?);
    let (wrapped, version, usage) = state.keys.wrap_key(name, &material).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(version);
    let answer = WrappedJson {
        wrapped_key: base64(&wrapped),
        key_version: version,
    };
    Ok(json(StatusCode::OK, &answer))
}

pub(super) async fn unwrap_key(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::UnwrapKey, name).await?;
    let body = small_body(state, call).await?;
    let req: UnwrapRequest = parse_json(&body)?;
    let wrapped = base64_field("wrapped_key", &req.wrapped_key)?;
    let (material, usage) = state.keys.unwrap_key(name, &wrapped, req.key_version).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(req.key_version);
    let answer = UnwrappedJson {
        key_material: Zeroizing::new(base64(&material)),
    };
    Ok(json(StatusCode::OK, &answer))
}
