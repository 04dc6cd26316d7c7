//! Transit's key operations: `hmac`, `verify`, `encrypt`, `decrypt`, `rewrap` and
//! `datakey`, single and `batch_input` forms, with Vault's `vault:v<N>:` prefixes.
//!
//! An HMAC key is bound to one hash in sigvault; a Transit request that names another
//! (`algorithm`, `hash_algorithm` or the path's last segment; Vault's default is sha2-256)
//! is refused rather than answered with the key's own. `context` (or Vault's newer
//! `associated_data`) is the AES-GCM associated data of an encryption.

use serde::{Deserialize, Serialize};
use warp::reply::Response;
use zeroize::Zeroizing;

use super::super::context::Call;
use super::super::keys::sign::{check_batch, decode_message};
use super::super::reply::{base64, base64_field};
use super::super::{AppState, authenticate, authorize_key};
use super::data;
use super::keys::{body, hash_name, hmac_algorithm, lenient_u32};
use crate::audit::action::Action;
use crate::error::{ApiError, ErrorCode};
use crate::keys::Verdict;

/// Vault's prefix of HMACs and ciphertexts; sigvault's own ciphertexts start `sigvault:v`.
const VAULT_PREFIX: &str = "vault:v";
const NATIVE_PREFIX: &str = "sigvault:v";

#[derive(Deserialize, Default)]
struct HmacRequest {
    input: Option<String>,
    #[serde(default, deserialize_with = "lenient_u32")]
    key_version: Option<u32>,
    algorithm: Option<String>,
    batch_input: Option<Vec<HmacItem>>,
}

#[derive(Deserialize)]
struct HmacItem {
    input: String,
    reference: Option<String>,
}

#[derive(Deserialize, Default)]
struct VerifyRequest {
    input: Option<String>,
    hmac: Option<String>,
    signature: Option<String>,
    algorithm: Option<String>,
    hash_algorithm: Option<String>,
    batch_input: Option<Vec<VerifyItem>>,
}

#[derive(Deserialize)]
struct VerifyItem {
    input: String,
    hmac: Option<String>,
    signature: Option<String>,
    reference: Option<String>,
}

#[derive(Deserialize, Default)]
struct EncryptRequest {
    plaintext: Option<Zeroizing<String>>,
    context: Option<String>,
    associated_data: Option<String>,
    #[serde(default, deserialize_with = "lenient_u32")]
    key_version: Option<u32>,
    batch_input: Option<Vec<EncryptItem>>,
}

#[derive(Deserialize)]
struct EncryptItem {
    plaintext: Zeroizing<String>,
    context: Option<String>,
    associated_data: Option<String>,
    reference: Option<String>,
}

#[derive(Deserialize, Default)]
struct CiphertextRequest {
    ciphertext: Option<String>,
    context: Option<String>,
    associated_data: Option<String>,
    batch_input: Option<Vec<CiphertextItem>>,
}

#[derive(Deserialize)]
struct CiphertextItem {
    ciphertext: String,
    context: Option<String>,
    associated_data: Option<String>,
    reference: Option<String>,
}

#[derive(Deserialize, Default)]
struct DataKeyRequest {
    context: Option<String>,
    associated_data: Option<String>,
    #[serde(default, deserialize_with = "lenient_u32")]
    bits: Option<u32>,
}

/// One item of `batch_results`: the single answer's fields, or `error`.
#[derive(Serialize, Default)]
struct BatchResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    hmac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<Zeroizing<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<String>,
}

impl BatchResult {
    fn failed(e: &ApiError, reference: Option<String>) -> Self {
        if e.code.status().is_server_error() {
            tracing::error!(
                request_id = %super::super::context::request_id(),
                code = e.code.as_str(),
                detail = e.detail.as_deref().unwrap_or(""),
                "batch item failed"
            );
        }
        Self {
            error: Some(format!("{}: {}", e.code.as_str(), e.message)),
            reference,
            ..Self::default()
        }
    }
}

fn batch(results: Vec<BatchResult>) -> Response {
    data(&serde_json::json!({ "batch_results": results }))
}

