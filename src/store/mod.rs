//! Persistence: key metadata, sealed records, keyed hashes and the audit trail's queryable
//! copy, behind one small interface per concern — [`KeyStore`] (signing keys and their
//! versions), [`TokenStore`] (caller tokens), [`CredentialStore`] (SigV4 credentials and
//! their activity), [`ApiKeyStore`] (bearer API keys, their hashes and their activity), [`AuditStore`]
//! (audit events) and [`SystemStore`] (system secrets and values, liveness, checkpoints,
//! shutdown). A backend implements all six; [`Store`] is their sum, and [`open`] is the one
//! place a backend is built from settings. Services hold only the concerns they use.
//!
//! A store holds nothing a dump could turn into a secret: sealed records
//! ([`SealedRecord`](crate::envelope::SealedRecord)), keyed hashes and metadata. It knows
//! nothing of HTTP, performs no cryptography and imports no domain module: records are typed
//! with [`crate::model`]'s vocabulary, and how a backend encodes them (enum texts, JSON
//! columns) stays inside that backend, as do its error types.
//!
//! Two backends: [`sqlite`] (one file, one node) and [`postgres`] (a server database
//! several nodes share, so every read-modify-write also holds against other connections).
//! What every backend must do alike, pinned by the one contract they all pass
//! ([`contract_tests`]): times are Unix milliseconds; names, ids and nodes sort by their
//! bytes (a PostgreSQL backend needs `COLLATE "C"`); each method is one transaction; key
//! rows carry a revision that every write checks, so nodes sharing a store cannot lose each
//! other's updates.

pub(crate) mod api_keys;
pub mod approvals;
pub mod audit;
pub(crate) mod audit_rows;
pub mod changes;
pub mod credentials;
pub mod fingerprints;
pub mod integrity;
pub mod kek;
pub mod keys;
#[cfg(feature = "store-postgres")]
pub mod postgres;
pub(crate) mod rows;
#[cfg(feature = "store-sqlite")]
pub mod sqlite;
#[cfg(any(feature = "store-sqlite", feature = "store-postgres"))]
pub(crate) mod statements;
pub mod system;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use api_keys::{ApiKeyActivity, ApiKeyPatch, ApiKeyRecord, ApiKeyStore, FoundApiKey};
pub use approvals::{ApprovalRecord, ApprovalStore};
pub use audit::{AuditBatch, AuditFilter, AuditStore, StoredEvent};
pub use changes::{Change, ChangeReceiver};
pub use credentials::{CredentialActivity, CredentialPatch, CredentialRecord, CredentialStore};
pub use fingerprints::FingerprintRecord;
pub use integrity::{ApiKeyHashRow, Protected, RowSealer};
pub use kek::{KekStore, SealedPlace, SealedRow};
pub use keys::{KeyRecord, KeyStore, NewVersion, UsageDelta, VersionInfo};
pub use system::{PoolState, SystemStore};
pub use tokens::{TokenRecord, TokenStore};

/// The cause of a failure inside a backend, kept whole (the interface names no backend's
/// error type).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    AlreadyExists,
    /// A per-owner limit (e.g. credentials per principal) is reached.
    #[error("limit reached: {0}")]
    LimitReached(String),
    /// The row changed since it was read (optimistic-locking conflict).
    #[error("the record changed concurrently")]
    Conflict,
    /// A stored value does not read back as its type (a text none of its enum's values
    /// has, JSON that does not parse, a number out of range): written by something else, or
    /// altered. Never replaced by a default.
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// A protected row failed its integrity tag (see [`integrity`]): it was edited outside
    /// the vault, or written by no sealer. It is never used.
    #[error("the {table} row {id} failed its integrity check")]
    Integrity { table: &'static str, id: String },
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] BoxError),
    #[error("cannot open the store at {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: BoxError,
    },
    #[error("schema migration {version} failed: {source}")]
    Migration {
        version: u32,
        #[source]
        source: BoxError,
    },
}

pub(crate) type StoreResult<T> = Result<T, StoreError>;

