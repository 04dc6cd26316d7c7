//! Wiring: from validated [`Settings`] to a serving [`Application`], and the HTTP server
//! loop with graceful shutdown.
//!
//! Startup refuses to run with anything half-working, in an order that leaves no partial
//! state behind: the data dir is checked first, then the KEK is opened and self-tested,
//! and only then is the store opened (created on first start). Each failure is one
//! [`StartupError`] line naming the problem.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use warp::http::HeaderValue;

use crate::api::context::{ClientAddr, new_request_id, with_request_id};
use crate::api::{self, AppState};
use crate::audit::writer::{AuditError, Auditor};
use crate::auth::keyed_hash::KeyedHasher;
use crate::auth::{Authenticator, ROOT_TOKEN_VALUE, generate_token};
use crate::clock::{SharedClock, SystemClock, unix_ms};
use crate::config::Settings;
use crate::kek::{self, KekError, Keyring};
use crate::keys::KeyService;
use crate::policy::{self, PolicyEngine};
use crate::store::{self, Store, StoreError, SystemStore};
use crate::system_secret::{self, SystemSecretError};
use crate::tls::TlsInfo;

/// How often expired cache entries are swept and due deletions/rotations run.
/// Name of the audit chain's key among the system secrets.
pub const AUDIT_KEY_NAME: &str = "audit-key";
const MAINTENANCE_INTERVAL: StdDuration = StdDuration::from_secs(30);
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: StdDuration = StdDuration::from_secs(30);
/// A client that sends no complete request header within this time is disconnected.
const HEADER_READ_TIMEOUT: StdDuration = StdDuration::from_secs(30);

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
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error("policies: {0}")]
    Policies(#[from] crate::policy::PolicyErrors),
    #[error("policies: {0}")]
    PolicyEngine(String),
}

/// An error and its causes on one line, outermost first, without repeats.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// A built, bound, not yet serving instance.
pub struct Application {
    state: Arc<AppState>,
    /// Kept here, not in the handlers' state: `run` stores the root token's hash and
    /// closes the store at shutdown.
    store: Arc<dyn Store>,
    listener: TcpListener,
    addr: SocketAddr,
    /// The server's TLS configuration; `None` serves plain HTTP.
    tls: Option<Arc<rustls::ServerConfig>>,
    flush_interval: StdDuration,
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
        // Policies first: a set that does not compile stops the start before anything else.
        let policies = PolicyEngine::new(
            policy::load(settings.policies_dir.as_deref())?,
            settings.policies_dir.clone(),
        )
        .map_err(StartupError::PolicyEngine)?;
        warn_if_secrets_cannot_all_be_locked(settings.cache.max_entries);
        // Bound first: a port in use must not leave a half-initialised vault behind.
        let listener = match listener {
            Some(l) => l,
            None => TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.listen,
                    source,
                })?,
        };
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.listen,
            source,
        })?;
        let keyring = Keyring::new(kek::open(&settings.kek).await?);
        let store = store::open(&settings.store).await?;
        let hasher = Arc::new(
            KeyedHasher::load_or_create(store.as_ref(), &keyring, &clock)
                .await
                .map_err(StartupError::Pepper)?,
        );
        let audit_key = system_secret::load_or_create(store.as_ref(), &keyring, &clock, AUDIT_KEY_NAME).await?;
        let audit = Auditor::start(store.clone(), audit_key, settings.audit.clone()).await?;
        let (root_hash, generated_root_token) = root_token(&settings, store.as_ref(), &hasher, &clock).await?;
        let root_hash_to_store = generated_root_token.as_ref().map(|_| root_hash.clone());
        let credentials = crate::credentials::CredentialService::new(
            store.clone(),
            store.clone(),
            keyring.clone(),
            clock.clone(),
            settings.sigv4,
            settings.cache,
        );
        let apikeys =
            crate::apikeys::ApiKeyService::new(store.clone(), Arc::clone(&hasher), clock.clone(), settings.cache);
        let keys = KeyService::new(
            store.clone(),
            store.clone(),
            keyring.clone(),
            clock.clone(),
            settings.keys,
            settings.cache,
            settings.limits.max_message_bytes,
        );
        let state = Arc::new(AppState {
            policies,
            keys,
            credentials,
            apikeys,
            audit,
            clock: clock.clone(),
            auth: Authenticator::new(
                Arc::clone(&hasher),
                root_hash,
                store.clone(),
                store.clone(),
                clock.clone(),
                settings.auth,
            ),
            auth_settings: settings.auth,
            kek: keyring,
            store_health: crate::health::StoreHealth::new(store.clone()),
            limits: settings.limits,
            report: settings.report,
            health: Default::default(),
            certificate_groups: settings
                .tls
                .as_ref()
                .map(|tls| tls.client_groups.clone())
                .unwrap_or_default(),
        });
        Ok(Self {
            state,
            store,
            listener,
            addr,
            tls: settings.tls.map(|tls| tls.server),
            flush_interval: StdDuration::try_from(settings.keys.usage_flush_interval)
                .unwrap_or(StdDuration::from_secs(1)),
            generated_root_token,
            root_hash_to_store,
            clock,
            hangups: hangup_signal(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
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
        let reloader = self
            .hangups
            .map(|hangups| spawn_policy_reloader(Arc::clone(&self.state), hangups));
        let max_connections = self.state.limits.max_connections;
        serve(
            self.listener,
            api::routes(Arc::clone(&self.state)),
            self.tls.map(TlsAcceptor::from),
            max_connections,
            shutdown,
        )
        .await;
        background.abort();
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
        self.store.close().await;
        Ok(())
    }
}

/// Each cached secret takes one locked page; say so at start when `RLIMIT_MEMLOCK` cannot
/// hold a full cache (secrets beyond it stay unlocked and could reach swap).
fn warn_if_secrets_cannot_all_be_locked(max_entries: usize) {
    let needed = (max_entries as u64).saturating_mul(4096);
    if let Some(limit) = crate::hardening::memlock_limit()
        && limit < needed
    {
        tracing::warn!(
            memlock_limit = limit,
            needed,
            "RLIMIT_MEMLOCK is below cache.max_entries x 4 KiB: raise it (e.g. LimitMEMLOCK) or lower cache.max_entries"
        );
    }
}

fn check_data_dir(dir: &Path) -> Result<(), StartupError> {
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

/// The keyed hash the root token is checked against: from `SIGVAULT_ROOT_TOKEN` (stored,
/// replacing any previous one), else the stored one, else a freshly generated token (stored
/// later, by [`Application::run`]).
async fn root_token(
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

/// Takes SIGHUP over (see [`Application`]'s `hangups`).
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
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
fn spawn_policy_reloader(
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

fn spawn_background(state: Arc<AppState>, flush_interval: StdDuration) -> tokio::task::JoinHandle<()> {
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
                _ = maintenance.tick() => {
                    state.keys.sweep_caches();
                    state.credentials.sweep_caches();
                    state.apikeys.sweep_caches();
                    if let Err(e) = state.keys.purge_due().await {
                        tracing::warn!(error = %e, "destroying keys past their waiting period failed");
                    }
                    if let Err(e) = state.keys.rotate_due().await {
                        tracing::warn!(error = %e, "automatic rotation failed");
                    }
                }
            }
        }
    })
}

