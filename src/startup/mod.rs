//! Wiring: from validated [`Settings`] to a serving [`Application`], and the HTTP server
//! loop with graceful shutdown.
//!
//! Startup refuses to run with anything half-working, in an order that leaves no partial
//! state behind: the data dir is checked first, then the KEK is opened and self-tested,
//! and only then is the store opened (created on first start). Each failure is one
//! [`StartupError`] line naming the problem.

mod background;
mod changes;
#[cfg(feature = "kek-pkcs11")]
pub mod init;
mod serve;
mod wiring;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub use background::rotate_due_keys;
pub use serve::serve;

use crate::api::{self, AppState};
use crate::audit::writer::{AuditError, Auditor};
use crate::auth::ROOT_TOKEN_VALUE;
use crate::auth::keyed_hash::KeyedHasher;
use crate::clock::{SharedClock, SystemClock, unix_ms};
use crate::config::Settings;
use crate::integrity::RowIntegrity;
use crate::kek::{self, KekError};
use crate::policy::{self, PolicyEngine};
use crate::store::{self, Store, StoreError};
use crate::system_secret::{self, SystemSecretError};
use background::{hangup_signal, spawn_background, spawn_policy_reloader, spawn_rewrap};
use wiring::{
    Parts, app_state, bind, check_data_dir, check_store_not_lost, root_token, say_if_secrets_cannot_all_be_locked,
};

