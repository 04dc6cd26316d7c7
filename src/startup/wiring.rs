//! The steps of building an [`super::Application`]: checks of the data dir and the memory-lock
//! limit, the listener, the root token, and the services and state the handlers share.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;
use tokio::net::TcpListener;

use super::StartupError;
use crate::api::AppState;
use crate::apikeys::ApiKeyService;
use crate::audit::writer::Auditor;
use crate::auth::keyed_hash::KeyedHasher;
use crate::auth::{Authenticator, ROOT_TOKEN_VALUE, generate_token};
use crate::clock::{SharedClock, unix_ms};
use crate::config::Settings;
use crate::credentials::CredentialService;
use crate::integrity::RowIntegrity;
use crate::kek::Keyring;
use crate::keys::KeyService;
use crate::policy::PolicyEngine;
use crate::ratelimit::RateLimitBackend;
use crate::store::{Store, SystemStore};

/// `listener`, or a new one bound to `addr`, with the address it listens on.
pub(super) async fn bind(
    addr: SocketAddr,
    listener: Option<TcpListener>,
) -> Result<(TcpListener, SocketAddr), StartupError> {
    let bind_err = |source| StartupError::Bind { addr, source };
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(addr).await.map_err(bind_err)?,
    };
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// What the services are built from, once the KEK, the store and the system secrets are open.
pub(super) struct Parts<'a> {
    pub(super) store: &'a Arc<dyn Store>,
    pub(super) keyring: Keyring,
    pub(super) hasher: Arc<KeyedHasher>,
    /// The keyed hash the root token is checked against (empty once revoked).
    pub(super) root_hash: Vec<u8>,
    pub(super) clock: &'a SharedClock,
    pub(super) integrity: Arc<RowIntegrity>,
}

/// The services and the state every handler shares; each service holds only the store
/// concerns it uses. The rate limits' backend (`[ratelimit]`) is shared by the API-key
/// service and the authenticator; Redis is connected to on first use.
pub(super) fn app_state(
    settings: &Settings,
    policies: PolicyEngine,
    audit: Auditor,
    parts: Parts<'_>,
) -> Result<AppState, StartupError> {
    let Parts {
        store,
        keyring,
        hasher,
        root_hash,
        clock,
        integrity,
    } = parts;
    let shared_limits = RateLimitBackend::new(&settings.ratelimit)?;
    let credentials = CredentialService::new(
        store.clone(),
        store.clone(),
        keyring.clone(),
        clock.clone(),
        settings.sigv4,
        settings.cache,
    );
    let apikeys = ApiKeyService::new(
        store.clone(),
        Arc::clone(&hasher),
        clock.clone(),
        settings.apikeys,
        settings.cache,
    )
    .with_rate_limits(shared_limits.clone());
    let keys = KeyService::new(
        store.clone(),
        store.clone(),
        keyring.clone(),
        clock.clone(),
        settings.keys,
        settings.cache,
        settings.limits.max_message_bytes,
    );
    let auth = Authenticator::new(
        hasher,
        root_hash,
        store.clone(),
        store.clone(),
        clock.clone(),
        settings.auth,
        settings.cache,
    )
    .with_rate_limits(shared_limits);
    let approvals = crate::approvals::ApprovalService::new(store.clone(), clock.clone(), settings.approvals);
    let rewrap = Arc::new(crate::rewrap::Rewrapper::new(
        keyring.clone(),
        store.clone(),
        clock.clone(),
        settings.rewrap_rate,
    ));
    Ok(AppState {
        policies,
        keys,
        credentials,
        apikeys,
        approvals,
        audit,
        clock: clock.clone(),
        auth,
        auth_settings: settings.auth,
        kek: keyring,
        rewrap,
        store_health: crate::health::StoreHealth::new(store.clone(), integrity, settings.serve_cached_when_unavailable),
        limits: settings.limits,
        report: settings.report,
        health: Default::default(),
        certificate_groups: settings
            .tls
            .as_ref()
            .map(|tls| tls.client_groups.clone())
            .unwrap_or_default(),
        transit_mount: settings.transit_mount.clone(),
        kms_path: settings.kms_path.clone(),
        http_metrics: crate::metrics::HttpMetrics::default(),
    })
}

/// Each cached secret takes one locked page; say so at start when `RLIMIT_MEMLOCK` cannot
/// hold a full cache (secrets beyond it stay unlocked and could reach swap).
pub(super) fn say_if_secrets_cannot_all_be_locked(max_entries: usize) {
    let needed = (max_entries as u64).saturating_mul(4096);
    if let Some(limit) = crate::hardening::memlock_limit()
        && limit < needed
    {
        // Said once, as information: the vault works, and only the operator can change it.
        tracing::info!(
            memlock_limit = limit,
            needed,
            "RLIMIT_MEMLOCK is below cache.max_entries x 4 KiB, so some unwrapped secrets may reach swap: \
             raise it (LimitMEMLOCK= in the systemd unit, `ulimit -l` in a shell), lower cache.max_entries, \
             or run without swap"
        );
    }
}

pub(super) fn check_data_dir(dir: &Path) -> Result<(), StartupError> {
    let err = |message: String| StartupError::DataDir {
        path: dir.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    std::fs::read_dir(dir).map_err(|e| err(format!("not readable: {e}")))?;
    let probe = dir.join(format!(".sigvault-probe-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| err(format!("not writable: {e}")))?;
    std::fs::remove_file(&probe).map_err(|e| err(format!("not writable: {e}")))?;
    Ok(())
}

/// A SQLite store that is missing while the event file holds events was lost (deleted, or
/// a restore that left it out): opening it would make an empty vault beside the old trail.
/// Refused with a line naming the file and what to do.
pub(super) fn check_store_not_lost(settings: &Settings) -> Result<(), StartupError> {
    let crate::store::StoreSettings::Sqlite { path } = &settings.store else {
        return Ok(());
    };
    let trail_has_events = std::fs::metadata(&settings.audit.file).is_ok_and(|m| m.is_file() && m.len() > 0);
    if trail_has_events && !path.exists() {
        return Err(StartupError::DataDir {
            path: settings.data_dir.display().to_string(),
            message: format!(
                "the store {} is missing while the audit event file {} holds events; restore the \
                 store together with the event file and anchor from one backup (docs/OPERATIONS.md)",
                path.display(),
                settings.audit.file.display()
            ),
        });
    }
    Ok(())
}

/// The keyed hash the root token is checked against: from `SIGVAULT_ROOT_TOKEN` (stored,
/// replacing any previous one), else the stored one, else a freshly generated token (stored
/// later, by [`Application::run`]).
pub(super) async fn root_token(
    settings: &Settings,
    store: &dyn SystemStore,
    hasher: &KeyedHasher,
    clock: &SharedClock,
) -> Result<(Vec<u8>, Option<SecretString>), StartupError> {
    let now = unix_ms(clock.now());
    if let Some(token) = &settings.root_token {
        let hash = Authenticator::root_hash_of(hasher, token);
        store.put_value(ROOT_TOKEN_VALUE, &hash, now).await?;
        return Ok((hash.to_vec(), None));
    }
    if let Some(hash) = store.get_value(ROOT_TOKEN_VALUE).await? {
        if hash.is_empty() {
            tracing::info!("the root token was revoked; callers use named tokens or client certificates");
        }
        return Ok((hash, None));
    }
    let token = generate_token().map_err(|_| StartupError::Random)?;
    let hash = Authenticator::root_hash_of(hasher, &token);
    Ok((hash.to_vec(), Some(token)))
}
