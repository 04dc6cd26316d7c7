//! The HTTP API: warp filters, one file per resource. Handlers authenticate, read a
//! bounded body, call a domain module and shape its answer; they never touch the store.
//!
//! Every path filter is followed by handlers that never reject, so the only rejection that
//! reaches [`recover`] is "no such path": error ordering (404, then 405, then 401, then
//! 413/400) is decided in the handlers, not by warp's rejection ranking.

pub mod apikeys;
pub mod approvals;
pub mod audit;
pub mod auth;
pub(crate) mod context;
pub mod credentials;
pub mod custody;
mod fingerprint;
pub mod kek;
pub mod keys;
pub mod kms;
mod limits;
pub mod metrics;
pub mod reply;
pub mod reports;
pub mod sigv4;
pub mod sys;
pub mod transit;

pub use limits::Limits;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use crate::audit::action::Action;
use crate::audit::event::{Decision, EventData};
use crate::audit::writer::Auditor;
use crate::auth::certificate::CertificateGroups;
use crate::auth::{AuthError, Authenticator, Principal, Via};
use crate::clock::SharedClock;
use crate::error::{ApiError, ErrorCode};
use crate::kek::{KekError, Keyring};
use crate::keys::{KeyError, KeyService};
use crate::policy::{RequestFacts, Resource};
use crate::store::StoreError;
use context::Call;

/// Everything the handlers share.
pub struct AppState {
    pub policies: crate::policy::PolicyEngine,
    pub keys: KeyService,
    pub credentials: crate::credentials::CredentialService,
    pub apikeys: crate::apikeys::ApiKeyService,
    /// Dual control's approval requests.
    pub approvals: crate::approvals::ApprovalService,
    pub audit: Auditor,
    pub clock: SharedClock,
    pub auth: Authenticator,
    pub(crate) auth_settings: crate::auth::AuthSettings,
    pub kek: Keyring,
    /// The KEK rewrap job (`rewrap`): status for `GET /v1/sys/kek`, woken by a rotation.
    pub rewrap: Arc<crate::rewrap::Rewrapper>,
    /// The store's liveness, for the health route (handlers never hold the store).
    pub(crate) store_health: crate::health::StoreHealth,
    pub limits: Limits,
    pub report: crate::report::ReportSettings,
    pub health: sys::HealthCache,
    /// Groups of callers named by a TLS client certificate.
    pub(crate) certificate_groups: CertificateGroups,
    /// Where the Vault Transit-compatible API is mounted under `/v1` (`[compat]
    /// transit_mount`); `None` when it is off.
    pub transit_mount: Option<String>,
    /// The path of the AWS KMS-compatible API (`[compat] kms_path`, `/` by default); `None`
    /// when it is off.
    pub kms_path: Option<String>,
    /// The HTTP requests answered, for `/metrics`.
    pub http_metrics: crate::metrics::HttpMetrics,
}

/// All routes, with the not-found fallback. The `v1` segment is matched once; the hot
/// `/v1/keys…` routes come first.
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let observed = Arc::clone(&state);
    let served = Arc::clone(&state);
    warp::path::full()
        .and(warp::method())
        .and(warp::any().map(std::time::Instant::now))
        .and(served_routes(served))
        .map(
            move |path: warp::path::FullPath, method: warp::http::Method, started, response: Response| {
                metrics::observe(&observed, path.as_str(), &method, response.status(), started);
                response
            },
        )
        .boxed()
}

