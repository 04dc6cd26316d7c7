//! `/v1/sys/kek`: the key-encryption keys (docs/API.md "KEK administration"). Administrators
//! read which KEK is current and how many records each one wraps, rotate to a new KEK (the
//! rewrap job then moves every record under it), and retire a KEK no record uses.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::reply::{self, json};
use super::{
    AppState, audited, authenticate, authorize, intend, kek_error, method_not_allowed, store_error, with_state,
};
use crate::audit::action::Action;
use crate::error::{ApiError, ErrorCode};
use crate::kek::KekError;
use crate::policy::Resource;
use crate::rewrap::JobStatus;

/// The longest `kek_id` accepted in a request (PKCS#11 labels and KMS ARNs are far shorter).
const MAX_KEK_ID_LEN: usize = 2048;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let status = warp::path!("sys" / "kek").and(s()).and(call()).then(status);
    let rotate = warp::path!("sys" / "kek" / "rotate").and(s()).and(call()).then(rotate);
    let retire = warp::path!("sys" / "kek" / "retire").and(s()).and(call()).then(retire);
    status.or(rotate).unify().or(retire).unify().boxed()
}

#[derive(Serialize)]
struct Records {
    kek_id: String,
    records: u64,
}

#[derive(Serialize)]
struct Status {
    current_kek_id: String,
    /// Every KEK the vault can open records of, oldest first.
    kek_ids: Vec<String>,
    /// Sealed records per `kek_id` (the store's count; a `kek_id` no provider holds shows
    /// here too, so it can be found).
    records: Vec<Records>,
    rewrap: JobStatus,
}

async fn status(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = read_status(&state, &mut call).await;
    audited(&state, &mut call, Action::ReadKek, "kek".into(), result).await
}

async fn read_status(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::ReadKek, &Resource::Collection("kek"))?;
    call.expect_no_body().await?;
    let usage = state.rewrap.usage().await.map_err(store_error)?;
    Ok(json(
        StatusCode::OK,
        &Status {
            current_kek_id: state.kek.current_kek_id(),
            kek_ids: state.kek.kek_ids(),
            records: usage
                .into_iter()
                .map(|(kek_id, records)| Records { kek_id, records })
                .collect(),
            rewrap: state.rewrap.status(),
        },
    ))
}

async fn rotate(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = do_rotate(&state, &mut call).await;
    audited(&state, &mut call, Action::RotateKek, "kek".into(), result).await
}

async fn do_rotate(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::RotateKek, &Resource::Collection("kek"))?;
    call.expect_no_body().await?;
    intend(state, call, Action::RotateKek, "kek").await?;
    let (previous, current) = state.rewrap.rotate().await.map_err(rewrap_error)?;
    tracing::info!(previous_kek_id = %previous, kek_id = %current, "KEK rotated; the rewrap job moves every record under it");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "previous_kek_id": previous, "current_kek_id": current }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetireRequest {
    kek_id: String,
}

async fn retire(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = do_retire(&state, &mut call).await;
    audited(&state, &mut call, Action::RetireKek, "kek".into(), result).await
}

async fn do_retire(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::RetireKek, &Resource::Collection("kek"))?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: RetireRequest = reply::parse_json(&body)?;
    if req.kek_id.is_empty() || req.kek_id.len() > MAX_KEK_ID_LEN || req.kek_id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "kek_id must be 1 to {MAX_KEK_ID_LEN} characters without control characters"
        )));
    }
    super::approvals::require_approval(state, call, &caller, Action::RetireKek, &format!("kek:{}", req.kek_id)).await?;
    intend(state, call, Action::RetireKek, "kek").await?;
    state.rewrap.retire(&req.kek_id).await.map_err(rewrap_error)?;
    tracing::info!(kek_id = %req.kek_id, "KEK retired");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "retired_kek_id": req.kek_id }),
    ))
}

fn rewrap_error(e: crate::rewrap::AdminError) -> ApiError {
    use crate::rewrap::AdminError;
    match e {
        AdminError::InUse { kek_id, records } => ApiError::new(
            ErrorCode::FailedPrecondition,
            format!(
                "{records} sealed records are still wrapped under {kek_id}: wait for the rewrap job (GET /v1/sys/kek)"
            ),
        ),
        AdminError::Store(s) => store_error(s),
        AdminError::Kek(KekError::Refused(m)) => ApiError::new(ErrorCode::FailedPrecondition, m),
        AdminError::Kek(KekError::UnknownKek(id)) => {
            ApiError::new(ErrorCode::NotFound, format!("no open provider holds KEK {id}"))
        }
        AdminError::Kek(k) => kek_error(k),
    }
}