/// Checks a batch's size and references as the native batches are checked.
fn check_items<'a>(
    state: &AppState,
    len: usize,
    references: impl Iterator<Item = Option<&'a String>>,
) -> Result<(), ApiError> {
    check_batch(state, len, references.flatten().map(String::len))
}

/// The HMAC algorithm the request names (the path's segment first), which must be the key's
/// (`facts`, as the authorization read them).
fn requested_algorithm(
    facts: Option<&crate::keys::KeyFacts>,
    name: &str,
    named: [Option<&str>; 3],
) -> Result<(), ApiError> {
    let requested = hmac_algorithm(named.into_iter().flatten().next().unwrap_or("sha2-256"))?;
    let Some(facts) = facts else {
        return Err(crate::keys::KeyError::NotFound(name.to_owned()).into());
    };
    let actual = facts.algorithm();
    if actual.kind() == crate::keys::model::KeyKind::Mac && actual != requested {
        return Err(ApiError::invalid(format!(
            "key '{name}' is bound to {}; this request asked for {} (pass algorithm={} or the path …/{})",
            hash_name(actual),
            hash_name(requested),
            hash_name(actual),
            hash_name(actual)
        )));
    }
    Ok(())
}

/// `vault:v<N>:<base64>` → (N, the base64 part).
fn split_prefixed<'a>(field: &str, text: &'a str) -> Result<(u32, &'a str), ApiError> {
    let bad = || ApiError::invalid(format!("`{field}` is not of the form vault:v<version>:<base64>"));
    let rest = text.strip_prefix(VAULT_PREFIX).ok_or_else(bad)?;
    let (version, body) = rest.split_once(':').ok_or_else(bad)?;
    let version = version
        .parse::<u32>()
        .ok()
        .filter(|v| *v > 0 && !version.starts_with('0') && !version.starts_with('+'))
        .ok_or_else(bad)?;
    Ok((version, body))
}

fn prefixed(version: u32, raw: &[u8]) -> String {
    format!("{VAULT_PREFIX}{version}:{}", base64(raw))
}

/// A native ciphertext (`sigvault:v…`) in Vault's spelling, and back.
fn to_vault(ciphertext: &str) -> String {
    match ciphertext.strip_prefix(NATIVE_PREFIX) {
        Some(rest) => format!("{VAULT_PREFIX}{rest}"),
        None => ciphertext.to_owned(),
    }
}

fn to_native(ciphertext: &str) -> Result<String, ApiError> {
    split_prefixed("ciphertext", ciphertext)?;
    match ciphertext.strip_prefix(VAULT_PREFIX) {
        Some(rest) => Ok(format!("{NATIVE_PREFIX}{rest}")),
        None => Err(ApiError::invalid(
            "`ciphertext` is not of the form vault:v<version>:<base64>",
        )),
    }
}

/// The associated data: `context` or `associated_data` (base64), not both.
fn aad(context: Option<&str>, associated: Option<&str>) -> Result<Vec<u8>, ApiError> {
    match (context, associated) {
        (Some(_), Some(_)) => Err(ApiError::invalid("give context or associated_data, not both")),
        (Some(text), None) => base64_field("context", text),
        (None, Some(text)) => base64_field("associated_data", text),
        (None, None) => Ok(Vec::new()),
    }
}

async fn hmac_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    input: &str,
    version: Option<u32>,
) -> Result<(String, u32), ApiError> {
    let message = decode_message(state, "input", input)?;
    let (tag, version, usage) = state.keys.sign(name, &message, version).await?;
    call.note.usage.push(usage);
    Ok((prefixed(version, &tag), version))
}

