//! A real sigvault in-process: [`spawn_app`] starts one on port 0 with a fresh SoftHSM2
//! token (its own label in the checkout's shared test token directory — SoftHSM2 reads
//! `SOFTHSM2_CONF` once per process, see `.cargo/config.toml`), a fresh SQLite file and a
//! manual clock, and [`TestApp`] sends it typed requests as root. It never shares a token,
//! a data dir or a clock between two apps, except on a restart of the same one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sigvault::api::AppState;
use sigvault::api::Limits;
use sigvault::apikeys::ApiKeySettings;
use sigvault::audit::{AuditSettings, DEFAULT_SYNC_INTERVAL, Durability};
use sigvault::auth::AuthSettings;
use sigvault::clock::ManualClock;
use sigvault::config::Settings;
use sigvault::credentials::Sigv4Settings;
use sigvault::kek::KekSettings;
use sigvault::kek::pkcs11::{Pkcs11Settings, provision_token, softhsm};
use sigvault::keys::KeySettings;
use sigvault::keys::cache::CacheSettings;
use sigvault::report::ReportSettings;
use sigvault::startup::Application;
use sigvault::store::StoreSettings;
use sigvault::tls::TlsSettings;
use time::{Duration, OffsetDateTime};
use tokio::sync::oneshot;

use super::store::{TestStore, fresh_postgres_database, test_store};
use super::{ROOT_TOKEN, Reply, SO_PIN, USER_PIN, b64, temp_dir, unb64, unique};

pub fn module_path() -> PathBuf {
    std::env::var_os("SIGVAULT_TEST_PKCS11_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"))
}

/// The suite's SoftHSM2 configuration (`SOFTHSM2_CONF`, set by `.cargo/config.toml`),
/// written on first use with its shared token directory beside it. Written once per
/// process: tests start in parallel, and two first writers of a missing file would race
/// (`softhsm::write_conf` creates it exclusively, so the loser fails).
pub fn softhsm_conf() -> &'static Path {
    static CONF: OnceLock<PathBuf> = OnceLock::new();
    CONF.get_or_init(|| {
        let conf =
            PathBuf::from(std::env::var_os("SOFTHSM2_CONF").expect("SOFTHSM2_CONF is set by .cargo/config.toml"));
        let token_dir = conf.parent().expect("conf has a parent").join("tokens");
        softhsm::write_conf(&conf, &token_dir).expect("write SoftHSM2 conf");
        conf
    })
}

/// A new SoftHSM2 token in the shared test token directory; returns its label.
fn fresh_token() -> String {
    softhsm_conf();
    let settings = pkcs11_settings(format!("t{}", unique("")).chars().take(32).collect());
    provision_token(&settings, &SecretString::from(SO_PIN.to_owned())).expect("create token");
    settings.token_label
}

/// Settings that open the test token `token_label` with the test user PIN.
pub fn pkcs11_settings(token_label: String) -> Pkcs11Settings {
    Pkcs11Settings {
        module: module_path(),
        token_label,
        pin: SecretString::from(USER_PIN.to_owned()),
        sessions: 2,
        call_timeout: sigvault::kek::pkcs11::DEFAULT_CALL_TIMEOUT,
    }
}

