//! The KMS operations sigvault serves: `GenerateMac`, `VerifyMac`, `Encrypt`, `Decrypt`,
//! `ReEncrypt`, `GenerateDataKey(WithoutPlaintext)`, `DescribeKey`, `ListKeys`,
//! `ListAliases`, `CreateKey`. Each authenticates by SigV4, is decided as its native twin, and
//! answers in KMS's JSON.
//!
//! A `KeyId` is a key's name, `alias/<name>` (every key has that alias), or an ARN
//! `arn:aws:kms:<region>:000000000000:key/<name>` (or `…:alias/<name>`), the form answers
//! use. An `EncryptionContext` is the AES-GCM associated data (its pairs as a JSON object
//! with sorted keys; absent and empty are the same). A `CiphertextBlob` is `SVK1`, the key
//! name's length (one byte), the name, and the native ciphertext (`sigvault:v<N>:…`) — so a
//! `Decrypt` needs no `KeyId`, as KMS's does not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;
use zeroize::Zeroizing;

use super::super::context::Call;
use super::super::keys::key_resource;
use super::super::keys::sign::decode_message;
use super::super::reply::{base64, base64_field, parse_json};
use super::super::{AppState, authorize, authorize_key, intend};
use super::{ACCOUNT, KmsError, answer, signer};
use crate::audit::action::Action;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::keys::model::{Algorithm, Boundary, KeyKind, KeyOrigin, KeyState};
use crate::keys::{CreateOptions, KeyDetails, Verdict};
use crate::policy::Resource;

const BLOB_MAGIC: &[u8] = b"SVK1";
const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
const DEFAULT_LIST: u32 = 100;
const MAX_LIST: u32 = 1000;
/// Longest description `CreateKey` keeps (KMS's limit), as the tag `kms:description`.
const MAX_DESCRIPTION: usize = 8192;

/// The operations served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operation {
    GenerateMac,
    VerifyMac,
    Encrypt,
    Decrypt,
    ReEncrypt,
    GenerateDataKey,
    GenerateDataKeyWithoutPlaintext,
    DescribeKey,
    ListKeys,
    ListAliases,
    CreateKey,
}

impl Operation {
    pub(super) fn parse(target: &str) -> Option<Self> {
        Some(match target {
            "GenerateMac" => Self::GenerateMac,
            "VerifyMac" => Self::VerifyMac,
            "Encrypt" => Self::Encrypt,
            "Decrypt" => Self::Decrypt,
            "ReEncrypt" => Self::ReEncrypt,
            "GenerateDataKey" => Self::GenerateDataKey,
            "GenerateDataKeyWithoutPlaintext" => Self::GenerateDataKeyWithoutPlaintext,
            "DescribeKey" => Self::DescribeKey,
            "ListKeys" => Self::ListKeys,
            "ListAliases" => Self::ListAliases,
            "CreateKey" => Self::CreateKey,
            _ => return None,
        })
    }

    /// The native action the policies decide it as.
    pub(super) fn action(self) -> Action {
        match self {
            Self::GenerateMac => Action::Sign,
            Self::VerifyMac => Action::Verify,
            Self::Encrypt => Action::Encrypt,
            Self::Decrypt => Action::Decrypt,
            Self::ReEncrypt => Action::ReEncrypt,
            Self::GenerateDataKey | Self::GenerateDataKeyWithoutPlaintext => Action::GenerateDataKey,
            Self::DescribeKey => Action::GetKey,
            Self::ListKeys | Self::ListAliases => Action::ListKeys,
            Self::CreateKey => Action::CreateKey,
        }
    }
}

