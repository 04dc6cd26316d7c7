//! `POST /v1/keys/{name}/sign` and `/verify`: the hot path, single and batch forms.
//!
//! Bodies are parsed into strings borrowed from the request buffer (`Cow` owns only when
//! the JSON escapes a character) and answered with typed structs: a verify copies nothing
//! it does not have to. Each batch item succeeds or fails on its own.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use warp::http::StatusCode;
use warp::reply::Response;

use super::super::context::{Call, request_id};
use super::super::reply::{base64, base64_field, json, parse_json};
use super::super::{AppState, authenticate, authorize_key};
use crate::audit::action::Action;
use crate::error::ApiError;
use crate::keys::{Usage, Verdict};

const MAX_REFERENCE_LEN: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignRequest<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    key_version: Option<u32>,
    #[serde(borrow)]
    batch: Option<Vec<SignItem<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignItem<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    key_version: Option<u32>,
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyRequest<'a> {
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    signature: Option<Cow<'a, str>>,
    key_version: Option<u32>,
    #[serde(borrow)]
    batch: Option<Vec<VerifyItem<'a>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyItem<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
    key_version: Option<u32>,
    #[serde(borrow)]
    reference: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct Signed {
    signature: String,
    key_version: u32,
}

#[derive(Serialize)]
struct Verified {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_version: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
}

/// One answer of a batch: the single-form answer or an error, with the caller's reference.
#[derive(Serialize)]
pub(super) struct BatchItem<'a, T> {
    #[serde(flatten)]
    pub(super) outcome: Outcome<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) reference: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Outcome<T> {
    Done(T),
    Failed { error: ItemError },
}

#[derive(Serialize)]
pub(super) struct ItemError {
    code: &'static str,
    message: String,
}

impl<T> From<Result<T, ApiError>> for Outcome<T> {
    fn from(result: Result<T, ApiError>) -> Self {
        match result {
            Ok(done) => Outcome::Done(done),
            Err(e) => {
                if e.code.status().is_server_error() {
                    // The caller sees the generic message; the cause goes to the log, as
                    // for a whole request (`reply::error`).
                    tracing::error!(
                        request_id = %request_id(),
                        code = e.code.as_str(),
                        detail = e.detail.as_deref().unwrap_or(""),
                        "batch item failed"
                    );
                }
                Outcome::Failed {
                    error: ItemError {
                        code: e.code.as_str(),
                        message: e.message,
                    },
                }
            }
        }
    }
}

#[derive(Serialize)]
pub(super) struct Batch<'a, T> {
    pub(super) batch: Vec<BatchItem<'a, T>>,
}

// ----- sign and verify ------------------------------------------------------------------

pub(crate) fn check_batch(
    state: &AppState,
    len: usize,
    mut references: impl Iterator<Item = usize>,
) -> Result<(), ApiError> {
    if len == 0 {
        return Err(ApiError::invalid("batch must not be empty"));
    }
    if len > state.limits.max_batch_items {
        return Err(ApiError::invalid(format!(
            "batch is limited to {} items",
            state.limits.max_batch_items
        )));
    }
    if references.any(|len| len > MAX_REFERENCE_LEN) {
        return Err(ApiError::invalid(format!(
            "reference is limited to {MAX_REFERENCE_LEN} bytes"
        )));
    }
    Ok(())
}

pub(crate) fn decode_message(state: &AppState, field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    // Cheap pre-check on the encoded length so an oversize message is refused before decoding.
    if text.len() / 4 * 3 > state.limits.max_message_bytes + 2 {
        return Err(ApiError::new(
            crate::error::ErrorCode::PayloadTooLarge,
            format!("messages are limited to {} bytes", state.limits.max_message_bytes),
        ));
    }
    base64_field(field, text)
}

/// Signs one message; its use is noted in `used`, to be counted once the request's audit
/// event is durable.
async fn sign_one(
    state: &AppState,
    used: &mut Vec<Usage>,
    name: &str,
    message: &str,
    version: Option<u32>,
) -> Result<Signed, ApiError> {
    let message = decode_message(state, "message", message)?;
    let (tag, key_version, usage) = state.keys.sign(name, &message, version).await?;
    used.push(usage);
    Ok(Signed {
        signature: base64(&tag),
        key_version,
    })
}

pub(super) async fn sign_message(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Sign, name).await?;
    let body = call.read_body(state.limits.max_sign_body_bytes).await?;
    let req: SignRequest<'_> = parse_json(&body)?;
    match (req.message, req.batch) {
        (Some(message), None) => {
            let signed = sign_one(state, &mut call.note.usage, name, &message, req.key_version).await?;
            call.note.key_version = Some(signed.key_version);
            Ok(json(StatusCode::OK, &signed))
        }
        (None, Some(items)) => {
            if req.key_version.is_some() {
                return Err(ApiError::invalid("with batch, give key_version per item"));
            }
            check_batch(
                state,
                items.len(),
                items.iter().filter_map(|i| i.reference.as_ref().map(|r| r.len())),
            )?;
            let mut batch = Vec::with_capacity(items.len());
            for item in items {
                let outcome = sign_one(state, &mut call.note.usage, name, &item.message, item.key_version)
                    .await
                    .into();
                batch.push(BatchItem {
                    outcome,
                    reference: item.reference,
                });
            }
            Ok(json(StatusCode::OK, &Batch { batch }))
        }
        _ => Err(ApiError::invalid("give either message or batch")),
    }
}

async fn verify_one(
    state: &AppState,
    used: &mut Vec<Usage>,
    name: &str,
    message: &str,
    signature: &str,
    version: Option<u32>,
) -> Result<Verified, ApiError> {
    let message = decode_message(state, "message", message)?;
    let signature = base64_field("signature", signature)?;
    let (verdict, usage) = state.keys.verify(name, &message, &signature, version).await?;
    used.extend(usage);
    Ok(match verdict {
        Verdict::Valid(v) => Verified {
            valid: true,
            key_version: Some(v),
            code: None,
        },
        failed => Verified {
            valid: false,
            key_version: None,
            code: Some(failed.code()),
        },
    })
}

pub(super) async fn verify_message(state: &AppState, call: &mut Call, name: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_key(state, call, &caller, Action::Verify, name).await?;
    let body = call.read_body(state.limits.max_sign_body_bytes).await?;
    let req: VerifyRequest<'_> = parse_json(&body)?;
    match (req.message, req.signature, req.batch) {
        (Some(message), Some(signature), None) => {
            let verified = verify_one(state, &mut call.note.usage, name, &message, &signature, req.key_version).await?;
            call.note.key_version = verified.key_version;
            Ok(json(StatusCode::OK, &verified))
        }
        (None, None, Some(items)) => {
            if req.key_version.is_some() {
                return Err(ApiError::invalid("with batch, give key_version per item"));
            }
            check_batch(
                state,
                items.len(),
                items.iter().filter_map(|i| i.reference.as_ref().map(|r| r.len())),
            )?;
            let mut batch = Vec::with_capacity(items.len());
            for item in items {
                let outcome = verify_one(
                    state,
                    &mut call.note.usage,
                    name,
                    &item.message,
                    &item.signature,
                    item.key_version,
                )
                .await
                .into();
                batch.push(BatchItem {
                    outcome,
                    reference: item.reference,
                });
            }
            Ok(json(StatusCode::OK, &Batch { batch }))
        }
        _ => Err(ApiError::invalid("give message and signature, or batch")),
    }
}
