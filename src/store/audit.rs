//! The audit trail's queryable copy: each node's chained events with their MACs, appended
//! in batches of the event file's lines and read back in sequence order. The store never
//! checks a MAC; the audit module does.

use super::StoreResult;
use crate::BoxFuture;
use crate::model::AuditEvent;
use crate::model::audit_line::push_line;

/// An audit event as stored: the event and its chain MAC.
pub type StoredEvent = (AuditEvent, Vec<u8>);

/// Most events in one stored row of lines.
const ROW_EVENTS: usize = 512;
/// A row is closed once its lines reach this many bytes.
const ROW_BYTES: usize = 256 * 1024;

/// Events of one node for [`AuditStore::append_audit`], as the event file's lines (the
/// store keeps the lines, not the fields: the writer hands over the bytes it wrote, and a
/// store row holds a few hundred events), cut into rows of at most [`ROW_EVENTS`] events
/// or about [`ROW_BYTES`] bytes, each with the range of its sequence numbers and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditBatch {
    node: String,
    lines: Vec<u8>,
    rows: Vec<BatchRow>,
}

/// One row of an [`AuditBatch`]: its lines are the batch's bytes `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BatchRow {
    pub(crate) first_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) events: usize,
    /// The lowest and highest event time (fixed-width text, which sorts as time does).
    pub(crate) time_min: String,
    pub(crate) time_max: String,
    start: usize,
    end: usize,
}

impl AuditBatch {
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            lines: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// A batch of `events` (all of `node`), each encoded as its line.
    pub fn of(node: &str, events: &[StoredEvent]) -> Self {
        let mut batch = Self::new(node);
        for (event, mac) in events {
            batch.push_event(event, mac);
        }
        batch
    }

    /// Appends one event's line (its newline included) with the event's sequence number and
    /// time.
    pub fn push(&mut self, seq: u64, time: &str, line: &[u8]) {
        let start = self.lines.len();
        self.lines.extend_from_slice(line);
        let end = self.lines.len();
        if let Some(row) = self.rows.last_mut()
            && row.events < ROW_EVENTS
            && row.end - row.start < ROW_BYTES
        {
            row.first_seq = row.first_seq.min(seq);
            row.last_seq = row.last_seq.max(seq);
            row.events += 1;
            if *time < *row.time_min {
                row.time_min.clear();
                row.time_min.push_str(time);
            }
            if *time > *row.time_max {
                row.time_max.clear();
                row.time_max.push_str(time);
            }
            row.end = end;
            return;
        }
        self.rows.push(BatchRow {
            first_seq: seq,
            last_seq: seq,
            events: 1,
            time_min: time.to_owned(),
            time_max: time.to_owned(),
            start,
            end,
        });
    }

    /// Appends `event` with its chain MAC, encoded as the event file's line.
    pub fn push_event(&mut self, event: &AuditEvent, mac: &[u8]) {
        let mut canonical = Vec::with_capacity(320);
        event.write_canonical(&mut canonical);
        let mut line = Vec::with_capacity(canonical.len() + 84);
        push_line(&mut line, &canonical, mac);
        self.push(event.seq, &event.time, &line);
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.rows.iter().map(|r| r.events).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The lowest and highest sequence number in the batch.
    pub(crate) fn seq_range(&self) -> Option<(u64, u64)> {
        let first = self.rows.iter().map(|r| r.first_seq).min()?;
        let last = self.rows.iter().map(|r| r.last_seq).max()?;
        Some((first, last))
    }

    /// The rows, each with its lines.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (&BatchRow, &[u8])> {
        self.rows
            .iter()
            .map(|row| (row, self.lines.get(row.start..row.end).unwrap_or_default()))
    }
}

/// Which audit events a query wants. Every present field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub(crate) since_ms: Option<i64>,
    pub(crate) until_ms: Option<i64>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
}

/// The audit events. Every method is one atomic operation.
pub trait AuditStore: Send + Sync {
    /// Appends a batch of audit events in one transaction (group commit); refused whole
    /// ([`super::StoreError::AlreadyExists`]) when a sequence number of the batch's range is
    /// stored already. The last event of the batch is remembered as a batch end
    /// ([`AuditStore::audit_batch_ends`]).
    fn append_audit<'a>(&'a self, batch: &'a AuditBatch) -> BoxFuture<'a, StoreResult<()>>;

    /// The sequence numbers of a node's batch ends (the last event of each
    /// [`AuditStore::append_audit`] call) with `seq > after_seq`, ascending.
    fn audit_batch_ends<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<Vec<u64>>>;

    /// Removes a node's events after `seq` (undoing a batch that failed in another sink).
    fn truncate_audit<'a>(&'a self, node: &'a str, after_seq: u64) -> BoxFuture<'a, StoreResult<()>>;

    /// A node's events with `seq > after_seq`, ascending, at most `limit`.
    fn audit_range<'a>(
        &'a self,
        node: &'a str,
        after_seq: u64,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// A node's last event.
    fn audit_head<'a>(&'a self, node: &'a str) -> BoxFuture<'a, StoreResult<Option<StoredEvent>>>;

    /// Every node that has events, in byte order.
    fn audit_nodes(&self) -> BoxFuture<'_, StoreResult<Vec<String>>>;

    /// Events matching `filter`, ordered by (node bytes, seq), strictly after the cursor
    /// `(node, seq)`, at most `limit`.
    fn query_audit<'a>(
        &'a self,
        filter: &'a AuditFilter,
        after: Option<(&'a str, u64)>,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<StoredEvent>>>;

    /// How many events match `filter`: what paging through [`AuditStore::query_audit`] would
    /// return, counted without reading them (the total of an export's progress bar).
    fn count_audit<'a>(&'a self, filter: &'a AuditFilter) -> BoxFuture<'a, StoreResult<u64>>;

    /// Number of events per principal, in principal byte order (for the compliance report).
    fn audit_counts_by_principal(&self) -> BoxFuture<'_, StoreResult<Vec<(String, u64)>>>;
}
