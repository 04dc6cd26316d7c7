//! `GET /metrics`: the vault's counters and histograms in Prometheus's text format, for
//! callers the policies allow `ReadMetrics` (admin and auditor by default); and the route
//! templates the HTTP metrics are labelled with. The page names routes, methods, status
//! codes, KEK provider kinds and outcomes — never a key name, a caller or a secret.

use std::sync::Arc;
use std::time::Instant;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::context::{Call, call};
use super::{AppState, audited, authenticate, authorize, method_not_allowed, reply, with_state};
use crate::audit::action::Action;
use crate::error::ApiError;
use crate::metrics::{Page, status_text};
use crate::policy::Resource;

/// Prometheus's text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("metrics")
        .and(with_state(state))
        .and(call())
        .then(|state: Arc<AppState>, mut call: Call| async move {
            if call.method != Method::GET {
                return reply::error(method_not_allowed(&call, "GET"));
            }
            let result = read(&state, &mut call).await;
            audited(&state, &mut call, Action::ReadMetrics, "metrics".into(), result).await
        })
        .boxed()
}

/// The scraper's listener (`[metrics] listen`): `GET /metrics` without authentication, and
/// nothing else (404). Not audited: it is not a caller's request, and it shows nothing a
/// caller could not see on `/metrics` of the main listener.
pub fn scrape_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let page = warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: Arc<AppState>| text(render(&state)));
    page.or(warp::any().map(|| {
        reply::error(ApiError::new(
            crate::error::ErrorCode::NotFound,
            "only GET /metrics is served here",
        ))
    }))
    .unify()
    .boxed()
}

async fn read(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ReadMetrics,
        &Resource::Collection("metrics"),
    )?;
    call.expect_no_body().await?;
    Ok(text(render(state)))
}

/// The page as an answer.
pub fn text(page: String) -> Response {
    let mut response = Response::new(page.into());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

/// Every family, from the vault's services.
pub fn render(state: &AppState) -> String {
    let mut page = Page::default();
    let http = &state.http_metrics;
    page.counters(
        "sigvault_http_requests_total",
        "HTTP requests answered, by route template, method and status code.",
        &["route", "method", "code"],
        &http.requests,
    );
    page.histograms(
        "sigvault_http_request_duration_seconds",
        "Time from a request's arrival to its answer, by route template.",
        &["route"],
        &http.latency,
    );
    let kek = state.kek.metrics();
    page.counters(
        "sigvault_kek_calls_total",
        "Calls to the KEK provider (DEK wraps and unwraps), by provider kind, operation and outcome (ok, refused, unavailable).",
        &["provider", "operation", "outcome"],
        &kek.calls,
    );
    page.histograms(
        "sigvault_kek_call_duration_seconds",
        "Duration of the calls to the KEK provider, by provider kind and operation.",
        &["provider", "operation"],
        &kek.latency,
    );
    let cache = state.keys.cache_counts();
    page.gauges(
        "sigvault_key_cache_entries",
        "Entries in the key caches (metadata rows, unwrapped secrets).",
        &["cache"],
        &[
            (vec!["metadata"], cache.metadata_entries as f64),
            (vec!["secret"], cache.secret_entries as f64),
        ],
    );
    let hits = crate::metrics::CounterFamily::default();
    hits.add(&["metadata", "hit"], cache.metadata_hits);
    hits.add(&["metadata", "miss"], cache.metadata_misses);
    hits.add(&["secret", "hit"], cache.secret_hits);
    hits.add(&["secret", "miss"], cache.secret_misses);
    page.counters(
        "sigvault_key_cache_lookups_total",
        "Lookups in the key caches by result: a metadata miss reads the store, a secret miss unwraps with the KEK.",
        &["cache", "result"],
        &hits,
    );
    let audit = state.audit.metrics();
    page.histogram(
        "sigvault_audit_sync_duration_seconds",
        "Each fdatasync of the audit event file.",
        &audit.sync_seconds,
    );
    page.histogram(
        "sigvault_audit_sync_batch_events",
        "Events each fdatasync of the event file made durable.",
        &audit.sync_batch_events,
    );
    page.histogram(
        "sigvault_audit_index_batch_events",
        "Events each batch moved into the store's index.",
        &audit.index_batch_events,
    );
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    page.counter(
        "sigvault_audit_sync_failures_total",
        "Failed fdatasyncs of the event file (events are refused until it recovers).",
        load(&audit.sync_failures),
    );
    page.counter(
        "sigvault_audit_index_failures_total",
        "Batches the store failed to index (retried).",
        load(&audit.index_failures),
    );
    let decisions = crate::metrics::CounterFamily::default();
    let (allowed, limited) = state.apikeys.ratelimit_decisions();
    decisions.add(&["apikey", "allowed"], allowed);
    decisions.add(&["apikey", "limited"], limited);
    decisions.add(&["auth", "limited"], load(&state.http_metrics.auth_limited));
    page.counters(
        "sigvault_ratelimit_decisions_total",
        "Rate-limit decisions: API keys' own limits (allowed or limited) and authentications refused for too many failures.",
        &["limiter", "decision"],
        &decisions,
    );
    page.gauge(
        "sigvault_store_up",
        "Whether the store answers its probe (1) or not (0).",
        if state.store_health.available() { 1.0 } else { 0.0 },
    );
    let pools = state.store_health.pools();
    let mut series = Vec::new();
    for p in &pools {
        series.push((vec![p.name, "busy"], f64::from(p.open.saturating_sub(p.idle))));
        series.push((vec![p.name, "idle"], f64::from(p.idle)));
        series.push((vec![p.name, "max"], f64::from(p.max)));
    }
    page.gauges(
        "sigvault_store_pool_connections",
        "The store's connection pools: connections in use (busy), idle, and the most allowed (max).",
        &["pool", "state"],
        &series,
    );
    page.finish()
}

/// The label of a method: a fixed text.
fn method_text(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ if method.as_str() == "LIST" => "LIST",
        _ => "other",
    }
}

