//! `GET /v1/audit/events` (filters, cursor paging) and `GET /v1/audit/verify`. Reading the
//! trail is itself audited.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::reply::{self, json};
use super::{AppState, audited, authenticate, authorize, method_not_allowed, store_error, with_state};
use crate::audit::AuditFilter;
use crate::audit::action::Action;
use crate::audit::event::{AuditEvent, hex};
use crate::error::{ApiError, ErrorCode};
use crate::policy::Resource;

const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;
const MAX_FILTER_LEN: usize = 256;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let events = warp::path!("audit" / "events").and(s()).and(call()).then(events);
    let verify = warp::path!("audit" / "verify").and(s()).and(call()).then(verify);
    events.or(verify).unify().boxed()
}

#[derive(Serialize)]
struct EventJson {
    #[serde(flatten)]
    event: AuditEvent,
    mac: String,
}

async fn events(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = list_events(&state, &mut call).await;
    audited(&state, &mut call, Action::ReadAudit, "audit".into(), result).await
}

async fn verify(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = verify_now(&state, &mut call).await;
    audited(&state, &mut call, Action::VerifyAudit, "audit".into(), result).await
}

fn time_param(call: &Call, name: &str) -> Result<Option<i64>, ApiError> {
    call.query_param(name)?
        .map(|text| {
            time::OffsetDateTime::parse(&text, &Rfc3339)
                .map(crate::clock::unix_ms)
                .map_err(|_| ApiError::invalid(format!("`{name}` must be an RFC 3339 time")))
        })
        .transpose()
}

fn text_param(call: &Call, name: &str) -> Result<Option<String>, ApiError> {
    let value = call.query_param(name)?;
    if value.as_ref().is_some_and(|v| v.len() > MAX_FILTER_LEN) {
        return Err(ApiError::invalid(format!(
            "`{name}` is limited to {MAX_FILTER_LEN} bytes"
        )));
    }
    Ok(value)
}

async fn list_events(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(state, call, &caller, Action::ReadAudit, &Resource::Collection("audit"))?;
    call.expect_no_body().await?;
    let filter = AuditFilter {
        since_ms: time_param(call, "since")?,
        until_ms: time_param(call, "until")?,
        principal: text_param(call, "principal")?,
        action: text_param(call, "action")?,
        resource: text_param(call, "resource")?,
    };
    let limit = call.page_limit(DEFAULT_PAGE, MAX_PAGE)?;
    let cursor = call.query_param("cursor")?.filter(|c| !c.is_empty());
    let mut after = match &cursor {
        None => BTreeMap::new(),
        Some(c) => decode_cursor(c).ok_or_else(|| ApiError::invalid("cursor is not one this server issued"))?,
    };
    state
        .audit
        .catch_up()
        .await
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))?;
    let page = state
        .audit
        .trail()
        .events(&filter, &after, limit)
        .await
        .map_err(store_error)?;
    let next = (page.len() == limit as usize).then(|| {
        for (event, _) in &page {
            after.insert(event.node.clone(), event.seq);
        }
        encode_cursor(&after)
    });
    let events: Vec<EventJson> = page
        .into_iter()
        .map(|(event, mac)| EventJson { event, mac: hex(&mac) })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "events": events, "next": next }),
    ))
}

/// Most nodes a cursor names (each server is one node; a cursor naming more was not made
/// here).
const MAX_CURSOR_NODES: usize = 1024;

/// The position of every node listed so far: `node seq` lines, base64url.
fn encode_cursor(positions: &BTreeMap<String, u64>) -> String {
    let text: String = positions.iter().map(|(node, seq)| format!("{node} {seq}\n")).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> Option<BTreeMap<String, u64>> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let mut positions = BTreeMap::new();
    for line in text.lines() {
        let (node, seq) = line.split_once(' ')?;
        if node.is_empty() || positions.len() >= MAX_CURSOR_NODES {
            return None;
        }
        positions.insert(node.to_owned(), seq.parse().ok()?);
    }
    (!positions.is_empty()).then_some(positions)
}

async fn verify_now(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::VerifyAudit,
        &Resource::Collection("audit"),
    )?;
    call.expect_no_body().await?;
    // Everything written before this request is checked in all three sinks.
    state
        .audit
        .catch_up()
        .await
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))?;
    let report = state
        .audit
        .trail()
        .verify()
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    Ok(json(StatusCode::OK, &report))
}