/// Every concern of one backend: what [`open`] returns. Services take the concerns they
/// use (`Arc<dyn KeyStore>`, …), which an `Arc<dyn Store>` coerces to.
pub trait Store:
    KeyStore + TokenStore + CredentialStore + ApiKeyStore + AuditStore + SystemStore + KekStore + ApprovalStore
{
}

impl<T> Store for T where
    T: KeyStore + TokenStore + CredentialStore + ApiKeyStore + AuditStore + SystemStore + KekStore + ApprovalStore
{
}

/// Which backend holds the data, and where (validated from `store.url` by the config).
/// `Debug` shows a PostgreSQL URL without its password.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// An embedded SQLite database file (`sqlite://PATH`).
    Sqlite { path: PathBuf },
    /// A PostgreSQL database several nodes may share (`postgres://USER:PASSWORD@HOST/DB`):
    /// the connection URL as sqlx reads it. It may hold a password.
    Postgres { url: String },
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            Self::Postgres { url } => f.debug_struct("Postgres").field("url", &redacted_url(url)).finish(),
        }
    }
}

/// `url` with any password replaced by `***`: the one in its user info
/// (`scheme://user:PASSWORD@host`) and any `password=` query parameter. The user info ends
/// at the URL's last `@`, so a password holding `/`, `?` or `#` is hidden whole (an `@`
/// later in the URL hides more, never less).
pub(crate) fn redacted_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let (user, host) = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => (format!("{user}:***@"), host),
            None => (format!("{userinfo}@"), host),
        },
        None => (String::new(), rest),
    };
    let host = match host.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => host.to_owned(),
    };
    format!("{scheme}{user}{host}")
}

impl StoreSettings {
    /// The file the data lives in, for a backend that keeps one: offline tools refuse a
    /// missing file rather than let [`open`] create an empty store (which would "verify").
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { path } => Some(path),
            Self::Postgres { .. } => None,
        }
    }
}

/// Opens (creating when missing, and migrating) the store `settings` name. The one place a
/// backend is chosen: everything else sees only the interfaces.
pub async fn open(settings: &StoreSettings) -> StoreResult<Arc<dyn Store>> {
    match settings {
        #[cfg(feature = "store-sqlite")]
        StoreSettings::Sqlite { path } => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        #[cfg(not(feature = "store-sqlite"))]
        StoreSettings::Sqlite { path } => Err(StoreError::Open {
            path: path.display().to_string(),
            source: "this build has no SQLite store (cargo feature `store-sqlite`)".into(),
        }),
        #[cfg(feature = "store-postgres")]
        StoreSettings::Postgres { url } => Ok(Arc::new(postgres::PgStore::open(url).await?)),
        #[cfg(not(feature = "store-postgres"))]
        StoreSettings::Postgres { url } => Err(StoreError::Open {
            path: redacted_url(url),
            source: "this build has no PostgreSQL store (cargo feature `store-postgres`)".into(),
        }),
    }
}

// Compiled where a backend runs it: a new backend's feature joins this condition.
#[cfg(all(test, any(feature = "store-sqlite", feature = "store-postgres")))]
mod contract_tests;

#[cfg(test)]
mod tests {
    use super::{StoreSettings, redacted_url};

    #[test]
    fn a_postgres_url_prints_without_its_password() {
        let cases = [
            (
                "postgres://vault:s3cr%40t@db:5432/sigvault",
                "postgres://vault:***@db:5432/sigvault",
            ),
            ("postgres://vault@db/sigvault", "postgres://vault@db/sigvault"),
            (
                "postgres://db/sigvault?user=v&password=hunter2&sslmode=disable",
                "postgres://db/sigvault?user=v&password=***&sslmode=disable",
            ),
            ("postgres://a:b:c@d@host/x", "postgres://a:***@host/x"),
            ("postgres://u:pa/ss?#@host/x", "postgres://u:***@host/x"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted_url(url), shown);
            let debug = format!("{:?}", StoreSettings::Postgres { url: url.to_owned() });
            assert!(debug.contains(shown), "{debug}");
            assert!(
                !debug.contains("s3cr")
                    && !debug.contains("hunter2")
                    && !debug.contains(":b:c")
                    && !debug.contains("pa/"),
                "{debug}"
            );
        }
    }
}
