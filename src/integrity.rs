//! The row-integrity key and what happens when a row fails it: HMAC-SHA256 tags over the
//! canonical bytes [`crate::store::integrity`] defines, under a random 256-bit key sealed
//! under the KEK like every system secret (so a database writer without the HSM can neither
//! read nor forge it), and the record of refused rows that the health route shows and the
//! audit trail receives (one `integrity.row_refused` event per row and process).
//!
//! This module must never log or return the key, and never let a failed row through: the
//! store refuses it whatever becomes of the report.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::clock::SharedClock;
use crate::kek::Keyring;
use crate::secret::SecretBytes;
use crate::store::{RowSealer, SystemStore};
use crate::system_secret::{self, SystemSecretError};

/// Name of the key among the store's system secrets.
pub(crate) const ROW_KEY_NAME: &str = "row_integrity_key";

/// The action of the audit event a refused row raises (not a request: no policy decides it).
pub(crate) const ROW_REFUSED: &str = "integrity.row_refused";

/// Most distinct refused rows remembered for reporting (a database rewritten wholesale
/// raises one event per row up to this, then counts).
const MAX_REMEMBERED: usize = 1024;

/// A refused row: its table and id.
pub type RefusedRow = (&'static str, String);

pub struct RowIntegrity {
    /// HMAC-SHA256 keyed once; cloned for each tag (wiped on drop: `hmac`'s `zeroize`).
    keyed: Hmac<Sha256>,
    /// Every row refused since start (bounded), and those not yet in the audit trail.
    refused: Mutex<Refusals>,
    /// Refusals, counting repeats.
    refusals: AtomicU64,
    /// Wakes the reporter when a row joins the unreported ones.
    pending: tokio::sync::Notify,
}

#[derive(Default)]
struct Refusals {
    seen: BTreeSet<RefusedRow>,
    unreported: Vec<RefusedRow>,
}

impl RowIntegrity {
    /// Opens the stored key, creating it on first start.
    pub async fn load_or_create(
        store: &dyn SystemStore,
        keyring: &Keyring,
        clock: &SharedClock,
    ) -> Result<Self, SystemSecretError> {
        Ok(Self::new(
            system_secret::load_or_create(store, keyring, clock, ROW_KEY_NAME).await?,
        ))
    }

    pub(crate) fn new(key: SecretBytes) -> Self {
        // Any key length keys HMAC (a longer one is hashed first); the key is 32 bytes.
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        Self {
            keyed,
            refused: Mutex::new(Refusals::default()),
            refusals: AtomicU64::new(0),
            pending: tokio::sync::Notify::new(),
        }
    }

    fn mac(&self, row: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(row);
        mac.finalize().into_bytes().into()
    }

    /// How many refusals there were since start, repeats counted (the health route shows
    /// only this: it answers unauthenticated callers, and the rows are in the audit trail).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// The refused rows not yet in the audit trail; the caller records them or hands them
    /// back with [`RowIntegrity::unreport`].
    pub(crate) fn take_unreported(&self) -> Vec<RefusedRow> {
        std::mem::take(&mut self.refused.lock().unwrap_or_else(PoisonError::into_inner).unreported)
    }

    /// Resolves once a row was refused that is not yet reported (at once if one was since
    /// the last call).
    pub(crate) async fn refusal_pending(&self) {
        self.pending.notified().await
    }

    /// Puts back rows whose events could not be written (retried at the next report).
    pub(crate) fn unreport(&self, rows: Vec<RefusedRow>) {
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        let later = std::mem::replace(&mut refused.unreported, rows);
        refused.unreported.extend(later);
    }
}

impl RowSealer for RowIntegrity {
    fn tag(&self, row: &[u8]) -> Vec<u8> {
        self.mac(row).to_vec()
    }

    fn check(&self, row: &[u8], tag: &[u8]) -> bool {
        self.mac(row).ct_eq(tag).into()
    }

    /// `id` is the row's label ([`crate::store::Protected::row_label`]).
    fn refused(&self, table: &'static str, id: &str) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        tracing::error!(table, id, "a stored row failed its integrity check and was refused");
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        let row = (table, id.to_owned());
        if refused.seen.len() < MAX_REMEMBERED && refused.seen.insert(row.clone()) {
            refused.unreported.push(row);
            self.pending.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> RowIntegrity {
        RowIntegrity::new(SecretBytes::random(32).unwrap())
    }

    #[test]
    fn a_tag_checks_only_its_own_row_under_its_own_key() {
        let a = sealer();
        let tag = a.tag(b"row");
        assert!(a.check(b"row", &tag));
        assert!(!a.check(b"row2", &tag));
        assert!(!a.check(b"row", &tag[..31]));
        assert!(!sealer().check(b"row", &tag));
    }

    #[test]
    fn each_refused_row_is_reported_once_and_a_failed_report_is_retried() {
        let s = sealer();
        s.refused("keys", "k1");
        s.refused("keys", "k1");
        s.refused("api_keys", "a1");
        assert_eq!(s.refusals(), 3);
        let first = s.take_unreported();
        assert_eq!(first, vec![("keys", "k1".to_owned()), ("api_keys", "a1".to_owned())]);
        assert!(s.take_unreported().is_empty());
        s.unreport(first.clone());
        s.refused("caller_tokens", "t1");
        let again = s.take_unreported();
        assert_eq!(again.len(), 3);
        assert_eq!(again[..2], first[..]);
    }
}
