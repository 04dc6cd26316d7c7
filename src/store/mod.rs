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
//! What every backend must do alike, pinned by the one contract they all pass
//! ([`contract_tests`]): times are Unix milliseconds; names, ids and nodes sort by their
//! bytes (a PostgreSQL backend needs `COLLATE "C"`); each method is one transaction; key
//! rows carry a revision that every write checks, so nodes sharing a store cannot lose each
//! other's updates.

pub(crate) mod api_keys;
pub mod audit;
pub(crate) mod audit_rows;
pub mod credentials;
pub mod fingerprints;
pub mod integrity;
pub mod keys;
pub(crate) mod rows;
#[cfg(feature = "store-sqlite")]
pub mod sqlite;
pub mod system;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use api_keys::{ApiKeyActivity, ApiKeyPatch, ApiKeyRecord, ApiKeyStore, FoundApiKey};
pub use audit::{AuditBatch, AuditFilter, AuditStore, StoredEvent};
pub use credentials::{CredentialActivity, CredentialPatch, CredentialRecord, CredentialStore};
pub use fingerprints::FingerprintRecord;
pub use integrity::{ApiKeyHashRow, Protected, RowSealer};
pub use keys::{KeyRecord, KeyStore, NewVersion, UsageDelta, VersionInfo};
pub use system::SystemStore;
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
pub trait Store: KeyStore + TokenStore + CredentialStore + ApiKeyStore + AuditStore + SystemStore {}

impl<T> Store for T where T: KeyStore + TokenStore + CredentialStore + ApiKeyStore + AuditStore + SystemStore {}

/// Which backend holds the data, and where (validated from `store.url` by the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// An embedded SQLite database file (`sqlite://PATH`).
    Sqlite { path: PathBuf },
}

impl StoreSettings {
    /// The file the data lives in, for a backend that keeps one: offline tools refuse a
    /// missing file rather than let [`open`] create an empty store (which would "verify").
    pub fn file(&self) -> Option<&Path> {
        match self {
            Self::Sqlite { path } => Some(path),
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
    }
}

// Compiled where a backend runs it: a new backend's feature joins this condition.
#[cfg(all(test, feature = "store-sqlite"))]
mod contract_tests;
