//! The audit trail: one event per request that reaches a handler, chained with a keyed
//! MAC, written to the store and to an append-only JSON-lines file, with the chain head
//! appended to a separate anchor file — and no answer before the event is durable. The
//! head is also kept in the HSM ([`witness`]), which the disk cannot roll back.
//!
//! Callers write through [`writer::Auditor`] and read through its [`trail::AuditTrail`]
//! (queries, counts, verification); neither hands out the store or the audit key.

pub mod action;
pub mod chain;
pub mod event;
pub mod sink;
pub mod trail;
pub mod verify;
pub mod witness;
pub mod writer;

use std::path::PathBuf;
use std::time::Duration;

pub use crate::store::{AuditFilter, StoredEvent};

/// Whether a node's events after `head_seq` up to `end_seq` are exactly one group commit,
/// given the sequence numbers of its batch ends from `head_seq` on: they start right after a
/// batch end (or the genesis) and hold no batch end but their last. A crash (or, on a running
/// vault, the batch being written) can leave at most that much in the store beyond the event
/// file.
pub(crate) fn is_one_batch(head_seq: u64, end_seq: u64, batch_ends: &[u64]) -> bool {
    let starts_after_a_batch = head_seq == 0 || batch_ends.contains(&head_seq);
    let mut past = batch_ends.iter().filter(|s| **s > head_seq);
    starts_after_a_batch && past.next() == Some(&end_seq) && past.next().is_none()
}

/// When a request's event counts as written (`audit.durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Answered once the event is MAC-chained and handed to the OS (write(2) in chain order):
    /// a crash of the process loses no acknowledged event; the file is fdatasync'ed at least
    /// every `sync_interval`, so a power loss loses at most that window.
    Os,
    /// Answered once the event's write has been fdatasync'ed (group commit).
    Fsync,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Os => "os",
            Self::Fsync => "fsync",
        }
    }
}

/// `[audit]`: where the trail lives, which node writes it, and how durable an event is
/// before its request is answered.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// This node's name in every event (and the chain it writes).
    pub node: String,
    /// The JSON-lines event file.
    pub file: PathBuf,
    /// The anchor file: the chain head after every indexed batch.
    pub anchor_file: PathBuf,
    /// When an event counts as written.
    pub durability: Durability,
    /// Longest time written events stay without an fdatasync (`os` durability).
    pub sync_interval: Duration,
    /// Longest time an event waits before the store indexes it.
    pub index_lag: Duration,
    /// Longest time between two writes of the chain head to the HSM ([`witness`]): the
    /// events a wipe of every sink can take without the witness noticing.
    pub hsm_anchor_interval: Duration,
}

impl AuditSettings {
    /// Settings with the defaults for everything but the node and the two files.
    pub fn new(node: impl Into<String>, file: PathBuf, anchor_file: PathBuf) -> Self {
        Self {
            node: node.into(),
            file,
            anchor_file,
            durability: Durability::Os,
            sync_interval: DEFAULT_SYNC_INTERVAL,
            index_lag: DEFAULT_INDEX_LAG,
            hsm_anchor_interval: DEFAULT_HSM_ANCHOR_INTERVAL,
        }
    }
}

/// `audit.sync_interval` unless configured.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_millis(20);
/// `audit.hsm_anchor_interval` unless configured.
pub const DEFAULT_HSM_ANCHOR_INTERVAL: Duration = Duration::from_secs(10);
/// `audit.index_lag` unless configured.
pub const DEFAULT_INDEX_LAG: Duration = Duration::from_secs(1);