/// Name of the audit chain's key among the system secrets.
pub const AUDIT_KEY_NAME: &str = "audit-key";

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("data dir {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("HSM: {}", chain(.0))]
    Kek(#[from] KekError),
    #[error("store: {}", chain(.0))]
    Store(#[from] StoreError),
    #[error("pepper key: {}", chain(.0))]
    Pepper(SystemSecretError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate the root token: the random generator failed")]
    Random,
    #[error("audit key: {}", chain(.0))]
    AuditKey(#[from] SystemSecretError),
    #[error("row integrity key: {}", chain(.0))]
    RowKey(SystemSecretError),
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("policies: {0}")]
    Policies(#[from] crate::policy::PolicyErrors),
    #[error("policies: {0}")]
    PolicyEngine(String),
    #[error("{0}")]
    RateLimit(#[from] crate::ratelimit::RateLimitError),
}

/// An error and its causes on one line, outermost first, without repeats.
pub use crate::error::chain;

/// How long a node on a shared store waits, before serving, to hear other nodes' changes.
const LISTEN_WAIT: StdDuration = StdDuration::from_secs(10);

/// A built, bound, not yet serving instance.
pub struct Application {
    state: Arc<AppState>,
    /// Kept here, not in the handlers' state: `run` stores the root token's hash and
    /// closes the store at shutdown.
    store: Arc<dyn Store>,
    listener: TcpListener,
    addr: SocketAddr,
    /// `[metrics] listen`: the scraper's listener, serving only `GET /metrics`.
    metrics_listener: Option<TcpListener>,
    /// The server's TLS configuration; `None` serves plain HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
    flush_interval: StdDuration,
    /// `cache.max_staleness`: how often the root token's hash is re-read when the store is
    /// shared with other nodes.
    max_staleness: StdDuration,
    /// The root token, when this start generated it (to be shown once). Its keyed hash
    /// is stored by [`Application::run`], after the caller had the chance to show it, so a
    /// start that fails before that leaves no unknown root token behind.
    pub generated_root_token: Option<SecretString>,
    root_hash_to_store: Option<Vec<u8>>,
    clock: SharedClock,
    /// SIGHUP, taken over at build time so a reload signal that arrives before serving
    /// starts cannot terminate the process (its default action); `None` if unavailable.
    hangups: Option<tokio::signal::unix::Signal>,
}

impl Application {
    /// Builds everything from `settings` with the system clock and binds `settings.listen`.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, Arc::new(SystemClock), None).await
    }

    /// As [`Application::build`], with an injected clock and optionally a pre-bound
    /// listener (tests bind port 0).
    pub async fn build_with(
        settings: Settings,
        clock: SharedClock,
        listener: Option<TcpListener>,
    ) -> Result<Self, StartupError> {
        check_data_dir(&settings.data_dir)?;
        check_store_not_lost(&settings)?;
        // Policies first: a set that does not compile stops the start before anything else.
        let policies = PolicyEngine::new(
            policy::load(settings.policies_dir.as_deref())?,
            settings.policies_dir.clone(),
        )
        .map_err(StartupError::PolicyEngine)?;
        say_if_secrets_cannot_all_be_locked(settings.cache.max_entries);
        // Bound before the KEK and the store: a port in use must not leave a half-initialised
        // vault behind.
        let (listener, addr) = bind(settings.listen, listener).await?;
        let metrics_listener = match settings.metrics_listen {
            Some(metrics_addr) => Some(bind(metrics_addr, None).await?.0),
            None => None,
        };
        let keyring = kek::open_keyring(&settings.kek, settings.kek_previous.as_ref()).await?;
        let store = store::open(&settings.store).await?;
        let hasher = Arc::new(
            KeyedHasher::load_or_create(store.as_ref(), &keyring, &clock)
                .await
                .map_err(StartupError::Pepper)?,
        );
        // Before any service reads a protected row: every read is checked from here on.
        let integrity = Arc::new(
            RowIntegrity::load_or_create(store.as_ref(), &keyring, &clock)
                .await
                .map_err(StartupError::RowKey)?,
        );
        store.enable_row_integrity(integrity.clone()).await?;
        let audit_key = system_secret::load_or_create(store.as_ref(), &keyring, &clock, AUDIT_KEY_NAME).await?;
        let hsm = Arc::clone(keyring.current());
        let audit = Auditor::start(store.clone(), audit_key, settings.audit.clone(), hsm).await?;
        let (root_hash, generated_root_token) = root_token(&settings, store.as_ref(), &hasher, &clock).await?;
        let root_hash_to_store = generated_root_token.as_ref().map(|_| root_hash.clone());
        let parts = Parts {
            store: &store,
            keyring,
            hasher,
            root_hash,
            clock: &clock,
            integrity,
        };
        let state = Arc::new(app_state(&settings, policies, audit, parts)?);
        Ok(Self {
            state,
            store,
            listener,
            addr,
            metrics_listener,
            tls: settings.tls.map(|tls| tls.server),
            flush_interval: StdDuration::try_from(settings.keys.usage_flush_interval)
                .unwrap_or(StdDuration::from_secs(1)),
            max_staleness: StdDuration::try_from(settings.cache.max_staleness).unwrap_or(StdDuration::from_secs(5)),
            generated_root_token,
            root_hash_to_store,
            clock,
            hangups: hangup_signal(),
        })
    }

    /// Ends a build that was only to initialise the vault (`sigvault init`): stores the
    /// generated root token's hash, as [`Application::run`] would, closes the trail and the
    /// store, and returns the token to show once.
    pub async fn finish_without_serving(self) -> Result<Option<SecretString>, StartupError> {
        if let Some(hash) = &self.root_hash_to_store {
            self.store
                .put_value(ROOT_TOKEN_VALUE, hash, unix_ms(self.clock.now()))
                .await?;
        }
        self.state.audit.shutdown().await;
        self.store.close().await;
        Ok(self.generated_root_token)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the scraper's `GET /metrics` is served, when `[metrics] listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// `https` when the server speaks TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests
    /// finish (up to a grace period) and flushes usage counters.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), StartupError> {
        if let Some(hash) = &self.root_hash_to_store {
            self.store
                .put_value(ROOT_TOKEN_VALUE, hash, unix_ms(self.clock.now()))
                .await?;
        }
        let background = spawn_background(Arc::clone(&self.state), self.flush_interval);
        // Moves records under the current KEK after a rotation or migration; its first pass
        // resumes one a crash cut short.
        let rewrap = spawn_rewrap(Arc::clone(&self.state));
        // Other nodes' changes, when the store is shared (PostgreSQL). Serving starts once this
        // node listens (its first message, `everything`, says so; nothing is cached yet), so
        // no change committed while it started is missed; if listening takes longer, it
        // serves anyway and drops its caches when the listener is up.
        let changes = match self.store.watch_changes() {
            Some(mut feed) => {
                if tokio::time::timeout(LISTEN_WAIT, feed.recv()).await.is_err() {
                    tracing::warn!(
                        "not yet hearing other nodes' changes; serving anyway (cached rows expire within cache.max_staleness)"
                    );
                }
                Some(changes::spawn_change_listener(
                    Arc::clone(&self.state),
                    feed,
                    self.max_staleness,
                ))
            }
            None => None,
        };
        let reloader = self
            .hangups
            .map(|hangups| spawn_policy_reloader(Arc::clone(&self.state), hangups));
        let limits = self.state.limits;
        // The scraper's listener: plain HTTP, no authentication, nothing but the metrics.
        let scraper = self.metrics_listener.map(|listener| {
            let routes = api::metrics::scrape_routes(Arc::clone(&self.state));
            tokio::spawn(async move { serve(listener, routes, None, &limits, std::future::pending()).await })
        });
        serve(
            self.listener,
            api::routes(Arc::clone(&self.state)),
            self.tls.map(TlsAcceptor::from),
            &limits,
            shutdown,
        )
        .await;
        background.abort();
        rewrap.abort();
        if let Some(scraper) = scraper {
            scraper.abort();
        }
        if let Some(changes) = changes {
            changes.abort();
        }
        if let Some(reloader) = reloader {
            reloader.abort();
        }
        if let Err(e) = self.state.keys.flush_usage().await {
            tracing::warn!(error = %e, "final usage flush failed");
        }
        if let Err(e) = self.state.credentials.flush_activity().await {
            tracing::warn!(error = %e, "final credential activity flush failed");
        }
        if let Err(e) = self.state.apikeys.flush_usage().await {
            tracing::warn!(error = %e, "final API key last-use flush failed");
        }
        self.state.audit.shutdown().await;
        self.store.close().await;
        Ok(())
    }
}
