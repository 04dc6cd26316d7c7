//! `/v1/approvals`: dual control (`[custodian] quorum`, see [`crate::approvals`]). A caller
//! asks (`POST /v1/approvals` with the action, the resource and why), other custodians
//! approve (`POST /v1/approvals/{id}/approve`), and the requester then runs the operation
//! with the request's id in the `x-sigvault-approval` header ([`require_approval`]), once.
//! Every step is an audit event: `RequestApproval` and `ApproveRequest` under
//! `approval:<id>`, and the use as `approval.used` under the same `request_id` as the
//! operation it allowed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call, request_id};
use super::reply::{self, json, parse_json};
use super::{AppState, audited, authenticate, authorize, intend, method_not_allowed, store_error, with_state};
use crate::approvals::{ApprovalError, ApprovalService, MAX_LIST};
use crate::audit::action::{APPROVAL_USED, Action};
use crate::audit::event::{Decision, EventData};
use crate::auth::Principal;
use crate::clock::from_unix_ms;
use crate::error::{ApiError, ErrorCode};
use crate::policy::Resource;
use crate::store::ApprovalRecord;
use crate::timefmt::rfc3339;

/// The header an operation names its approval in.
pub const APPROVAL_HEADER: &str = "x-sigvault-approval";
/// The policy collection of approval requests.
const COLLECTION: &str = "approvals";
/// Longest approval id accepted in a path or header.
const MAX_ID: usize = 64;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path("approvals")
        .and(warp::path::tail())
        .and(with_state(state))
        .and(call())
        .then(dispatch)
        .boxed()
}

async fn dispatch(tail: warp::path::Tail, state: Arc<AppState>, mut call: Call) -> Response {
    let mut segments = tail.as_str().split('/');
    let (action, resource, result) = match (segments.next(), segments.next(), segments.next()) {
        (None | Some(""), None, None) => match call.method {
            Method::GET => (
                Action::ReadApprovals,
                COLLECTION.to_owned(),
                list(&state, &mut call).await,
            ),
            Method::POST => (
                Action::RequestApproval,
                COLLECTION.to_owned(),
                create(&state, &mut call).await,
            ),
            _ => return reply::error(method_not_allowed(&call, "GET, POST")),
        },
        (Some(id), None, None) if !id.is_empty() => {
            if call.method != Method::GET {
                return reply::error(method_not_allowed(&call, "GET"));
            }
            (
                Action::ReadApprovals,
                resource_of(id),
                read(&state, &mut call, id).await,
            )
        }
        (Some(id), Some("approve"), None) if !id.is_empty() => {
            if call.method != Method::POST {
                return reply::error(method_not_allowed(&call, "POST"));
            }
            (
                Action::ApproveRequest,
                resource_of(id),
                approve(&state, &mut call, id).await,
            )
        }
        _ => return reply::error(ApiError::new(ErrorCode::NotFound, "no such route")),
    };
    audited(&state, &mut call, action, resource, result).await
}

/// `approval:<id>` for the trail; an id that cannot be one is not copied into it.
fn resource_of(id: &str) -> String {
    if valid_id(id) {
        format!("approval:{id}")
    } else {
        "approval:<invalid id>".into()
    }
}

/// 404 for an id no request could have (it is not looked up).
fn known_shape(id: &str) -> Result<(), ApiError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no approval request '{id}'"),
        ))
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    action: String,
    resource: String,
    reason: String,
}

#[derive(Serialize)]
struct ApprovalJson {
    id: String,
    action: String,
    resource: String,
    reason: String,
    requested_by: String,
    approvers: Vec<String>,
    /// The custodians standing behind it (the requester when a custodian, and the approvers).
    approvals: u32,
    quorum: u32,
    state: &'static str,
    created_at: String,
    expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    used_at: Option<String>,
}

fn approval_json(service: &ApprovalService, r: ApprovalRecord) -> ApprovalJson {
    ApprovalJson {
        approvals: ApprovalService::count(&r),
        quorum: service.quorum(),
        state: service.state(&r).as_str(),
        created_at: rfc3339(from_unix_ms(r.created_at_ms)),
        expires_at: rfc3339(from_unix_ms(r.expires_at_ms)),
        used_at: r.used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        id: r.id,
        action: r.action,
        resource: r.resource,
        reason: r.reason,
        requested_by: r.requested_by,
        approvers: r.approvers,
    }
}