/// Where a test app keeps its state, so it can be restarted on the same data.
#[derive(Clone)]
pub struct AppHome {
    pub data_dir: PathBuf,
    /// The PostgreSQL database the app keeps its data in (when the suite runs on
    /// PostgreSQL, [`super::store`]); `None` is the SQLite file `data_dir/sigvault.db`.
    pub postgres_url: Option<String>,
    /// `audit.node`: the name of this app's audit chain (two apps sharing a database are
    /// two nodes, each with its own).
    pub node: String,
    /// `store.serve_cached_when_unavailable` (off by default).
    pub serve_cached_when_unavailable: bool,
    /// `[ratelimit]`: where rate limits count (this node's memory by default).
    pub ratelimit: sigvault::ratelimit::RateLimitSettings,
    pub token_label: String,
    /// `kek.rewrap_rate`: records a second the rewrap job moves.
    pub rewrap_rate: u32,
    pub limits: Limits,
    pub cache: CacheSettings,
    /// The audit event file; `None` is `data_dir/audit.jsonl`.
    pub audit_file: Option<PathBuf>,
    /// The audit anchor file; `None` is `data_dir/audit.anchor`.
    pub anchor_file: Option<PathBuf>,
    /// `audit.durability`: when a request's event counts as written (`os`, the default).
    pub audit_durability: Durability,
    /// `audit.sync_interval`: the longest time a written event waits for its fdatasync.
    pub audit_sync_interval: std::time::Duration,
    /// A Cedar policy directory; `None` is the built-in set.
    pub policies_dir: Option<PathBuf>,
    pub auth: AuthSettings,
    /// `[tls]`; `None` serves plain HTTP.
    pub tls: Option<TlsSettings>,
    pub sigv4: Sigv4Settings,
    pub apikeys: ApiKeySettings,
    /// `[custodian]`: dual control (off by default).
    pub approvals: sigvault::approvals::ApprovalSettings,
}

impl AppHome {
    pub fn new() -> Self {
        Self {
            data_dir: temp_dir("app"),
            postgres_url: match test_store() {
                TestStore::Sqlite => None,
                TestStore::Postgres => Some(fresh_postgres_database()),
            },
            node: "test-node".into(),
            serve_cached_when_unavailable: false,
            ratelimit: sigvault::ratelimit::RateLimitSettings::default(),
            token_label: fresh_token(),
            rewrap_rate: sigvault::rewrap::DEFAULT_RATE,
            limits: Limits::default(),
            cache: CacheSettings {
                ttl: Duration::hours(1),
                max_entries: 1000,
                max_staleness: Duration::seconds(5),
            },
            audit_file: None,
            anchor_file: None,
            audit_durability: Durability::Os,
            audit_sync_interval: DEFAULT_SYNC_INTERVAL,
            policies_dir: None,
            // High, so tests that send many bad tokens are not rate limited; the limit has
            // its own test.
            auth: AuthSettings {
                max_failures: 10_000,
                failure_window: Duration::minutes(1),
                max_token_ttl: Duration::days(365),
            },
            tls: None,
            sigv4: Sigv4Settings::default(),
            apikeys: ApiKeySettings::default(),
            approvals: sigvault::approvals::ApprovalSettings::default(),
        }
    }

    pub fn audit_file(&self) -> PathBuf {
        self.audit_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.jsonl"))
    }

    pub fn anchor_file(&self) -> PathBuf {
        self.anchor_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.anchor"))
    }