/// `POST hmac/{name}(/{algorithm})`.
pub(super) async fn hmac(
    state: &AppState,
    call: &mut Call,
    name: &str,
    path_algorithm: Option<&str>,
) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let facts = authorize_key(state, call, &caller, Action::Sign, name).await?;
    let req: HmacRequest = body(call, state.limits.max_sign_body_bytes).await?;
    requested_algorithm(facts.as_ref(), name, [path_algorithm, req.algorithm.as_deref(), None])?;
    match (req.input, req.batch_input) {
        (_, Some(items)) => {
            check_items(state, items.len(), items.iter().map(|i| i.reference.as_ref()))?;
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                results.push(match hmac_one(state, call, name, &item.input, req.key_version).await {
                    Ok((hmac, version)) => BatchResult {
                        hmac: Some(hmac),
                        key_version: Some(version),
                        reference: item.reference,
                        ..BatchResult::default()
                    },
                    Err(e) => BatchResult::failed(&e, item.reference),
                });
            }
            Ok(batch(results))
        }
        (Some(input), None) => {
            let (hmac, version) = hmac_one(state, call, name, &input, req.key_version).await?;
            call.note.key_version = Some(version);
            Ok(data(&serde_json::json!({ "hmac": hmac, "key_version": version })))
        }
        (None, None) => Err(ApiError::invalid("missing input to process")),
    }
}

/// Checks one HMAC: `Ok(Some(version))` when it matched, `Ok(None)` when not.
async fn verify_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    input: &str,
    hmac: Option<&str>,
    signature: Option<&str>,
) -> Result<Option<u32>, ApiError> {
    let hmac = match (hmac, signature) {
        (Some(h), None) => h,
        (None, Some(_)) => {
            return Err(ApiError::invalid(
                "sigvault's keys are HMAC keys: give hmac (signature is for Vault's asymmetric keys)",
            ));
        }
        _ => return Err(ApiError::invalid("give one of hmac or signature")),
    };
    let message = decode_message(state, "input", input)?;
    let (version, tag) = split_prefixed("hmac", hmac)?;
    let tag = base64_field("hmac", tag)?;
    let (verdict, usage) = state.keys.verify(name, &message, &tag, Some(version)).await?;
    call.note.usage.extend(usage);
    Ok(match verdict {
        Verdict::Valid(v) => Some(v),
        Verdict::Mismatch | Verdict::MalformedSignature => None,
    })
}

/// `POST verify/{name}(/{algorithm})`: `{"valid": …}`. A version below the key's
/// `min_decryption_version` is refused (400), as Vault refuses it.
pub(super) async fn verify(
    state: &AppState,
    call: &mut Call,
    name: &str,
    path_algorithm: Option<&str>,
) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let facts = authorize_key(state, call, &caller, Action::Verify, name).await?;
    let req: VerifyRequest = body(call, state.limits.max_sign_body_bytes).await?;
    requested_algorithm(
        facts.as_ref(),
        name,
        [path_algorithm, req.hash_algorithm.as_deref(), req.algorithm.as_deref()],
    )?;
    match (req.input, req.batch_input) {
        (_, Some(items)) => {
            check_items(state, items.len(), items.iter().map(|i| i.reference.as_ref()))?;
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                let outcome = verify_one(
                    state,
                    call,
                    name,
                    &item.input,
                    item.hmac.as_deref(),
                    item.signature.as_deref(),
                )
                .await;
                results.push(match outcome {
                    Ok(matched) => BatchResult {
                        valid: Some(matched.is_some()),
                        reference: item.reference,
                        ..BatchResult::default()
                    },
                    Err(e) => BatchResult {
                        valid: Some(false),
                        ..BatchResult::failed(&e, item.reference)
                    },
                });
            }
            Ok(batch(results))
        }
        (Some(input), None) => {
            let matched = verify_one(state, call, name, &input, req.hmac.as_deref(), req.signature.as_deref()).await?;
            call.note.key_version = matched;
            Ok(data(&serde_json::json!({ "valid": matched.is_some() })))
        }
        (None, None) => Err(ApiError::invalid("missing input to process")),
    }
}

async fn encrypt_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    plaintext: &str,
    aad: &[u8],
    version: Option<u32>,
) -> Result<(String, u32), ApiError> {
    let plaintext = Zeroizing::new(decode_message(state, "plaintext", plaintext)?);
    let (encrypted, usage) = state.keys.encrypt(name, &plaintext, aad).await?;
    if version.is_some_and(|v| v != encrypted.version) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            format!(
                "sigvault encrypts with the latest version ({}) only: drop key_version",
                encrypted.version
            ),
        ));
    }
    call.note.usage.push(usage);
    Ok((to_vault(&encrypted.ciphertext), encrypted.version))
}