/// Reads the body, authenticates its signature and runs `op`.
pub(super) async fn run(state: &AppState, call: &mut Call, path: &str, op: Operation) -> Result<Response, KmsError> {
    let body = call.read_body(state.limits.max_sign_body_bytes).await?;
    let (caller, region) = signer(state, call, path, &body).await?;
    let ctx = Ctx {
        state,
        caller: &caller,
        region: &region,
    };
    match op {
        Operation::GenerateMac => generate_mac(&ctx, call, &body).await,
        Operation::VerifyMac => verify_mac(&ctx, call, &body).await,
        Operation::Encrypt => encrypt(&ctx, call, &body).await,
        Operation::Decrypt => decrypt(&ctx, call, &body).await,
        Operation::ReEncrypt => re_encrypt(&ctx, call, &body).await,
        Operation::GenerateDataKey => data_key(&ctx, call, &body, true).await,
        Operation::GenerateDataKeyWithoutPlaintext => data_key(&ctx, call, &body, false).await,
        Operation::DescribeKey => describe_key(&ctx, call, &body).await,
        Operation::ListKeys => list(&ctx, call, &body, false).await,
        Operation::ListAliases => list(&ctx, call, &body, true).await,
        Operation::CreateKey => create_key(&ctx, call, &body).await,
    }
}

/// What every operation needs: the vault, the signer, and the region it signed for.
struct Ctx<'a> {
    state: &'a AppState,
    caller: &'a Principal,
    region: &'a str,
}

impl Ctx<'_> {
    fn key_arn(&self, name: &str) -> String {
        format!("arn:aws:kms:{}:{ACCOUNT}:key/{name}", self.region)
    }

    fn alias_arn(&self, name: &str) -> String {
        format!("arn:aws:kms:{}:{ACCOUNT}:alias/{name}", self.region)
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, KmsError> {
    parse_json(body).map_err(|e| KmsError::new("ValidationException", e))
}

fn refuse_dry_run(dry_run: Option<bool>) -> Result<(), KmsError> {
    if dry_run == Some(true) {
        return Err(KmsError::invalid(
            "UnsupportedOperationException",
            "DryRun is not supported by sigvault",
        ));
    }
    Ok(())
}

/// The key name a `KeyId` names: the name, `alias/<name>`, or a key or alias ARN.
fn key_name(key_id: &str) -> Result<String, KmsError> {
    let name = match key_id.strip_prefix("arn:") {
        Some(arn) => {
            let resource = arn.splitn(5, ':').nth(4).unwrap_or_default();
            resource
                .strip_prefix("key/")
                .or_else(|| resource.strip_prefix("alias/"))
                .unwrap_or_default()
        }
        None => key_id.strip_prefix("alias/").unwrap_or(key_id),
    };
    crate::keys::model::validate_name(name).map_err(|_| {
        KmsError::new(
            "NotFoundException",
            ApiError::new(
                ErrorCode::KeyNotFound,
                "the KeyId names no key (a name, alias/<name> or an ARN)",
            ),
        )
    })?;
    Ok(name.to_owned())
}

/// Decides `action` on key `name` for the signer, notes the key as the event's resource,
/// and checks that the key exists, is enabled and does `kind`: KMS's own exceptions for each.
async fn usable_key(
    ctx: &Ctx<'_>,
    call: &mut Call,
    action: Action,
    name: &str,
    kind: KeyKind,
) -> Result<Algorithm, KmsError> {
    call.note.resource = Some(key_resource(name));
    let facts = authorize_key(ctx.state, call, ctx.caller, action, name).await?;
    let Some(facts) = facts else {
        return Err(KmsError::new(
            "NotFoundException",
            ApiError::new(ErrorCode::KeyNotFound, format!("key '{name}' does not exist")),
        ));
    };
    match facts.state() {
        KeyState::Enabled => {}
        KeyState::Disabled => {
            return Err(KmsError::new(
                "DisabledException",
                ApiError::new(ErrorCode::FailedPrecondition, format!("key '{name}' is disabled")),
            ));
        }
        KeyState::PendingDeletion => {
            return Err(KmsError::new(
                "KMSInvalidStateException",
                ApiError::new(
                    ErrorCode::FailedPrecondition,
                    format!("key '{name}' is pending deletion"),
                ),
            ));
        }
    }
    let algorithm = facts.algorithm();
    if algorithm.kind() != kind {
        return Err(KmsError::invalid(
            "InvalidKeyUsageException",
            format!("key '{name}' is an {} key, which does not do this", algorithm.as_str()),
        ));
    }
    Ok(algorithm)
}

fn mac_algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HmacSha384 => "HMAC_SHA_384",
        Algorithm::HmacSha512 => "HMAC_SHA_512",
        _ => "HMAC_SHA_256",
    }
}