/// Every route, unobserved.
fn served_routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path("v1")
        .and(
            keys::routes(Arc::clone(&state))
                .or(audit::routes(Arc::clone(&state)))
                .unify()
                .or(sigv4::routes(Arc::clone(&state)))
                .unify()
                .or(apikeys::routes(Arc::clone(&state)))
                .unify()
                .or(credentials::routes(Arc::clone(&state)))
                .unify()
                .or(auth::routes(Arc::clone(&state)))
                .unify()
                .or(reports::routes(Arc::clone(&state)))
                .unify()
                .or(kek::routes(Arc::clone(&state)))
                .unify()
                .or(custody::routes(Arc::clone(&state)))
                .unify()
                .or(approvals::routes(Arc::clone(&state)))
                .unify()
                .or(sys::routes(Arc::clone(&state)))
                .unify()
                .or(transit::routes(Arc::clone(&state)))
                .unify(),
        )
        .or(kms::routes(Arc::clone(&state)))
        .unify()
        .or(metrics::routes(state))
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}

async fn recover(_rejection: warp::Rejection) -> Result<Response, Infallible> {
    Ok(reply::error(ApiError::new(ErrorCode::NotFound, "no such route")))
}

/// The segments of a configured path (a compatible API's mount): one to four, each 1 to 64
/// characters of `[A-Za-z0-9._-]` and not only dots, so the path is always the same route
/// to every client.
pub(crate) fn path_segments(path: &str) -> Result<Vec<&str>, String> {
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() > 4 {
        return Err("at most four path segments".into());
    }
    let valid = |s: &&str| {
        !s.is_empty()
            && s.len() <= 64
            && !s.bytes().all(|b| b == b'.')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    if !segments.iter().all(valid) {
        return Err("segments of 1 to 64 characters of A-Z a-z 0-9 . _ -, not only dots".into());
    }
    Ok(segments)
}

/// Passes the shared state into a filter chain.
pub(crate) fn with_state(state: Arc<AppState>) -> impl Filter<Extract = (Arc<AppState>,), Error = Infallible> + Clone {
    warp::any().map(move || Arc::clone(&state))
}

/// The caller: from its bearer token or, when it sent no `Authorization` header, its
/// verified TLS client certificate; noted for the audit event either way. Failures are
/// 401 `UNAUTHENTICATED`, or 429 `RATE_LIMITED` once the credential failed too often from the
/// source address, or the address failed with too many distinct credentials.
pub async fn authenticate(state: &AppState, call: &mut Call) -> Result<Arc<Principal>, ApiError> {
    // A store that stopped answering fails every request here, cached or not, unless the
    // operator chose to serve from memory meanwhile.
    if !state.store_health.serving() {
        return Err(ApiError::new(
            ErrorCode::StoreUnavailable,
            "the store does not answer (store.serve_cached_when_unavailable is off)",
        ));
    }
    if call.header("authorization").is_none()
        && let Some(principal) = certificate_principal(state, call)
    {
        call.note.principal = Some(principal.name.clone());
        return Ok(principal);
    }
    let source = call.client.map(|a| a.ip());
    match state.auth.authenticate(call.header("authorization"), source).await {
        Ok(principal) => {
            call.note.principal = Some(principal.name.clone());
            Ok(principal)
        }
        Err(e) => {
            call.note.decision = Decision::Deny;
            Err(match e {
                AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked => {
                    ApiError::new(ErrorCode::Unauthenticated, e.to_string())
                }
                AuthError::RateLimited(seconds) => {
                    state
                        .http_metrics
                        .auth_limited
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    ApiError::new(ErrorCode::RateLimited, e.to_string()).retry_after(seconds)
                }
                AuthError::Unavailable(s) => store_error(s),
            })
        }
    }
}

/// Decides with the policies whether `caller` may do `action` on `resource`, and notes the
/// decision and the deciding policy for the audit event. A deny is 403 `PERMISSION_DENIED`.
pub(crate) fn authorize(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    resource: &Resource<'_>,
) -> Result<(), ApiError> {
    let facts = RequestFacts {
        source_ip: call.client.map(|a| a.ip()),
        tls: call.tls.is_some(),
        mtls: caller.via == Via::Mtls,
        now_unix_s: state.clock.now_ms().div_euclid(1000),
    };
    let decision = state.policies.decide(caller, action, resource, facts);
    call.note.policy = decision.policy;
    if decision.allowed {
        call.note.decision = Decision::Allow;
        Ok(())
    } else {
        call.note.decision = Decision::Deny;
        let on = match resource {
            Resource::Key { name, .. } => format!("key '{name}'"),
            Resource::Credential { id, .. } => format!("credential '{id}'"),
            Resource::ApiKey { id, .. } => format!("API key '{id}'"),
            Resource::Collection(name) => (*name).to_owned(),
        };
        Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!("{} may not {} on {on}", caller.name, action.as_str()),
        ))
    }
}

