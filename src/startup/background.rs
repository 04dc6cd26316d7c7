//! What runs beside the server: usage and activity flushes, the audit events of rows the
//! store refused, cache sweeps, due deletions and rotations, and policy reloads on SIGHUP.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use crate::api::AppState;
use crate::api::context::{new_request_id, request_id};
use crate::integrity::ROW_REFUSED;
use crate::model::audit::{Decision, EventData};

/// How often expired cache entries are swept and due deletions/rotations run.
const MAINTENANCE_INTERVAL: StdDuration = StdDuration::from_secs(30);

/// Takes SIGHUP over (see [`Application`]'s `hangups`).
pub(super) fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload policies with POST /v1/sys/policies/reload");
            None
        }
    }
}

/// Reloads the policies on SIGHUP (an invalid set is refused and the old one stays).
pub(super) fn spawn_policy_reloader(
    state: Arc<AppState>,
    mut hangups: tokio::signal::unix::Signal,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match state.policies.reload() {
                Ok(count) => tracing::info!(policies = count, "policies reloaded (SIGHUP)"),
                Err(errors) => {
                    tracing::error!(errors = %errors, "policy reload refused (SIGHUP); the previous set stays in force")
                }
            }
        }
    })
}

pub(super) fn spawn_background(state: Arc<AppState>, flush_interval: StdDuration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(flush_interval);
        let mut maintenance = tokio::time::interval(MAINTENANCE_INTERVAL);
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = state.keys.flush_usage().await {
                        tracing::warn!(error = %e, "usage flush failed; counts kept for the next try");
                    }
                    if let Err(e) = state.credentials.flush_activity().await {
                        tracing::warn!(error = %e, "credential activity flush failed; kept for the next try");
                    }
                    if let Err(e) = state.apikeys.flush_usage().await {
                        tracing::warn!(error = %e, "API key last-use flush failed; kept for the next try");
                    }
                }
                () = state.store_health.refusal_pending() => report_refused_rows(&state).await,
                _ = maintenance.tick() => {
                    state.keys.sweep_caches();
                    state.credentials.sweep_caches();
                    state.apikeys.sweep_caches();
                    // Rows whose event failed at their first report.
                    report_refused_rows(&state).await;
                    if let Err(e) = state.keys.purge_due().await {
                        tracing::warn!(error = %e, "destroying keys past their waiting period failed");
                    }
                    rotate_due_keys(&state).await;
                }
            }
        }
    })
}

/// The scheduler's rotations: every key past its `auto_rotate_period` gets a version made
/// inside the vault, once across the nodes sharing the store (see
/// [`crate::keys::KeyService::rotate_scheduled`]). Each attempt is audited as a change is: an
/// intent made durable before the rotation (no rotation without it), then the outcome under
/// the same `request_id` — `ok` with the new version, `superseded` when another node (or a
/// caller) rotated the key first, or `failed`; action `RotateKey`, principal `-` (the vault
/// itself, no caller), the key's resource. An outcome the trail cannot take is deferred, never
/// dropped. Returns how many keys this node rotated. Run by the maintenance loop every
/// `MAINTENANCE_INTERVAL`.
pub async fn rotate_due_keys(state: &AppState) -> usize {
    let due = match state.keys.due_rotations().await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "listing the keys due for rotation failed");
            return 0;
        }
    };
    let mut rotated = 0;
    for (name, seen) in due {
        let event = |outcome: &str, key_version: Option<u32>, request_id: &str| EventData {
            time_ms: state.clock.now_ms(),
            request_id: request_id.to_owned(),
            principal: "-".into(),
            action: crate::audit::action::Action::RotateKey.as_str().into(),
            resource: format!("key:{name}"),
            key_version,
            decision: Decision::Undecided,
            outcome: outcome.into(),
            ..EventData::default()
        };
        // Outside a request there is no request id: each attempt gets one of its own, which
        // ties its intent to its outcome.
        let id = new_request_id();
        if let Err(e) = state.audit.record_durable(event("intent", None, &id)).await {
            tracing::warn!(key = %name, error = %e, "automatic rotation postponed: its intent could not be made durable");
            continue;
        }
        let outcome = match state.keys.rotate_scheduled(&name, seen).await {
            Ok(Some(done)) => {
                rotated += 1;
                event("ok", Some(done.version), &id)
            }
            Ok(None) => event("superseded", None, &id),
            Err(e) => {
                tracing::warn!(key = %name, error = %e, "automatic rotation failed");
                event("failed", None, &id)
            }
        };
        // The rotation happened (or failed): an event the trail cannot take now is kept and
        // written as soon as it can, as a request's outcome is.
        if let Err(e) = state.audit.record(outcome.clone()).await {
            tracing::warn!(key = %name, error = %e, "the outcome event of an automatic rotation is deferred");
            state.audit.defer(outcome);
        }
    }
    rotated
}

/// The rewrap job's loop: a pass at start (resuming one a crash cut short), then one whenever
/// a rotation wakes it or a minute passed. A pass that moved records or stopped is an audit
/// event (`rewrap::REWRAP_EVENT`, principal `-`).
pub(super) fn spawn_rewrap(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let before = state.rewrap.status().started_at_ms;
            let result = state.rewrap.pass().await;
            let status = state.rewrap.status();
            // Only a pass that started is recorded (not every minute of an outage).
            let started = status.started_at_ms != before;
            let outcome = match &result {
                Ok(0) => None,
                Ok(_) => Some("ok"),
                Err(e) => {
                    tracing::warn!(error = %e, "the KEK rewrap pass stopped; it is tried again");
                    started.then_some("stopped")
                }
            };
            if let (Some(outcome), Some(target)) = (outcome, status.target.as_ref()) {
                let event = EventData {
                    time_ms: state.clock.now_ms(),
                    request_id: request_id(),
                    principal: "-".into(),
                    action: crate::rewrap::REWRAP_EVENT.into(),
                    resource: format!("kek:{target}"),
                    decision: Decision::Undecided,
                    outcome: outcome.into(),
                    ..EventData::default()
                };
                if let Err(e) = state.audit.record(event).await {
                    tracing::warn!(error = %e, "the audit event of a KEK rewrap pass was not written");
                }
            }
            state.rewrap.wait_for_work().await;
        }
    })
}

/// Writes one `integrity.row_refused` event per row the store refused since the last report
/// (principal `-`: no caller, the vault found it); rows whose event could not be written are
/// kept for the next report.
pub(super) async fn report_refused_rows(state: &AppState) {
    let rows = state.store_health.take_unreported();
    for (i, (table, id)) in rows.iter().enumerate() {
        let event = EventData {
            time_ms: state.clock.now_ms(),
            request_id: request_id(),
            principal: "-".into(),
            action: ROW_REFUSED.into(),
            resource: format!("row:{table}/{id}"),
            decision: Decision::Undecided,
            outcome: "refused".into(),
            ..EventData::default()
        };
        if let Err(e) = state.audit.record(event).await {
            tracing::warn!(error = %e, "the audit event of a refused row was not written; retried at the next flush");
            state.store_health.unreport(rows.get(i..).unwrap_or_default().to_vec());
            return;
        }
    }
}
