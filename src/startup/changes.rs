//! Applies the changes other nodes sharing the store announce ([`crate::store::changes`]) to
//! this node's caches, and re-reads the root token's hash every `cache.max_staleness` (so a
//! revocation on another node holds here within that bound even if its announcement is
//! lost; every other cached row expires by itself within it).

use std::sync::Arc;

use crate::api::AppState;
use crate::store::{Change, ChangeReceiver};

/// Runs until the store closes the feed.
pub(super) fn spawn_change_listener(
    state: Arc<AppState>,
    mut changes: ChangeReceiver,
    max_staleness: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut root_refresh = tokio::time::interval(max_staleness);
        root_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => apply(&state, change).await,
                    None => break,
                },
                _ = root_refresh.tick() => reload_root(&state).await,
            }
        }
    })
}

async fn apply(state: &AppState, change: Change) {
    match change {
        Change::Key { id, name } => state.keys.invalidate(&name, Some(&id)),
        Change::Tokens => state.auth.forget_all(),
        Change::RootToken => reload_root(state).await,
        Change::Credential { access_key_id } => state.credentials.invalidate(&access_key_id),
        Change::ApiKeys => state.apikeys.forget_lookups(),
        Change::Kek => refresh_keks(state).await,
        Change::Everything => {
            refresh_keks(state).await;
            state.keys.forget_all();
            state.credentials.forget_all();
            state.apikeys.forget_lookups();
            state.auth.forget_all();
            reload_root(state).await;
        }
    }
}

/// Another node rotated or retired a KEK: read the KEKs now, and let the rewrap job look.
async fn refresh_keks(state: &AppState) {
    if let Err(e) = state.kek.refresh().await {
        tracing::warn!(error = %e, "cannot read the KEKs again after another node changed them; the rewrap job retries");
    }
    state.rewrap.wake();
}

async fn reload_root(state: &AppState) {
    if let Err(e) = state.auth.reload_root().await {
        tracing::warn!(error = %e, "cannot re-read the root token's hash; the one in memory stays");
    }
}