fn key_spec(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HmacSha256 => "HMAC_256",
        Algorithm::HmacSha384 => "HMAC_384",
        Algorithm::HmacSha512 => "HMAC_512",
        _ => SYMMETRIC_DEFAULT,
    }
}

/// The requested MAC algorithm must be the one the key is bound to.
fn check_mac_algorithm(name: &str, algorithm: Algorithm, requested: &str) -> Result<(), KmsError> {
    if requested == mac_algorithm_name(algorithm) {
        Ok(())
    } else {
        Err(KmsError::invalid(
            "InvalidKeyUsageException",
            format!(
                "key '{name}' computes {}; the request asked for {}",
                mac_algorithm_name(algorithm),
                requested.chars().take(32).collect::<String>()
            ),
        ))
    }
}

fn check_encryption_algorithm(requested: Option<&str>) -> Result<(), KmsError> {
    match requested {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(other) => Err(KmsError::invalid(
            "InvalidKeyUsageException",
            format!(
                "sigvault's encryption keys use SYMMETRIC_DEFAULT, not {}",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}

/// The associated data of an encryption context: its pairs as a JSON object with sorted keys
/// (empty when there are none).
fn context_aad(context: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>, KmsError> {
    match context {
        None => Ok(Vec::new()),
        Some(pairs) if pairs.is_empty() => Ok(Vec::new()),
        Some(pairs) => serde_json::to_vec(pairs)
            .map_err(|e| KmsError::from(ApiError::internal(format!("encoding an encryption context: {e}")))),
    }
}

fn blob(name: &str, ciphertext: &str) -> Result<String, KmsError> {
    let len = u8::try_from(name.len()).map_err(|_| ApiError::internal("a key name longer than 255 bytes"))?;
    let mut out = Vec::with_capacity(BLOB_MAGIC.len() + 1 + name.len() + ciphertext.len());
    out.extend_from_slice(BLOB_MAGIC);
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(ciphertext.as_bytes());
    Ok(base64(&out))
}

/// A `CiphertextBlob` (base64) as the key name and the native ciphertext.
fn open_blob(text: &str) -> Result<(String, String), KmsError> {
    let invalid = || {
        KmsError::invalid(
            "InvalidCiphertextException",
            "the CiphertextBlob is not one sigvault made",
        )
    };
    let raw = base64_field("CiphertextBlob", text).map_err(|_| invalid())?;
    let rest = raw.strip_prefix(BLOB_MAGIC).ok_or_else(invalid)?;
    let (&len, rest) = rest.split_first().ok_or_else(invalid)?;
    let name = rest.get(..usize::from(len)).ok_or_else(invalid)?;
    let ciphertext = rest.get(usize::from(len)..).ok_or_else(invalid)?;
    let name = std::str::from_utf8(name).map_err(|_| invalid())?;
    let ciphertext = std::str::from_utf8(ciphertext).map_err(|_| invalid())?;
    crate::keys::model::validate_name(name).map_err(|_| invalid())?;
    Ok((name.to_owned(), ciphertext.to_owned()))
}

// ----- MACs ---------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MacRequest {
    key_id: String,
    message: String,
    mac_algorithm: String,
    mac: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MacAnswer {
    key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac_valid: Option<bool>,
    mac_algorithm: &'static str,
}

async fn generate_mac(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: MacRequest = parse(body)?;
    refuse_dry_run(req.dry_run)?;
    let name = key_name(&req.key_id)?;
    let algorithm = usable_key(ctx, call, Action::Sign, &name, KeyKind::Mac).await?;
    check_mac_algorithm(&name, algorithm, &req.mac_algorithm)?;
    let message = decode_message(ctx.state, "Message", &req.message)?;
    let (tag, version, usage) = ctx.state.keys.sign(&name, &message, None).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(version);
    Ok(answer(
        StatusCode::OK,
        &MacAnswer {
            key_id: ctx.key_arn(&name),
            mac: Some(base64(&tag)),
            mac_valid: None,
            mac_algorithm: mac_algorithm_name(algorithm),
        },
    ))
}

/// Any version from the key's `min_verify_version` to the latest may match (a rotated key's
/// older MACs still verify); no match is `KMSInvalidMacException`, as KMS answers it.
async fn verify_mac(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: MacRequest = parse(body)?;
    refuse_dry_run(req.dry_run)?;
    let name = key_name(&req.key_id)?;
    let algorithm = usable_key(ctx, call, Action::Verify, &name, KeyKind::Mac).await?;
    check_mac_algorithm(&name, algorithm, &req.mac_algorithm)?;
    let message = decode_message(ctx.state, "Message", &req.message)?;
    let mac = base64_field("Mac", req.mac.as_deref().unwrap_or_default())?;
    let (verdict, usage) = ctx.state.keys.verify(&name, &message, &mac, None).await?;
    call.note.usage.extend(usage);
    match verdict {
        Verdict::Valid(version) => {
            call.note.key_version = Some(version);
            Ok(answer(
                StatusCode::OK,
                &MacAnswer {
                    key_id: ctx.key_arn(&name),
                    mac: None,
                    mac_valid: Some(true),
                    mac_algorithm: mac_algorithm_name(algorithm),
                },
            ))
        }
        failed => Err(KmsError::new(
            "KMSInvalidMacException",
            ApiError::invalid(format!("the MAC does not verify ({})", failed.code())),
        )),
    }
}

// ----- encryption ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EncryptRequest {
    key_id: String,
    plaintext: Zeroizing<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DecryptRequest {
    ciphertext_blob: String,
    key_id: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReEncryptRequest {
    ciphertext_blob: String,
    source_key_id: Option<String>,
    source_encryption_context: Option<BTreeMap<String, String>>,
    source_encryption_algorithm: Option<String>,
    destination_key_id: String,
    destination_encryption_context: Option<BTreeMap<String, String>>,
    destination_encryption_algorithm: Option<String>,
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DataKeyRequest {
    key_id: String,
    key_spec: Option<String>,
    number_of_bytes: Option<u32>,
    encryption_context: Option<BTreeMap<String, String>>,
    dry_run: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Encrypted {
    ciphertext_blob: String,
    key_id: String,
    encryption_algorithm: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Decrypted {
    key_id: String,
    plaintext: Zeroizing<String>,
    encryption_algorithm: &'static str,
}

async fn encrypt(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: EncryptRequest = parse(body)?;
    refuse_dry_run(req.dry_run)?;
    let name = key_name(&req.key_id)?;
    usable_key(ctx, call, Action::Encrypt, &name, KeyKind::Encryption).await?;
    check_encryption_algorithm(req.encryption_algorithm.as_deref())?;
    let aad = context_aad(req.encryption_context.as_ref())?;
    let plaintext = Zeroizing::new(decode_message(ctx.state, "Plaintext", &req.plaintext)?);
    let (encrypted, usage) = ctx.state.keys.encrypt(&name, &plaintext, &aad).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(encrypted.version);
    Ok(answer(
        StatusCode::OK,
        &Encrypted {
            ciphertext_blob: blob(&name, &encrypted.ciphertext)?,
            key_id: ctx.key_arn(&name),
            encryption_algorithm: SYMMETRIC_DEFAULT,
        },
    ))
}

/// Opens `blob_text` under `context` with the key it names (which `key_id`, when given, must
/// name too): the key's name and the plaintext.
async fn open(
    ctx: &Ctx<'_>,
    call: &mut Call,
    action: Action,
    (blob_text, key_id, context): (&str, Option<&str>, Option<&BTreeMap<String, String>>),
) -> Result<(String, Zeroizing<Vec<u8>>), KmsError> {
    let (name, ciphertext) = open_blob(blob_text)?;
    if let Some(key_id) = key_id
        && key_name(key_id)? != name
    {
        return Err(KmsError::invalid(
            "IncorrectKeyException",
            "the CiphertextBlob was not made with the KeyId given",
        ));
    }
    usable_key(ctx, call, action, &name, KeyKind::Encryption).await?;
    let aad = context_aad(context)?;
    match ctx.state.keys.decrypt(&name, &ciphertext, &aad).await {
        Ok((plaintext, version, usage)) => {
            call.note.usage.push(usage);
            call.note.key_version = Some(version);
            Ok((name, plaintext))
        }
        Err(crate::keys::KeyError::Invalid(message)) => Err(KmsError::invalid("InvalidCiphertextException", message)),
        Err(e) => Err(e.into()),
    }
}

async fn decrypt(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: DecryptRequest = parse(body)?;
    refuse_dry_run(req.dry_run)?;
    check_encryption_algorithm(req.encryption_algorithm.as_deref())?;
    let (name, plaintext) = open(
        ctx,
        call,
        Action::Decrypt,
        (
            &req.ciphertext_blob,
            req.key_id.as_deref(),
            req.encryption_context.as_ref(),
        ),
    )
    .await?;
    Ok(answer(
        StatusCode::OK,
        &Decrypted {
            key_id: ctx.key_arn(&name),
            plaintext: Zeroizing::new(base64(&plaintext)),
            encryption_algorithm: SYMMETRIC_DEFAULT,
        },
    ))
}

/// Decrypts under the source key and encrypts under the destination key; the plaintext never
/// leaves the vault. Within one key it is decided as `ReEncrypt` (the native operation);
/// across keys as `Decrypt` on the source and `Encrypt` on the destination, since the
/// plaintext moves to a key the source's holders may not control. The event's resource is
/// the destination.
async fn re_encrypt(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: ReEncryptRequest = parse(body)?;
    refuse_dry_run(req.dry_run)?;
    check_encryption_algorithm(req.source_encryption_algorithm.as_deref())?;
    check_encryption_algorithm(req.destination_encryption_algorithm.as_deref())?;
    let destination = key_name(&req.destination_key_id)?;
    let (blob_key, _) = open_blob(&req.ciphertext_blob)?;
    let (source_action, destination_action) = if blob_key == destination {
        (Action::ReEncrypt, Action::ReEncrypt)
    } else {
        (Action::Decrypt, Action::Encrypt)
    };
    let (source, plaintext) = open(
        ctx,
        call,
        source_action,
        (
            &req.ciphertext_blob,
            req.source_key_id.as_deref(),
            req.source_encryption_context.as_ref(),
        ),
    )
    .await?;
    usable_key(ctx, call, destination_action, &destination, KeyKind::Encryption).await?;
    let aad = context_aad(req.destination_encryption_context.as_ref())?;
    let (encrypted, usage) = ctx.state.keys.encrypt(&destination, &plaintext, &aad).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(encrypted.version);
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct ReEncrypted {
        ciphertext_blob: String,
        source_key_id: String,
        key_id: String,
        source_encryption_algorithm: &'static str,
        destination_encryption_algorithm: &'static str,
    }
    Ok(answer(
        StatusCode::OK,
        &ReEncrypted {
            ciphertext_blob: blob(&destination, &encrypted.ciphertext)?,
            source_key_id: ctx.key_arn(&source),
            key_id: ctx.key_arn(&destination),
            source_encryption_algorithm: SYMMETRIC_DEFAULT,
            destination_encryption_algorithm: SYMMETRIC_DEFAULT,
        },
    ))
}

async fn data_key(ctx: &Ctx<'_>, call: &mut Call, body: &[u8], with_plaintext: bool) -> Result<Response, KmsError> {
    let req: DataKeyRequest = parse(body)?;
    refuse_dry_run(req.dry_run)?;
    let name = key_name(&req.key_id)?;
    usable_key(ctx, call, Action::GenerateDataKey, &name, KeyKind::Encryption).await?;
    match (req.key_spec.as_deref(), req.number_of_bytes) {
        (Some("AES_256"), None) | (None, Some(32)) => {}
        (None, None) => {
            return Err(KmsError::invalid(
                "ValidationException",
                "give KeySpec or NumberOfBytes",
            ));
        }
        _ => {
            return Err(KmsError::invalid(
                "ValidationException",
                "sigvault's data keys are AES_256 (32 bytes): KeySpec AES_256 or NumberOfBytes 32",
            ));
        }
    }
    let aad = context_aad(req.encryption_context.as_ref())?;
    let (plaintext, encrypted, usage) = ctx.state.keys.data_key(&name, &aad).await?;
    call.note.usage.push(usage);
    call.note.key_version = Some(encrypted.version);
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct DataKey {
        ciphertext_blob: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        plaintext: Option<Zeroizing<String>>,
        key_id: String,
    }
    Ok(answer(
        StatusCode::OK,
        &DataKey {
            ciphertext_blob: blob(&name, &encrypted.ciphertext)?,
            plaintext: with_plaintext.then(|| Zeroizing::new(base64(&plaintext))),
            key_id: ctx.key_arn(&name),
        },
    ))
}

// ----- keys ---------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct KeyMetadata {
    #[serde(rename = "AWSAccountId")]
    aws_account_id: &'static str,
    key_id: String,
    arn: String,
    creation_date: f64,
    enabled: bool,
    description: String,
    key_usage: &'static str,
    key_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_date: Option<f64>,
    origin: &'static str,
    key_manager: &'static str,
    customer_master_key_spec: &'static str,
    key_spec: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    encryption_algorithms: Option<[&'static str; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mac_algorithms: Option<[&'static str; 1]>,
    multi_region: bool,
}

fn metadata(ctx: &Ctx<'_>, d: &KeyDetails) -> KeyMetadata {
    let r = &d.record;
    let mac = r.algorithm.kind() == KeyKind::Mac;
    let seconds = |ms: i64| ms as f64 / 1000.0;
    KeyMetadata {
        aws_account_id: ACCOUNT,
        key_id: r.name.clone(),
        arn: ctx.key_arn(&r.name),
        creation_date: seconds(r.created_at_ms),
        enabled: r.state == KeyState::Enabled,
        description: r.tags.get("kms:description").cloned().unwrap_or_default(),
        key_usage: if mac { "GENERATE_VERIFY_MAC" } else { "ENCRYPT_DECRYPT" },
        key_state: match r.state {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        },
        deletion_date: r.deletion_due_ms.map(seconds),
        origin: if r.origin == KeyOrigin::Imported {
            "EXTERNAL"
        } else {
            "AWS_KMS"
        },
        key_manager: "CUSTOMER",
        customer_master_key_spec: key_spec(r.algorithm),
        key_spec: key_spec(r.algorithm),
        encryption_algorithms: (!mac).then_some([SYMMETRIC_DEFAULT]),
        mac_algorithms: mac.then(|| [mac_algorithm_name(r.algorithm)]),
        multi_region: false,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeRequest {
    key_id: String,
}

async fn describe_key(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: DescribeRequest = parse(body)?;
    let name = key_name(&req.key_id)?;
    call.note.resource = Some(key_resource(&name));
    authorize_key(ctx.state, call, ctx.caller, Action::GetKey, &name).await?;
    let details = ctx.state.keys.get(&name).await.map_err(|e| match e {
        crate::keys::KeyError::NotFound(_) => KmsError::new(
            "NotFoundException",
            ApiError::new(ErrorCode::KeyNotFound, format!("key '{name}' does not exist")),
        ),
        other => other.into(),
    })?;
    Ok(answer(
        StatusCode::OK,
        &serde_json::json!({ "KeyMetadata": metadata(ctx, &details) }),
    ))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    limit: Option<u32>,
    marker: Option<String>,
    key_id: Option<String>,
}

/// `ListKeys` (`{"Keys":[{"KeyId","KeyArn"}]}`) or `ListAliases` (every key's
/// `alias/<name>`), a page of `Limit` (1–1000, default 100) after `Marker`.
async fn list(ctx: &Ctx<'_>, call: &mut Call, body: &[u8], aliases: bool) -> Result<Response, KmsError> {
    let req: ListRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ListRequest::default()
    } else {
        parse(body)?
    };
    call.note.resource = Some("keys".into());
    authorize(
        ctx.state,
        call,
        ctx.caller,
        Action::ListKeys,
        &Resource::Collection("keys"),
    )?;
    let limit = req.limit.unwrap_or(DEFAULT_LIST);
    if !(1..=MAX_LIST).contains(&limit) {
        return Err(KmsError::invalid(
            "ValidationException",
            format!("Limit must be 1 to {MAX_LIST}"),
        ));
    }
    let names: Vec<String> = match (aliases, req.key_id.as_deref()) {
        (true, Some(key_id)) => {
            let name = key_name(key_id)?;
            match ctx.state.keys.facts(&name).await? {
                Some(_) => vec![name],
                None => Vec::new(),
            }
        }
        _ => ctx
            .state
            .keys
            .list(req.marker.as_deref().filter(|m| !m.is_empty()), limit)
            .await?
            .into_iter()
            .map(|k| k.record.name)
            .collect(),
    };
    let next = (names.len() == limit as usize).then(|| names.last().cloned()).flatten();
    let mut out = serde_json::Map::new();
    if aliases {
        let items: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                serde_json::json!({"AliasName": format!("alias/{n}"), "AliasArn": ctx.alias_arn(n), "TargetKeyId": n})
            })
            .collect();
        out.insert("Aliases".into(), items.into());
    } else {
        let items: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"KeyId": n, "KeyArn": ctx.key_arn(n)}))
            .collect();
        out.insert("Keys".into(), items.into());
    }
    out.insert("Truncated".into(), next.is_some().into());
    if let Some(marker) = next {
        out.insert("NextMarker".into(), marker.into());
    }
    Ok(answer(StatusCode::OK, &out))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateKeyRequest {
    key_spec: Option<String>,
    customer_master_key_spec: Option<String>,
    key_usage: Option<String>,
    description: Option<String>,
    origin: Option<String>,
    multi_region: Option<bool>,
    tags: Option<Vec<Tag>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    tag_key: String,
    tag_value: String,
}

/// A key made as KMS makes one: its name `kms-<32 hex digits>` (the `KeyId` answered), its
/// owner the signer, its `Tags` as the key's tags and its `Description` as the tag
/// `kms:description`.
async fn create_key(ctx: &Ctx<'_>, call: &mut Call, body: &[u8]) -> Result<Response, KmsError> {
    let req: CreateKeyRequest = parse(body)?;
    let spec = req.key_spec.as_deref().or(req.customer_master_key_spec.as_deref());
    let algorithm = match spec.unwrap_or(SYMMETRIC_DEFAULT) {
        SYMMETRIC_DEFAULT => Algorithm::Aes256Gcm,
        "HMAC_256" => Algorithm::HmacSha256,
        "HMAC_384" => Algorithm::HmacSha384,
        "HMAC_512" => Algorithm::HmacSha512,
        other => {
            return Err(KmsError::invalid(
                "UnsupportedOperationException",
                format!(
                    "KeySpec {} is not supported by sigvault (SYMMETRIC_DEFAULT, HMAC_256, HMAC_384, HMAC_512 are)",
                    other.chars().take(32).collect::<String>()
                ),
            ));
        }
    };
    let usage = if algorithm.kind() == KeyKind::Mac {
        "GENERATE_VERIFY_MAC"
    } else {
        "ENCRYPT_DECRYPT"
    };
    if req.key_usage.as_deref().is_some_and(|u| u != usage) {
        return Err(KmsError::invalid(
            "ValidationException",
            format!("KeyUsage must be {usage} for this KeySpec"),
        ));
    }
    if req.origin.as_deref().is_some_and(|o| o != "AWS_KMS") || req.multi_region == Some(true) {
        return Err(KmsError::invalid(
            "UnsupportedOperationException",
            "sigvault makes keys with Origin AWS_KMS, single-region",
        ));
    }
    let mut tags: BTreeMap<String, String> = req
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.tag_key, t.tag_value))
        .collect();
    if let Some(description) = req.description.filter(|d| !d.is_empty()) {
        if description.len() > MAX_DESCRIPTION {
            return Err(KmsError::invalid(
                "ValidationException",
                format!("Description is limited to {MAX_DESCRIPTION} bytes"),
            ));
        }
        tags.insert("kms:description".into(), description);
    }
    crate::keys::model::validate_tags(&tags).map_err(|m| KmsError::invalid("ValidationException", m))?;
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|_| ApiError::internal("the operating system's random generator failed"))?;
    let name = format!("kms-{}", base16ct::lower::encode_string(&raw));
    call.note.resource = Some(key_resource(&name));
    let resource = Resource::Key {
        name: &name,
        owner: &ctx.caller.name,
        tags: &tags,
    };
    authorize(ctx.state, call, ctx.caller, Action::CreateKey, &resource)?;
    let opts = CreateOptions {
        algorithm,
        key_size: None,
        boundary: Boundary::Process,
        exportable: false,
        auto_rotate_period: None,
        owner: ctx.caller.name.clone(),
        tags,
        deletion_allowed: true,
    };
    intend(ctx.state, call, Action::CreateKey, &key_resource(&name)).await?;
    let details = ctx.state.keys.create(&name, opts).await?;
    Ok(answer(
        StatusCode::OK,
        &serde_json::json!({ "KeyMetadata": metadata(ctx, &details) }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_name_keys_by_name_alias_or_arn() {
        for id in [
            "payments",
            "alias/payments",
            "arn:aws:kms:eu-west-1:000000000000:key/payments",
            "arn:aws:kms:us-east-1:123456789012:alias/payments",
        ] {
            assert_eq!(key_name(id).ok(), Some("payments".to_owned()), "{id}");
        }
        for bad in [
            "",
            "alias/",
            "arn:aws:kms:eu-west-1:0:other/payments",
            "arn:aws",
            "a/b",
            "alias/a b",
        ] {
            assert!(key_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blobs_carry_the_key_name_and_refuse_anything_else() {
        let b = blob("orders", "sigvault:v2:AAAA").ok().unwrap();
        assert_eq!(
            open_blob(&b).ok(),
            Some(("orders".to_owned(), "sigvault:v2:AAAA".to_owned()))
        );
        let raw = |bytes: &[u8]| base64(bytes);
        for bad in [
            raw(b"SVK2\x06orderssigvault:v1:A"),
            raw(b"SVK1\xffshort"),
            raw(b"SVK1"),
            raw(b"SVK1\x03a/bsigvault:v1:A"),
            "not base64!".to_owned(),
        ] {
            assert!(open_blob(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_encryption_context_is_order_free_and_empty_is_absent() {
        let a: BTreeMap<String, String> = [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(context_aad(Some(&a)).ok().unwrap(), br#"{"a":"1","b":"2"}"#);
        assert!(context_aad(Some(&BTreeMap::new())).ok().unwrap().is_empty());
        assert!(context_aad(None).ok().unwrap().is_empty());
    }
}