/// The accept loop: HTTP/1.1 with keep-alive (over TLS when `tls` is given), a request id
/// per request (task-local for the handlers, `x-request-id` on every response), the peer
/// address and TLS facts in the request extensions, at most `max_connections` open
/// connections (further clients wait in the kernel's backlog), and graceful shutdown.
///
/// The TLS handshake runs in the connection's own task under
/// [`crate::tls::HANDSHAKE_TIMEOUT`], so a slow or failing client never holds up the
/// accept loop; a failed handshake is logged at debug and the connection dropped.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let graceful = GracefulShutdown::new();
    let service = warp::service(filter);
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => serve_connection(stream, service, peer, None, watcher).await,
                Some(acceptor) => match crate::tls::accept(&acceptor, stream).await {
                    Ok((stream, info)) => serve_connection(stream, service, peer, Some(info), watcher).await,
                    Err(e) => {
                        tracing::debug!(%peer, error = %chain(&e), "connection dropped");
                        Ok(())
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period ended with requests still in flight");
    }
}

/// Serves HTTP/1.1 requests on one (plain or TLS) connection until it closes or shutdown
/// asks it to finish.
async fn serve_connection<IO, S>(
    io: IO,
    service: S,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    watcher: Watcher,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<hyper::Request<hyper::body::Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let handler = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let mut service = service.clone();
        req.extensions_mut().insert(ClientAddr(peer));
        if let Some(info) = &tls {
            req.extensions_mut().insert(info.clone());
        }
        let id = new_request_id();
        async move {
            let header = HeaderValue::from_str(&id).ok();
            let mut response = with_request_id(id, service.call(req)).await?;
            if let Some(value) = header {
                response.headers_mut().insert("x-request-id", value);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    watcher.watch(builder.serve_connection(TokioIo::new(io), handler)).await
}