/// `POST encrypt/{name}`: `{"ciphertext":"vault:v<N>:…","key_version":N}`. The key must
/// exist (Vault would create it).
pub(super) async fn encrypt(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Encrypt, name).await?;
    let req: EncryptRequest = body(call, state.limits.max_sign_body_bytes).await?;
    match (req.plaintext, req.batch_input) {
        (_, Some(items)) => {
            check_items(state, items.len(), items.iter().map(|i| i.reference.as_ref()))?;
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                let outcome = match aad(item.context.as_deref(), item.associated_data.as_deref()) {
                    Ok(aad) => encrypt_one(state, call, name, &item.plaintext, &aad, req.key_version).await,
                    Err(e) => Err(e),
                };
                results.push(match outcome {
                    Ok((ciphertext, version)) => BatchResult {
                        ciphertext: Some(ciphertext),
                        key_version: Some(version),
                        reference: item.reference,
                        ..BatchResult::default()
                    },
                    Err(e) => BatchResult::failed(&e, item.reference),
                });
            }
            Ok(batch(results))
        }
        (Some(plaintext), None) => {
            let aad = aad(req.context.as_deref(), req.associated_data.as_deref())?;
            let (ciphertext, version) = encrypt_one(state, call, name, &plaintext, &aad, req.key_version).await?;
            call.note.key_version = Some(version);
            Ok(data(
                &serde_json::json!({ "ciphertext": ciphertext, "key_version": version }),
            ))
        }
        (None, None) => Err(ApiError::invalid("missing plaintext to encrypt")),
    }
}

async fn decrypt_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    ciphertext: &str,
    aad: &[u8],
) -> Result<(Zeroizing<String>, u32), ApiError> {
    let native = to_native(ciphertext)?;
    let (plaintext, version, usage) = state.keys.decrypt(name, &native, aad).await?;
    call.note.usage.push(usage);
    Ok((Zeroizing::new(base64(&plaintext)), version))
}

/// `POST decrypt/{name}`: `{"plaintext": <base64>}`.
pub(super) async fn decrypt(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    ciphertexts(state, call, name, false).await
}

/// `POST rewrap/{name}`: the ciphertext again under the latest version.
pub(super) async fn rewrap(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    ciphertexts(state, call, name, true).await
}

async fn rewrap_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    ciphertext: &str,
    aad: &[u8],
) -> Result<(String, u32), ApiError> {
    let native = to_native(ciphertext)?;
    let (encrypted, usage) = state.keys.rewrap(name, &native, aad).await?;
    call.note.usage.extend(usage);
    Ok((to_vault(&encrypted.ciphertext), encrypted.version))
}

/// One ciphertext decrypted (`{"plaintext"}`) or rewrapped (`{"ciphertext","key_version"}`),
/// and the version that opened it or made the new one.
async fn open_one(
    state: &AppState,
    call: &mut Call,
    name: &str,
    (ciphertext, aad): (&str, &[u8]),
    rewrap: bool,
) -> Result<(BatchResult, u32), ApiError> {
    if rewrap {
        let (ciphertext, version) = rewrap_one(state, call, name, ciphertext, aad).await?;
        let answer = BatchResult {
            ciphertext: Some(ciphertext),
            key_version: Some(version),
            ..BatchResult::default()
        };
        Ok((answer, version))
    } else {
        let (plaintext, version) = decrypt_one(state, call, name, ciphertext, aad).await?;
        let answer = BatchResult {
            plaintext: Some(plaintext),
            ..BatchResult::default()
        };
        Ok((answer, version))
    }
}