/// Records one answered request.
pub(crate) fn observe(state: &AppState, path: &str, method: &Method, status: StatusCode, started: Instant) {
    let route = route_template(path, state.transit_mount.as_deref(), state.kms_path.as_deref());
    let http = &state.http_metrics;
    http.requests
        .add(&[route, method_text(method), status_text(status.as_u16())], 1);
    http.latency.observe(&[route], started.elapsed().as_secs_f64());
}

const KEY_ACTIONS: [(&str, &str); 15] = [
    ("rotate", "/v1/keys/{name}/rotate"),
    ("restore", "/v1/keys/{name}/restore"),
    ("import", "/v1/keys/{name}/import"),
    ("import-wrapped", "/v1/keys/{name}/import-wrapped"),
    ("export", "/v1/keys/{name}/export"),
    ("backup", "/v1/keys/{name}/backup"),
    ("restore-backup", "/v1/keys/{name}/restore-backup"),
    ("sign", "/v1/keys/{name}/sign"),
    ("verify", "/v1/keys/{name}/verify"),
    ("encrypt", "/v1/keys/{name}/encrypt"),
    ("decrypt", "/v1/keys/{name}/decrypt"),
    ("rewrap", "/v1/keys/{name}/rewrap"),
    ("datakey", "/v1/keys/{name}/datakey"),
    ("wrap", "/v1/keys/{name}/wrap"),
    ("unwrap", "/v1/keys/{name}/unwrap"),
];

const TRANSIT_OPERATIONS: [(&str, &str); 7] = [
    ("keys", "/v1/{transit}/keys"),
    ("hmac", "/v1/{transit}/hmac"),
    ("verify", "/v1/{transit}/verify"),
    ("encrypt", "/v1/{transit}/encrypt"),
    ("decrypt", "/v1/{transit}/decrypt"),
    ("rewrap", "/v1/{transit}/rewrap"),
    ("datakey", "/v1/{transit}/datakey"),
];

