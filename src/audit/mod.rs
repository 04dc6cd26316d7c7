//! The audit trail: one event per request that reaches a handler, chained with a keyed
//! MAC, written to the store and to an append-only JSON-lines file, with the chain head
//! appended to a separate anchor file — and no answer before the event is durable.
//!
//! Callers write through [`writer::Auditor`] and read through its [`trail::AuditTrail`]
//! (queries, counts, verification); neither hands out the store or the audit key.

pub mod action;
pub mod chain;
pub mod event;
pub mod sink;
pub mod trail;
pub mod verify;
pub mod writer;

use std::path::PathBuf;

pub use crate::store::{AuditFilter, StoredEvent};

/// `[audit]`: where the trail lives and which node writes it.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    /// This node's name in every event (and the chain it writes).
    pub node: String,
    /// The JSON-lines event file.
    pub file: PathBuf,
    /// The anchor file: the chain head after every batch.
    pub anchor_file: PathBuf,
}