/// `decrypt` and `rewrap`: the same request (single or `batch_input`), decided as `Decrypt`
/// or `ReEncrypt`.
async fn ciphertexts(state: &AppState, call: &mut Call, name: &str, rewrap: bool) -> Result<Response, ApiError> {
    let action = if rewrap { Action::ReEncrypt } else { Action::Decrypt };
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, action, name).await?;
    let req: CiphertextRequest = body(call, state.limits.max_sign_body_bytes).await?;
    match (req.ciphertext, req.batch_input) {
        (_, Some(items)) => {
            check_items(state, items.len(), items.iter().map(|i| i.reference.as_ref()))?;
            let mut results = Vec::with_capacity(items.len());
            for item in items {
                let outcome = match aad(item.context.as_deref(), item.associated_data.as_deref()) {
                    Ok(aad) => open_one(state, call, name, (&item.ciphertext, &aad), rewrap).await,
                    Err(e) => Err(e),
                };
                results.push(match outcome {
                    Ok((answer, _)) => BatchResult {
                        reference: item.reference,
                        ..answer
                    },
                    Err(e) => BatchResult::failed(&e, item.reference),
                });
            }
            Ok(batch(results))
        }
        (Some(ciphertext), None) => {
            let aad = aad(req.context.as_deref(), req.associated_data.as_deref())?;
            let (answer, version) = open_one(state, call, name, (&ciphertext, &aad), rewrap).await?;
            call.note.key_version = Some(version);
            Ok(data(&answer))
        }
        (None, None) => Err(ApiError::invalid("missing ciphertext")),
    }
}

/// `POST datakey/plaintext/{name}` and `datakey/wrapped/{name}`: a fresh 256-bit key, its
/// ciphertext, and (for `plaintext`) the key itself.
pub(super) async fn data_key(
    state: &AppState,
    call: &mut Call,
    name: &str,
    with_plaintext: bool,
) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::GenerateDataKey, name).await?;
    let req: DataKeyRequest = body(call, state.limits.max_body_bytes).await?;
    if req.bits.is_some_and(|b| b != 256) {
        return Err(ApiError::invalid(
            "sigvault's data keys are 256 bits: bits must be 256 or absent",
        ));
    }
    let aad = aad(req.context.as_deref(), req.associated_data.as_deref())?;
    let (plaintext, encrypted, usage) = state.keys.data_key(name, &aad).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(encrypted.version);
    #[derive(Serialize)]
    struct DataKey {
        ciphertext: String,
        key_version: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        plaintext: Option<Zeroizing<String>>,
    }
    Ok(data(&DataKey {
        ciphertext: to_vault(&encrypted.ciphertext),
        key_version: encrypted.version,
        plaintext: with_plaintext.then(|| Zeroizing::new(base64(&plaintext))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::model::Algorithm;

    #[test]
    fn prefixes_split_and_convert_both_ways() {
        assert_eq!(split_prefixed("hmac", "vault:v12:aGk=").unwrap(), (12, "aGk="));
        for bad in [
            "vault:v0:aGk=",
            "vault:v01:aGk=",
            "vault:v+1:aGk=",
            "vault:1:aGk=",
            "sigvault:v1:aGk=",
            "vault:v1",
            "vault:vx:a",
        ] {
            assert!(split_prefixed("hmac", bad).is_err(), "{bad}");
        }
        assert_eq!(to_vault("sigvault:v3:abc="), "vault:v3:abc=");
        assert_eq!(to_native("vault:v3:abc=").unwrap(), "sigvault:v3:abc=");
        assert!(to_native("sigvault:v3:abc=").is_err());
        assert_eq!(prefixed(2, b"hi"), "vault:v2:aGk=");
    }

    #[test]
    fn associated_data_comes_from_one_field() {
        assert_eq!(aad(Some("aGk="), None).unwrap(), b"hi");
        assert_eq!(aad(None, Some("aGk=")).unwrap(), b"hi");
        assert!(aad(Some("aGk="), Some("aGk=")).is_err());
        assert!(aad(None, None).unwrap().is_empty());
    }

    #[test]
    fn transit_hash_names_map_onto_the_bound_algorithms() {
        for alg in [Algorithm::HmacSha256, Algorithm::HmacSha384, Algorithm::HmacSha512] {
            assert_eq!(hmac_algorithm(hash_name(alg)).unwrap(), alg);
        }
        assert!(hmac_algorithm("sha3-256").is_err());
    }
}