/// [`authorize`] for an operation on existing key `name`, with its owner and tags. A key
/// that does not exist is decided on its name alone (owner ""), so a caller who may not
/// use it learns nothing about whether it exists. Returns the key's facts it decided on
/// (`None`: no such key), for a handler that needs them too (no second lookup).
pub(crate) async fn authorize_key(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    name: &str,
) -> Result<Option<crate::keys::KeyFacts>, ApiError> {
    let facts = state.keys.facts(name).await?;
    let no_tags = BTreeMap::new();
    let resource = match &facts {
        Some(f) => Resource::Key {
            name,
            owner: f.owner(),
            tags: f.tags(),
        },
        None => Resource::Key {
            name,
            owner: "",
            tags: &no_tags,
        },
    };
    authorize(state, call, caller, action, &resource)?;
    Ok(facts)
}

/// The caller named by the client certificate rustls verified for this connection, if any.
fn certificate_principal(state: &AppState, call: &Call) -> Option<Arc<Principal>> {
    let name = call.tls.as_ref()?.client_principal.as_deref()?;
    state.certificate_groups.principal(name).map(Arc::new)
}

/// The event of this request as its note stands, with `outcome`.
fn event_data(state: &AppState, call: &Call, action: Action, resource: &str, outcome: &str) -> EventData {
    let note = &call.note;
    EventData {
        time_ms: state.clock.now_ms(),
        request_id: context::request_id(),
        principal: note.principal.clone().unwrap_or_else(|| "-".into()),
        action: action.as_str().into(),
        resource: note.resource.clone().unwrap_or_else(|| resource.to_owned()),
        key_version: note.key_version,
        decision: note.decision,
        policy: note.policy.clone(),
        outcome: outcome.into(),
        source_ip: call.client.map(|a| crate::model::audit::ip_text(a.ip())),
        user_agent: call.header("user-agent").map(str::to_owned),
        secret_hmac: note.secret_hmac.clone(),
        api: note.api.map(str::to_owned),
    }
}

/// Write-ahead for a change: makes the request's intent durable (an event with outcome
/// `intent`, naming the caller, the decision and the resource) before the handler changes
/// anything. When it cannot be made durable the change must not happen: the answer is 503
/// `AUDIT_UNAVAILABLE` and nothing in the store differs. Called by every handler that
/// changes state, after authorization and validation, right before the change; the
/// outcome follows in [`audited`].
pub(crate) async fn intend(state: &AppState, call: &mut Call, action: Action, resource: &str) -> Result<(), ApiError> {
    let event = event_data(state, call, action, resource, "intent");
    let seq = state
        .audit
        .record_durable(event)
        .await
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))?;
    call.note.intent = Some(seq);
    Ok(())
}

/// Records the audit event of a request that reached a handler, then answers — or, when
/// the event cannot be made durable, answers 503 `AUDIT_UNAVAILABLE` instead and counts
/// nothing. Nothing is acknowledged that the trail does not hold.
///
/// A change whose intent is durable ([`intend`]) has happened (or failed) already: if its
/// outcome event cannot be written, it is kept and written as soon as the trail works again
/// ([`Auditor::defer`]), and a change that succeeded is answered as such — its intent is in
/// the trail, and a retry would repeat it.
pub async fn audited(
    state: &AppState,
    call: &mut Call,
    action: Action,
    resource: String,
    result: Result<Response, ApiError>,
) -> Response {
    audited_as(state, call, (action, resource), result, reply::error).await
}

