//! Which KEK each sealed record is wrapped under, and moving a record's wrapped DEK to
//! another KEK (the rewrap after a KEK rotation or migration, `kek::rewrap`).
//!
//! Sealed records live in three tables: `key_versions`, `credentials` and `system_secrets`.
//! A rewrap changes only `kek_id` and `wrapped_dek` — nonce and ciphertext stay, and neither
//! column is in a row's integrity tag or AAD — and only when the row still holds the wrap it
//! was read with, so a rewrap never overwrites a concurrent write (or another node's rewrap).
//! Both SQL backends run the statements here word for word.

use crate::BoxFuture;
use crate::envelope::SealedRecord;
use crate::store::rows::{self, Columns};
use crate::store::{StoreError, StoreResult};

/// Where a sealed record lives, with what its record identity (AAD) is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SealedPlace {
    KeyVersion {
        key_id: String,
        name: String,
        tenant: String,
        version: u32,
    },
    Credential {
        access_key_id: String,
        principal: String,
    },
    SystemSecret {
        name: String,
    },
}

/// A sealed record and its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRow {
    pub place: SealedPlace,
    pub sealed: SealedRecord,
}

/// Held while this node leads; dropping it lets another node lead.
pub type Lead = Box<dyn Send>;

/// What a [`Lead`] is for: each kind is held by one node at a time, independently of the
/// other, so a rotation is never refused because a rewrap runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadOf {
    /// The rewrap job's pass.
    Rewrap,
    /// A KEK rotation (two at once could make two KEKs of one version).
    Rotation,
}

pub trait KekStore: Send + Sync {
    /// The lead of `what`, when no other node holds it: SQLite has one node, so always;
    /// PostgreSQL holds a session advisory lock (one per kind) on a connection of its own,
    /// which the server releases if the node dies.
    fn try_lead(&self, what: LeadOf) -> BoxFuture<'_, StoreResult<Option<Lead>>>;

    /// Tells the other nodes sharing the store that the KEKs changed ([`super::Change::Kek`]);
    /// nothing on a store of one node.
    fn announce_kek_change(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// How many sealed records each `kek_id` wraps, by `kek_id`.
    fn kek_usage(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>>;

    /// Up to `limit` sealed records whose `kek_id` is not `kek_id`.
    fn sealed_not_under<'a>(&'a self, kek_id: &'a str, limit: u32) -> BoxFuture<'a, StoreResult<Vec<SealedRow>>>;

    /// Replaces the wrap of the record at `place` with `new_kek_id` / `new_wrapped` if it
    /// still holds `old`'s; false when it does not (changed, or gone).
    fn replace_wrap<'a>(
        &'a self,
        place: &'a SealedPlace,
        old: &'a SealedRecord,
        new_kek_id: &'a str,
        new_wrapped: &'a [u8],
    ) -> BoxFuture<'a, StoreResult<bool>>;
}

pub(crate) const KEK_USAGE: &str = "SELECT kek_id, COUNT(*) AS records FROM (\
     SELECT kek_id FROM key_versions UNION ALL SELECT kek_id FROM credentials \
     UNION ALL SELECT kek_id FROM system_secrets) AS sealed GROUP BY kek_id ORDER BY kek_id";

pub(crate) const SEALED_NOT_UNDER: &str = "SELECT 'key' AS place, k.id AS a, k.name AS b, k.tenant AS c, \
     CAST(v.version AS BIGINT) AS version, v.format, v.kek_id, v.wrapped_dek, v.nonce, v.ciphertext \
     FROM key_versions v JOIN keys k ON k.id = v.key_id WHERE v.kek_id <> $1 \
     UNION ALL SELECT 'credential', access_key_id, principal, '', CAST(1 AS BIGINT), format, kek_id, wrapped_dek, \
     nonce, ciphertext FROM credentials WHERE kek_id <> $1 \
     UNION ALL SELECT 'system', name, '', '', CAST(1 AS BIGINT), format, kek_id, wrapped_dek, nonce, ciphertext \
     FROM system_secrets WHERE kek_id <> $1 \
     LIMIT $2";

/// The compare-and-set of one place's wrap: `$1` new kek_id, `$2` new wrap, `$3` old kek_id,
/// `$4` old wrap, then the place's key columns.
pub(crate) fn replace_wrap_statement(place: &SealedPlace) -> &'static str {
    match place {
        SealedPlace::KeyVersion { .. } => {
            "UPDATE key_versions SET kek_id = $1, wrapped_dek = $2 \
             WHERE kek_id = $3 AND wrapped_dek = $4 AND key_id = $5 AND version = $6"
        }
        SealedPlace::Credential { .. } => {
            "UPDATE credentials SET kek_id = $1, wrapped_dek = $2 \
             WHERE kek_id = $3 AND wrapped_dek = $4 AND access_key_id = $5"
        }
        SealedPlace::SystemSecret { .. } => {
            "UPDATE system_secrets SET kek_id = $1, wrapped_dek = $2 WHERE kek_id = $3 AND wrapped_dek = $4 AND name = $5"
        }
    }
}

/// One row of [`KEK_USAGE`].
pub(crate) fn usage_row(row: &impl Columns) -> StoreResult<(String, u64)> {
    Ok((row.text("kek_id")?, rows::u64_col(row, "records")?))
}

/// One row of [`SEALED_NOT_UNDER`].
pub(crate) fn sealed_row(row: &impl Columns) -> StoreResult<SealedRow> {
    let place = match row.text("place")?.as_str() {
        "key" => SealedPlace::KeyVersion {
            key_id: row.text("a")?,
            name: row.text("b")?,
            tenant: row.text("c")?,
            version: rows::u32_col(row, "version")?,
        },
        "credential" => SealedPlace::Credential {
            access_key_id: row.text("a")?,
            principal: row.text("b")?,
        },
        "system" => SealedPlace::SystemSecret { name: row.text("a")? },
        other => return Err(StoreError::Corrupt(format!("unknown sealed record place {other}"))),
    };
    Ok(SealedRow {
        place,
        sealed: rows::sealed(row)?,
    })
}