pub(crate) fn approval_error(e: ApprovalError) -> ApiError {
    match e {
        ApprovalError::Invalid(m) => ApiError::invalid(m),
        ApprovalError::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        ApprovalError::Forbidden(m) => ApiError::new(ErrorCode::PermissionDenied, m),
        ApprovalError::Required(m) => ApiError::new(ErrorCode::ApprovalRequired, m),
        ApprovalError::Closed(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
        ApprovalError::Store(s) => store_error(s),
        ApprovalError::Random => ApiError::internal(e),
    }
}

async fn create(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::RequestApproval,
        &Resource::Collection(COLLECTION),
    )?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: CreateRequest = parse_json(&body)?;
    intend(state, call, Action::RequestApproval, COLLECTION).await?;
    let made = state
        .approvals
        .request(&caller, &req.action, &req.resource, &req.reason)
        .await
        .map_err(approval_error)?;
    call.note.resource = Some(format!("approval:{}", made.id));
    Ok(json(StatusCode::CREATED, &approval_json(&state.approvals, made)))
}

async fn list(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ReadApprovals,
        &Resource::Collection(COLLECTION),
    )?;
    call.expect_no_body().await?;
    let limit = call.page_limit(100, MAX_LIST)?;
    let found = state.approvals.list(limit).await.map_err(approval_error)?;
    let approvals: Vec<ApprovalJson> = found.into_iter().map(|r| approval_json(&state.approvals, r)).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "approvals": approvals })))
}

async fn read(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ReadApprovals,
        &Resource::Collection(COLLECTION),
    )?;
    call.expect_no_body().await?;
    known_shape(id)?;
    let found = state.approvals.get(id).await.map_err(approval_error)?;
    Ok(json(StatusCode::OK, &approval_json(&state.approvals, found)))
}

async fn approve(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ApproveRequest,
        &Resource::Collection(COLLECTION),
    )?;
    super::keys::lifecycle::no_options(state, call).await?;
    known_shape(id)?;
    intend(state, call, Action::ApproveRequest, &resource_of(id)).await?;
    let approved = state.approvals.approve(id, &caller).await.map_err(approval_error)?;
    Ok(json(StatusCode::OK, &approval_json(&state.approvals, approved)))
}

/// With dual control on and `action` among the gated ones, spends the approval the request
/// names in `x-sigvault-approval` on `action` over `resource` (which must be exactly what
/// it was asked for), and records the use — durably, before the operation runs — as an
/// `approval.used` event with the operation's `request_id`. Without an approval that
/// passes, the operation answers 403 `APPROVAL_REQUIRED` and nothing is spent. Called after
/// authorization and validation, right before [`intend`].
pub(crate) async fn require_approval(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    resource: &str,
) -> Result<(), ApiError> {
    if !state.approvals.gates(action) {
        return Ok(());
    }
    let Some(id) = call.header(APPROVAL_HEADER).map(str::trim).filter(|id| !id.is_empty()) else {
        return Err(ApiError::new(
            ErrorCode::ApprovalRequired,
            format!(
                "dual control is on (quorum {}): {} needs an approval request (POST /v1/approvals) approved by the quorum, named in the {APPROVAL_HEADER} header",
                state.approvals.quorum(),
                action.as_str()
            ),
        ));
    };
    if !valid_id(id) {
        return Err(ApiError::new(
            ErrorCode::ApprovalRequired,
            format!("{APPROVAL_HEADER} does not name an approval request"),
        ));
    }
    let used = state
        .approvals
        .consume(id, caller, action, resource)
        .await
        .map_err(approval_error)?;
    let event = EventData {
        time_ms: state.clock.now_ms(),
        request_id: request_id(),
        principal: caller.name.clone(),
        action: APPROVAL_USED.into(),
        resource: format!("approval:{}", used.id),
        key_version: None,
        decision: Decision::Allow,
        policy: None,
        outcome: "ok".into(),
        source_ip: call.client.map(|a| crate::model::audit::ip_text(a.ip())),
        user_agent: call.header("user-agent").map(str::to_owned),
        secret_hmac: None,
        api: call.note.api.map(str::to_owned),
    };
    state
        .audit
        .record_durable(event)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))
}