/// [`audited`] for a compatible API, whose errors (the handler's, and the trail's own) are
/// rendered in that API's shape by `render`.
pub(crate) async fn audited_as(
    state: &AppState,
    call: &mut Call,
    (action, resource): (Action, String),
    result: Result<Response, ApiError>,
    render: fn(ApiError) -> Response,
) -> Response {
    let outcome = match &result {
        Ok(_) => call.note.outcome.unwrap_or("ok"),
        Err(e) => e.code.as_str(),
    };
    let event = event_data(state, call, action, &resource, outcome);
    let note = std::mem::take(&mut call.note);
    // Only a change's outcome is kept for a retry: a read's event is not copied.
    let to_defer = note.intent.is_some().then(|| event.clone());
    let principal = context::access_log_enabled().then(|| context::AccessPrincipal(event.principal.clone()));
    let mut response = match state.audit.record(event).await {
        Ok(_) => {
            state.keys.count(&note.usage);
            result.unwrap_or_else(render)
        }
        Err(e) if let Some(event) = to_defer => {
            state.audit.defer(event);
            match result {
                Ok(_) => result.unwrap_or_else(render),
                Err(_) => render(ApiError::new(ErrorCode::AuditUnavailable, e.to_string())),
            }
        }
        Err(e) => render(ApiError::new(ErrorCode::AuditUnavailable, e.to_string())),
    };
    if let Some(principal) = principal {
        response.extensions_mut().insert(principal);
    }
    response
}

/// 405 for a route that takes only `allow` (e.g. `"GET, PATCH, DELETE"`), which the answer's
/// `Allow` header lists.
pub(crate) fn method_not_allowed(call: &Call, allow: &'static str) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on this route", call.method),
    )
    .allow(allow)
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotFound(_) => ApiError::new(ErrorCode::KeyNotFound, e.to_string()),
            KeyError::AlreadyExists(_) => ApiError::new(ErrorCode::AlreadyExists, e.to_string()),
            KeyError::Invalid(m) => ApiError::new(ErrorCode::InvalidArgument, m),
            KeyError::Precondition(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
            KeyError::Forbidden(m) => ApiError::new(ErrorCode::PermissionDenied, m),
            KeyError::Superseded(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
            KeyError::TooLarge(m) => ApiError::new(ErrorCode::PayloadTooLarge, m),
            KeyError::Kek(k) => kek_error(k),
            KeyError::Store(s) => store_error(s),
            KeyError::Corrupt(m) => ApiError::internal(format!("corrupt key data: {m}")),
            KeyError::Random => ApiError::internal(e),
        }
    }
}

pub(crate) fn kek_error(e: KekError) -> ApiError {
    // A provider that cannot do this at all (no HSM behind AWS KMS): a precondition of this
    // deployment, for every caller of every service alike.
    if let KekError::Unsupported(why) = e {
        return ApiError::new(ErrorCode::FailedPrecondition, why);
    }
    if e.is_unavailable() {
        ApiError::new(ErrorCode::KekUnavailable, e.to_string())
    } else {
        // A record that does not open was altered (or belongs to another row): an integrity
        // failure, not a caller error.
        ApiError::new(ErrorCode::IntegrityError, format!("sealed record failed to open: {e}"))
    }
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists => ApiError::new(ErrorCode::AlreadyExists, "already exists"),
        StoreError::LimitReached(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
        StoreError::Corrupt(m) => ApiError::internal(format!("corrupt stored data: {m}")),
        StoreError::Integrity { .. } => ApiError::new(ErrorCode::IntegrityError, e.to_string()),
        StoreError::Conflict | StoreError::Unavailable(_) | StoreError::Open { .. } | StoreError::Migration { .. } => {
            ApiError::new(ErrorCode::StoreUnavailable, e.to_string())
        }
    }
}
