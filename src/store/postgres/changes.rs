//! Cross-node cache invalidation over LISTEN/NOTIFY ([`crate::store::changes`]).
//!
//! Every write that changes a cached row announces a [`Change`] with `pg_notify` inside its
//! own transaction: PostgreSQL delivers it when, and only if, the transaction commits, so no
//! node hears of a change that did not happen, nor before it is visible.
//!
//! A notification's payload is the announcing store's instance id and the change's wire
//! form; a node skips its own (its services already dropped what they changed).
//!
//! Each node listens on a connection of its own (application name `sigvault-changes`, so an
//! operator can tell it apart in `pg_stat_activity`), outside the request pool. When that
//! connection drops (the server restarted, a proxy cut it, `pg_terminate_backend`),
//! announcements made meanwhile are lost: the listener connects again by itself (retrying
//! every [`RETRY`] while the server is away) and, once listening, hands the node
//! [`Change::Everything`], so what the node cached while deaf is dropped. The first
//! connection does the same: a change committed while the node was starting, before it
//! listened, is not served from what it cached meanwhile. Until then every
//! cached row still expires within `cache.max_staleness`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tokio::sync::mpsc;

use super::unavailable;
use crate::store::{Change, ChangeReceiver, StoreResult};

/// The notification channel of every node of one database.
const CHANNEL: &str = "sigvault_changes";

/// The listener connection's `application_name`.
pub(crate) const LISTENER_NAME: &str = "sigvault-changes";

/// How often the database is probed, and how long a probe may take.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the listener waits before connecting again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// Changes waiting for the node to apply them; a full queue makes the listener wait (the
/// node applies a change in microseconds).
const QUEUE: usize = 1024;

/// Announces `change` to every node when `tx` commits.
pub(super) async fn announce(tx: &mut Transaction<'_, Postgres>, change: Change) -> StoreResult<()> {
    // Prefixed with this store's instance id (a setting of each of its connections), so its
    // own listener can skip what it announced: the services already dropped their own
    // entries, and a late echo would only throw away what was cached since.
    sqlx::query("SELECT pg_notify($1, current_setting('sigvault.instance') || ' ' || $2)")
        .bind(CHANNEL)
        .bind(change.encode())
        .execute(&mut **tx)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Starts this node's listener, and the probe that sets `down` while the database does not
/// answer; both run until the receiver is dropped.
pub(super) fn watch(options: &PgConnectOptions, instance: &str, pool: PgPool, down: Arc<AtomicBool>) -> ChangeReceiver {
    let (tx, rx) = mpsc::channel(QUEUE);
    let options = options.clone().application_name(LISTENER_NAME);
    tokio::spawn(probe(pool, down, tx.clone()));
    tokio::spawn(listen(options, instance.to_owned(), tx));
    rx
}

/// A random id for one opened store, set on each of its connections as the custom setting
/// `sigvault.instance` (read back by [`announce`]).
pub(super) fn instance_id() -> Result<String, getrandom::Error> {
    let mut raw = [0u8; 8];
    getrandom::fill(&mut raw)?;
    Ok(base16ct::lower::encode_string(&raw))
}

/// Asks the database for `SELECT 1` every [`PROBE_INTERVAL`]; `down` is set while it fails
/// or takes longer than [`PROBE_TIMEOUT`], so requests answered from memory can tell
/// (`store.serve_cached_when_unavailable`). Stops when the node stops listening.
async fn probe(pool: PgPool, down: Arc<AtomicBool>, changes: mpsc::Sender<Change>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(PROBE_INTERVAL) => {}
            () = changes.closed() => return,
        }
        let answered = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, sqlx::query("SELECT 1").execute(&pool)).await,
            Ok(Ok(_))
        );
        let was_down = down.swap(!answered, Ordering::Relaxed);
        match (was_down, answered) {
            (false, false) => {
                tracing::warn!("the database does not answer; requests that need it get 503 STORE_UNAVAILABLE")
            }
            (true, true) => tracing::info!("the database answers again"),
            _ => {}
        }
    }
}

async fn listen(options: PgConnectOptions, instance: String, changes: mpsc::Sender<Change>) {
    loop {
        let mut listener = match connect(&options).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes; retrying");
                if wait_or_closed(&changes).await {
                    return;
                }
                continue;
            }
        };
        // Listening from now on: what was announced before (while this node started, or while
        // the connection was down) was not heard, so what the node cached until now goes.
        if changes.send(Change::Everything).await.is_err() {
            return;
        }
        loop {
            let heard = tokio::select! {
                heard = listener.try_recv() => heard,
                () = changes.closed() => return,
            };
            let change = match heard {
                Ok(Some(notification)) => match notification.payload().split_once(' ') {
                    Some((from, _)) if from == instance => continue,
                    Some((_, change)) => Change::decode(change).unwrap_or(Change::Everything),
                    None => Change::Everything,
                },
                // The connection dropped and the listener opened a new one at once.
                Ok(None) => {
                    tracing::info!("listening for other nodes' changes again; dropping every cached row");
                    Change::Everything
                }
                Err(e) => {
                    tracing::warn!(error = %e, "lost the connection that hears other nodes' changes; reconnecting");
                    break;
                }
            };
            if changes.send(change).await.is_err() {
                return;
            }
        }
        if wait_or_closed(&changes).await {
            return;
        }
    }
}

/// A listener on a connection of its own (a pool of one, made for it: a dropped listener
/// takes its pool, and any dead connection in it, along).
async fn connect(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
/// Waits [`RETRY`]; true when the node stopped listening meanwhile.
async fn wait_or_closed(changes: &mpsc::Sender<Change>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(RETRY) => false,
        () = changes.closed() => true,
    }
}