    /// The SQLite file the app keeps its data in (when it runs on SQLite).
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("sigvault.db")
    }

    pub fn store(&self) -> StoreSettings {
        match &self.postgres_url {
            Some(url) => StoreSettings::Postgres { url: url.clone() },
            None => StoreSettings::Sqlite { path: self.database() },
        }
    }

    pub fn settings(&self) -> Settings {
        Settings {
            listen: "127.0.0.1:0".parse().expect("addr"),
            insecure_http: false,
            tls: self.tls.clone(),
            data_dir: self.data_dir.clone(),
            log_level: "info".into(),
            store: self.store(),
            serve_cached_when_unavailable: self.serve_cached_when_unavailable,
            kek: KekSettings::Pkcs11(pkcs11_settings(self.token_label.clone())),
            kek_previous: None,
            rewrap_rate: self.rewrap_rate,
            cache: self.cache,
            keys: KeySettings {
                default_pending_days: 7,
                max_pending_days: 30,
                usage_flush_interval: Duration::seconds(3600),
            },
            limits: self.limits,
            audit: AuditSettings {
                durability: self.audit_durability,
                sync_interval: self.audit_sync_interval,
                ..AuditSettings::new(&self.node, self.audit_file(), self.anchor_file())
            },
            report: ReportSettings {
                cryptoperiod: Duration::days(365),
            },
            policies_dir: self.policies_dir.clone(),
            auth: self.auth,
            sigv4: self.sigv4,
            apikeys: self.apikeys,
            approvals: self.approvals,
            transit_mount: Some("transit".into()),
            kms_path: Some("/".into()),
            log_format: sigvault::config::LogFormat::Text,
            metrics_listen: None,
            ratelimit: self.ratelimit.clone(),
            root_token: Some(SecretString::from(ROOT_TOKEN.to_owned())),
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub home: AppHome,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AppState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_in(AppHome::new()).await
}

pub async fn spawn_app_in(home: AppHome) -> TestApp {
    let start = OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("time");
    let clock = Arc::new(ManualClock::new(start));
    start_app(home, clock).await
}

async fn start_app(home: AppHome, clock: Arc<ManualClock>) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let app = Application::build_with(home.settings(), clock.clone(), Some(listener))
        .await
        .expect("app starts");
    let addr = app.local_addr();
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run(async move {
            let _ = rx.await;
        })
        .await
        .expect("app runs");
    });
    TestApp {
        addr,
        client: reqwest::Client::new(),
        home,
        clock,
        state,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.home.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// Stops serving (flushing usage counters) and waits until it has.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Stops and starts again on the same data dir, token and clock.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        start_app(self.home.clone(), self.clock.clone()).await
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Reply {
        self.send_with(&self.client, method, path, token, body)
            .await
            .expect("request sent")
    }

    /// As [`TestApp::send`] through `client` (e.g. one with a TLS client certificate);
    /// the error when the request could not be sent (e.g. a refused TLS handshake).
    pub async fn send_with(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, reqwest::Error> {
        let mut req = client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        Reply::read(req.send().await?).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, Some(ROOT_TOKEN), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(
            reqwest::Method::POST,
            path,
            Some(ROOT_TOKEN),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Reply {
        self.send(reqwest::Method::POST, path, Some(ROOT_TOKEN), Some(body.to_vec()))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(
            reqwest::Method::PATCH,
            path,
            Some(ROOT_TOKEN),
            Some(body.to_string().into_bytes()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, Some(ROOT_TOKEN), None).await
    }

    /// Creates an HMAC-SHA256 key named `name`; panics unless 201.
    pub async fn create_key(&self, name: &str) -> Value {
        let r = self
            .post("/v1/keys", json!({"name": name, "algorithm": "hmac-sha256"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    /// Imports `material` into `name` with `algorithm`; panics unless 201.
    pub async fn import_key(&self, name: &str, algorithm: &str, material: &[u8]) -> Value {
        let r = self
            .post(
                &format!("/v1/keys/{name}/import"),
                json!({"key_material": b64(material), "algorithm": algorithm}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body
    }

    /// Signs `message` with the latest version; returns (signature bytes, version).
    pub async fn sign(&self, name: &str, message: &[u8]) -> (Vec<u8>, u64) {
        let r = self
            .post(&format!("/v1/keys/{name}/sign"), json!({"message": b64(message)}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        (
            unb64(r.body["signature"].as_str().expect("signature")),
            r.body["key_version"].as_u64().expect("version"),
        )
    }

    /// Verifies; returns the whole reply so tests can look at status, `valid` and version.
    pub async fn verify(&self, name: &str, message: &[u8], signature: &[u8]) -> Reply {
        self.post(
            &format!("/v1/keys/{name}/verify"),
            json!({"message": b64(message), "signature": b64(signature)}),
        )
        .await
    }

    /// Writes pending usage counters now (the test settings flush only hourly).
    pub async fn flush_usage(&self) {
        self.state.keys.flush_usage().await.expect("flush");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
