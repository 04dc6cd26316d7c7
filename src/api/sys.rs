//! `GET /v1/sys/health`, `GET /v1/sys/ping` and `GET /v1/openapi.json`: the only routes
//! without authentication.
//!
//! Health runs the KEK self-test and a store ping, at most once every
//! [`HEALTH_CACHE_SECONDS`] however often it is called, so an unauthenticated caller cannot
//! turn it into HSM load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::{AppState, method_not_allowed, reply, with_state};

pub(crate) const HEALTH_CACHE_SECONDS: u64 = 2;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Part {
    Ok,
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checked {
    kek: Part,
    store: Part,
}

/// The last health result. The async mutex is held across a check, so concurrent callers
/// after expiry wait for one check instead of each running their own.
#[derive(Default)]
pub struct HealthCache {
    last: tokio::sync::Mutex<Option<(Instant, Checked)>>,
}

#[derive(Serialize)]
struct Health {
    status: Part,
    kek: Part,
    store: Part,
    audit: Part,
    /// `ok`, or `failed` once the store refused a row for failing its integrity tag since
    /// start (the rows are in the audit trail as `integrity.row_refused`). It does not make
    /// the node unavailable: every other row still serves.
    integrity: Integrity,
    /// Refusals since start, repeats counted.
    refused_rows: u64,
    version: &'static str,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Integrity {
    Ok,
    Failed,
}

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let health = warp::path!("sys" / "health")
        .and(with_state(state))
        .and(call())
        .then(health);
    let ping = warp::path!("sys" / "ping").and(call()).map(ping);
    let openapi = warp::path!("openapi.json").and(call()).map(openapi);
    health.or(ping).unify().or(openapi).unify().boxed()
}

/// The OpenAPI description of the routes this build serves (kept in step with docs/API.md).
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

fn openapi(call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let mut response = Response::new(OPENAPI.into());
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}

fn ping(call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    reply::json(StatusCode::OK, &serde_json::json!({}))
}

async fn health(state: Arc<AppState>, call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let checked = check(&state).await;
    // The audit writer's state is current (it changes with each batch), not cached.
    let audit = if state.audit.is_healthy() {
        Part::Ok
    } else {
        Part::Unavailable
    };
    let ok = checked.kek == Part::Ok && checked.store == Part::Ok && audit == Part::Ok;
    let refused_rows = state.store_health.refusals();
    let body = Health {
        status: if ok { Part::Ok } else { Part::Unavailable },
        kek: checked.kek,
        store: checked.store,
        audit,
        integrity: if refused_rows == 0 {
            Integrity::Ok
        } else {
            Integrity::Failed
        },
        refused_rows,
        version: env!("CARGO_PKG_VERSION"),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    reply::json(status, &body)
}

async fn check(state: &AppState) -> Checked {
    let fresh = Duration::from_secs(HEALTH_CACHE_SECONDS);
    let mut last = state.health.last.lock().await;
    if let Some((at, checked)) = *last
        && at.elapsed() < fresh
    {
        return checked;
    }
    let kek = match state.kek.self_test().await {
        Ok(()) => Part::Ok,
        Err(e) => {
            tracing::warn!(error = %e, "health: KEK self-test failed");
            Part::Unavailable
        }
    };
    let store = match state.store_health.ping().await {
        Ok(()) => Part::Ok,
        Err(e) => {
            tracing::warn!(error = %e, "health: store ping failed");
            Part::Unavailable
        }
    };
    let checked = Checked { kek, store };
    *last = Some((Instant::now(), checked));
    checked
}