/// The route a path is served by, as a template (`/v1/keys/{name}/sign`): a fixed text, so
/// the label's values are bounded whatever paths callers send (`other` for the rest).
pub(crate) fn route_template(path: &str, transit_mount: Option<&str>, kms_path: Option<&str>) -> &'static str {
    if kms_path == Some(path) {
        return "kms";
    }
    if path == "/metrics" {
        return "/metrics";
    }
    let Some(rest) = path.strip_prefix("/v1/") else {
        return "other";
    };
    if let Some(after) = transit_mount
        .and_then(|m| rest.strip_prefix(m))
        .and_then(|r| r.strip_prefix('/'))
    {
        let op = after.split('/').next().unwrap_or_default();
        return TRANSIT_OPERATIONS
            .iter()
            .find(|(name, _)| *name == op)
            .map_or("/v1/{transit}/other", |(_, t)| t);
    }
    let mut segments = rest.split('/');
    let parts = (segments.next(), segments.next(), segments.next(), segments.next());
    match parts {
        (Some("keys"), None, None, None) => "/v1/keys",
        (Some("keys"), Some(_), None, None) => "/v1/keys/{name}",
        (Some("keys"), Some(_), Some(action), None) => KEY_ACTIONS
            .iter()
            .find(|(name, _)| *name == action)
            .map_or("other", |(_, t)| t),
        (Some("credentials"), None, None, None) => "/v1/credentials",
        (Some("credentials"), Some("import"), None, None) => "/v1/credentials/import",
        (Some("credentials"), Some(_), None, None) => "/v1/credentials/{id}",
        (Some("credentials"), Some(_), Some("activity"), None) => "/v1/credentials/{id}/activity",
        (Some("apikeys"), None, None, None) => "/v1/apikeys",
        (Some("apikeys"), Some("verify"), None, None) => "/v1/apikeys/verify",
        (Some("apikeys"), Some(_), None, None) => "/v1/apikeys/{id}",
        (Some("apikeys"), Some(_), Some("reroll"), None) => "/v1/apikeys/{id}/reroll",
        (Some("apikeys"), Some(_), Some("activity"), None) => "/v1/apikeys/{id}/activity",
        (Some("approvals"), None, None, None) => "/v1/approvals",
        (Some("approvals"), Some(_), None, None) => "/v1/approvals/{id}",
        (Some("approvals"), Some(_), Some("approve"), None) => "/v1/approvals/{id}/approve",
        (Some("auth"), Some("tokens"), None, None) => "/v1/auth/tokens",
        (Some("auth"), Some("tokens"), Some(_), None) => "/v1/auth/tokens/{id}",
        (Some("auth"), Some("whoami"), None, None) => "/v1/auth/whoami",
        (Some("sys"), Some("health"), None, None) => "/v1/sys/health",
        (Some("sys"), Some("ping"), None, None) => "/v1/sys/ping",
        (Some("sys"), Some("kek"), None, None) => "/v1/sys/kek",
        (Some("sys"), Some("kek"), Some("rotate"), None) => "/v1/sys/kek/rotate",
        (Some("sys"), Some("kek"), Some("retire"), None) => "/v1/sys/kek/retire",
        (Some("sys"), Some("policies"), Some("reload"), None) => "/v1/sys/policies/reload",
        (Some("sigv4"), Some("verify"), None, None) => "/v1/sigv4/verify",
        (Some("sigv4"), Some("signing-key"), None, None) => "/v1/sigv4/signing-key",
        (Some("audit"), Some("events"), None, None) => "/v1/audit/events",
        (Some("audit"), Some("verify"), None, None) => "/v1/audit/verify",
        (Some("reports"), Some("compliance"), None, None) => "/v1/reports/compliance",
        (Some("wrapping-key"), None, None, None) => "/v1/wrapping-key",
        (Some("wrapping-key"), Some("rotate"), None, None) => "/v1/wrapping-key/rotate",
        (Some("openapi.json"), None, None, None) => "/v1/openapi.json",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_a_bounded_set_of_templates() {
        let t = |p: &str| route_template(p, Some("transit"), Some("/"));
        assert_eq!(t("/v1/keys/payments.webhook/sign"), "/v1/keys/{name}/sign");
        assert_eq!(t("/v1/keys/x"), "/v1/keys/{name}");
        assert_eq!(t("/v1/keys"), "/v1/keys");
        assert_eq!(t("/v1/keys/x/nonsense"), "other");
        assert_eq!(t("/v1/credentials/SVAKAAAA/activity"), "/v1/credentials/{id}/activity");
        assert_eq!(t("/v1/transit/hmac/k/sha2-256"), "/v1/{transit}/hmac");
        assert_eq!(t("/v1/transit/whatever"), "/v1/{transit}/other");
        assert_eq!(t("/"), "kms");
        assert_eq!(t("/metrics"), "/metrics");
        assert_eq!(t("/v1/sys/ping"), "/v1/sys/ping");
        assert_eq!(t("/anything/else"), "other");
        assert_eq!(route_template("/", None, None), "other");
    }
}
