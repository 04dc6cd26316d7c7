//! The event file as the record of the chain: the head, the open file, and the events written
//! but not yet indexed by the store.
//!
//! [`EventLog::chain`] runs on the request's own thread under the log's lock: the event is
//! numbered, encoded once into a reused buffer and MAC-chained; [`EventLog::settle`] hands
//! every line chained so far to the OS with one write(2) — the file order is the chain
//! order. Nothing waits for another thread; the
//! fdatasync ([`super::syncer`]) and the store ([`super::indexer`]) follow off the request
//! path. A failed write is cut back off the file at once (or, when that fails too, before the
//! next write), so the file never holds a partial line before a whole one.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use super::AuditError;
use crate::audit::chain::{ChainKey, Head};
use crate::audit::event::{AuditEvent, EventData, push_line};
use crate::secret::SecretBytes;
use crate::store::AuditBatch;

/// Most events written and not yet in the store; past it appends are refused until the
/// store catches up (its memory is bounded; the file would still hold them).
pub(super) const MAX_UNINDEXED: usize = 256 * 1024;

/// What chaining an event returns: its sequence number, its ticket (a number never reused,
/// unlike a sequence number after a failed write), and how many sync failures the log had
/// seen (a waiter for its sync gives up when that number grows).
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    pub(super) seq: u64,
    pub(super) ticket: u64,
    pub(super) sync_failures: u64,
}

/// Failed writes remembered for the waiters of their events.
const DROPPED_KEPT: usize = 64;

/// A point the syncer makes durable: every event up to `seq`, the file's first `len` bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SyncPoint {
    pub(super) seq: u64,
    pub(super) len: u64,
}

pub(super) struct EventLog {
    node: String,
    key: ChainKey,
    path: PathBuf,
    file: Option<Arc<File>>,
    /// The file the last successful write went to: what the syncer syncs, even while a
    /// failed write has closed `file` for a reopen.
    written_to: Option<Arc<File>>,
    /// The file's length after the last write that succeeded (regular files; `None` for a
    /// device, and before the first open).
    len: Option<u64>,
    /// A failed write may have left bytes past `len`: cut them before the next write.
    dirty: bool,
    /// Whether the last write failed.
    write_failed: bool,
    /// The open file's (device, inode): a reopen of the same file keeps `len`.
    identity: Option<(u64, u64)>,
    /// The head of the chain, including chained events not written yet.
    head: Head,
    /// The head of what the file holds.
    written: Head,
    canonical: Vec<u8>,
    /// Lines of chained events not written yet (one write(2) takes them all).
    pending: Vec<u8>,
    next_ticket: u64,
    /// Every ticket up to this one is written, or dropped by a failed write.
    settled: u64,
    /// Ticket ranges a failed write dropped, with the error, newest last.
    dropped: VecDeque<(u64, u64, String)>,
    /// Chained events not yet in the store, oldest first.
    unindexed: Unindexed,
    /// Why every append is refused until the syncer has rewritten and synced the events a
    /// failed fdatasync may have lost.
    sync_refusal: Option<String>,
    sync_failures: u64,
    /// Why every append is refused until the anchor file takes the indexed head again.
    anchor_refusal: Option<String>,
}

fn unavailable(what: &str, e: &dyn std::fmt::Display) -> AuditError {
    AuditError::Unavailable(format!("{what}: {e}"))
}

impl EventLog {
    /// A log continuing `head`, the head the sinks were reconciled to.
    pub(super) fn new(node: &str, key: &SecretBytes, path: PathBuf, head: Head) -> Result<Self, AuditError> {
        let key = ChainKey::new(key.expose_secret())
            .ok_or_else(|| AuditError::Unavailable("the audit key does not key HMAC-SHA256".into()))?;
        Ok(Self {
            node: node.to_owned(),
            key,
            path,
            file: None,
            written_to: None,
            len: None,
            dirty: false,
            write_failed: false,
            identity: None,
            written: head.clone(),
            head,
            canonical: Vec::with_capacity(512),
            pending: Vec::with_capacity(64 * 1024),
            next_ticket: 1,
            settled: 0,
            dropped: VecDeque::new(),
            unindexed: Unindexed::default(),
            sync_refusal: None,
            sync_failures: 0,
            anchor_refusal: None,
        })
    }

    /// The last event chained so far, as a waiter for it sees it (a reader catching up
    /// waits for this one).
    pub(super) fn last(&self) -> Written {
        Written {
            seq: self.head.seq,
            ticket: self.next_ticket - 1,
            sync_failures: self.sync_failures,
        }
    }

    /// Whether the last write succeeded and nothing refuses appends.
    pub(super) fn is_healthy(&self) -> bool {
        !self.write_failed && self.refusal().is_none()
    }

    /// Why appends are refused now, if they are.
    pub(super) fn refusal(&self) -> Option<&str> {
        self.sync_refusal.as_deref().or(self.anchor_refusal.as_deref())
    }

    /// Chains `data` as the next event and writes its line to the file at once.
    pub(super) fn append(&mut self, data: EventData) -> Result<Written, AuditError> {
        let written = self.chain(data)?;
        self.settle(written)?;
        Ok(written)
    }

    /// Chains `data` as the next event, its line kept for the next [`EventLog::flush`]:
    /// requests that arrive together share one write(2).
    pub(super) fn chain(&mut self, data: EventData) -> Result<Written, AuditError> {
        if let Some(why) = self.refusal() {
            return Err(AuditError::Unavailable(why.to_owned()));
        }
        if self.unindexed.events.len() >= MAX_UNINDEXED {
            return Err(AuditError::Unavailable(format!(
                "the store has not indexed the last {} events; events are refused until it catches up",
                self.unindexed.events.len()
            )));
        }
        let event = AuditEvent::new(self.head.seq + 1, &self.node, data);
        self.canonical.clear();
        event.write_canonical(&mut self.canonical);
        let mac = self.key.link(&self.head.mac, &self.canonical);
        let start = self.pending.len();
        push_line(&mut self.pending, &self.canonical, &mac);
        self.head.seq = event.seq;
        self.head.mac.clear();
        self.head.mac.extend_from_slice(&mac);
        self.unindexed.push(
            event.seq,
            event.time,
            mac,
            self.pending.get(start..).unwrap_or_default(),
        );
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        Ok(Written {
            seq: self.head.seq,
            ticket,
            sync_failures: self.sync_failures,
        })
    }

    /// Makes sure the event `written` is in the file: writes what is pending if it is not
    /// yet; fails when a write dropped it.
    pub(super) fn settle(&mut self, written: Written) -> Result<(), AuditError> {
        if written.ticket > self.settled {
            // Its own failure is reported below, by the dropped range that holds it.
            let _ = self.flush();
        }
        match self
            .dropped
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&written.ticket))
        {
            Some((_, _, why)) => Err(AuditError::Unavailable(format!("event file: {why}"))),
            None => Ok(()),
        }
    }

    /// Writes every chained line with one write(2). On failure the chain goes back to what
    /// the file holds: the events are dropped (their requests are refused) and their
    /// sequence numbers are given again.
    pub(super) fn flush(&mut self) -> Result<(), AuditError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let wrote = self.write_pending();
        self.write_failed = wrote.is_err();
        self.pending.clear();
        let first = self.settled + 1;
        self.settled = self.next_ticket - 1;
        match wrote {
            Ok(()) => {
                self.written = self.head.clone();
                Ok(())
            }
            Err(e) => {
                self.unindexed.drop_after(self.written.seq);
                self.head = self.written.clone();
                if self.dropped.len() == DROPPED_KEPT {
                    self.dropped.pop_front();
                }
                self.dropped.push_back((first, self.settled, e.to_string()));
                Err(unavailable("event file", &e))
            }
        }
    }

    fn open(&mut self) -> std::io::Result<Arc<File>> {
        if let Some(file) = &self.file {
            return Ok(Arc::clone(file));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        let meta = file.metadata()?;
        let identity = (meta.dev(), meta.ino());
        if !meta.is_file() {
            self.len = None;
        } else if self.identity == Some(identity) && self.len.is_some_and(|len| len < meta.len()) {
            // The same file, longer than what was written: a failed write's leftovers.
            self.dirty = true;
        } else {
            self.len = Some(meta.len());
        }
        self.identity = Some(identity);
        let file = Arc::new(file);
        self.file = Some(Arc::clone(&file));
        Ok(file)
    }

    /// Writes the pending lines; on failure cuts the file back to its last good length (or
    /// leaves that to the next write) and closes it for a reopen.
    fn write_pending(&mut self) -> std::io::Result<()> {
        let file = self.open()?;
        if self.dirty
            && let Some(len) = self.len
        {
            file.set_len(len)?;
        }
        self.dirty = false;
        match (&*file).write_all(&self.pending) {
            Ok(()) => {
                self.written_to = Some(Arc::clone(&file));
                if let Some(len) = &mut self.len {
                    *len += self.pending.len() as u64;
                }
                Ok(())
            }
            Err(e) => {
                self.dirty = self.len.is_some_and(|len| file.set_len(len).is_err());
                self.file = None;
                Err(e)
            }
        }
    }

    /// The file and the point a sync now would make durable (after writing what is
    /// pending); `None` when nothing is open.
    pub(super) fn sync_point(&mut self) -> Option<(Arc<File>, SyncPoint)> {
        // A failed write refuses its own requests; the sync covers what was written.
        let _ = self.flush();
        let file = Arc::clone(self.written_to.as_ref()?);
        Some((
            file,
            SyncPoint {
                seq: self.written.seq,
                len: self.len.unwrap_or(0),
            },
        ))
    }

    /// Notes a failed fdatasync: every append is refused until [`EventLog::resync`] succeeds.
    pub(super) fn sync_failed(&mut self, e: &std::io::Error) {
        self.sync_failures += 1;
        self.sync_refusal = Some(format!("event file sync: {e}"));
        self.file = None;
        self.written_to = None;
    }

    pub(super) fn sync_failing(&self) -> bool {
        self.sync_refusal.is_some()
    }

    /// After a failed fdatasync the kernel may have dropped the unsynced pages: cuts the file
    /// back to the last durable point and writes every event after it again (they are all
    /// still in memory: only synced events are indexed), then syncs. Returns the new point.
    pub(super) fn resync(&mut self, durable: SyncPoint) -> std::io::Result<SyncPoint> {
        let file = self.open()?;
        if self.len.is_some() {
            file.set_len(durable.len)?;
            self.len = Some(durable.len);
        }
        self.dirty = false;
        let written = self.written.seq;
        let lines = self.unindexed.lines_between(durable.seq, written);
        (&*file).write_all(lines)?;
        file.sync_data()?;
        if let Some(len) = &mut self.len {
            *len += lines.len() as u64;
        }
        self.sync_refusal = None;
        Ok(SyncPoint {
            seq: written,
            len: self.len.unwrap_or(0),
        })
    }

    /// Up to `max` of the oldest unindexed events with `seq <= upto` (synced ones) as a
    /// batch for the store, with its head; they stay here until [`EventLog::indexed`].
    pub(super) fn indexable(&self, upto: u64, max: usize) -> Option<(AuditBatch, Head)> {
        self.unindexed.batch(&self.node, upto, max)
    }

    /// Forgets the unindexed events up to `seq`: the store holds them.
    pub(super) fn indexed(&mut self, seq: u64) {
        self.unindexed.drop_until(seq);
    }

    pub(super) fn set_anchor_refusal(&mut self, why: Option<String>) {
        self.anchor_refusal = why;
    }
}

/// Events chained but not yet in the store: their lines back to back, exactly as written to
/// the file (the store takes the same bytes; a failed sync writes them again), and per event
/// what the store's rows and the anchor need.
#[derive(Default)]
struct Unindexed {
    lines: Vec<u8>,
    events: VecDeque<UnindexedEvent>,
}

struct UnindexedEvent {
    seq: u64,
    time: String,
    mac: [u8; 32],
    /// Where its line ends in `lines`.
    end: usize,
}

impl Unindexed {
    fn push(&mut self, seq: u64, time: String, mac: [u8; 32], line: &[u8]) {
        self.lines.extend_from_slice(line);
        self.events.push_back(UnindexedEvent {
            seq,
            time,
            mac,
            end: self.lines.len(),
        });
    }

    /// Where the line of the last event with `seq <= upto` ends (0 when none).
    fn end_of(&self, upto: u64) -> usize {
        self.split(upto).1
    }

    /// How many events have `seq <= upto`, and where the last one's line ends (0 when none).
    fn split(&self, upto: u64) -> (usize, usize) {
        let n = self.events.partition_point(|e| e.seq <= upto);
        let end = n.checked_sub(1).and_then(|i| self.events.get(i)).map_or(0, |e| e.end);
        (n, end)
    }

    /// The lines of the events with `after < seq <= upto`.
    fn lines_between(&self, after: u64, upto: u64) -> &[u8] {
        let (start, end) = (self.end_of(after), self.end_of(upto));
        self.lines.get(start..end.max(start)).unwrap_or_default()
    }

    fn batch(&self, node: &str, upto: u64, max: usize) -> Option<(AuditBatch, Head)> {
        let mut batch = AuditBatch::new(node);
        let mut start = 0;
        let mut last = None;
        for e in self.events.iter().take(max).take_while(|e| e.seq <= upto) {
            batch.push(e.seq, &e.time, self.lines.get(start..e.end).unwrap_or_default());
            start = e.end;
            last = Some(e);
        }
        let last = last?;
        Some((
            batch,
            Head {
                seq: last.seq,
                mac: last.mac.to_vec(),
            },
        ))
    }

    /// Forgets the events up to `seq` and their lines.
    fn drop_until(&mut self, seq: u64) {
        let (n, end) = self.split(seq);
        self.events.drain(..n);
        self.lines.drain(..end);
        for e in &mut self.events {
            e.end = e.end.saturating_sub(end);
        }
    }

    /// Forgets the events after `seq` (a failed write dropped them) and their lines.
    fn drop_after(&mut self, seq: u64) {
        let (n, end) = self.split(seq);
        self.events.truncate(n);
        self.lines.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64) -> Vec<u8> {
        format!("line {seq}\n").into_bytes()
    }

    fn filled(seqs: std::ops::RangeInclusive<u64>) -> Unindexed {
        let mut u = Unindexed::default();
        for seq in seqs {
            u.push(seq, format!("t{seq}"), [seq as u8; 32], &line(seq));
        }
        u
    }

    fn lines_of(seqs: std::ops::RangeInclusive<u64>) -> Vec<u8> {
        seqs.flat_map(line).collect()
    }

    #[test]
    fn unindexed_events_give_their_lines_between_two_points_and_as_a_batch() {
        let u = filled(3..=7);
        assert_eq!(u.lines_between(4, 6), lines_of(5..=6));
        assert_eq!(u.lines_between(0, 7), lines_of(3..=7));
        assert_eq!(u.lines_between(7, 9), b"");
        assert_eq!(u.lines_between(6, 4), b"");

        let (batch, head) = u.batch("n", 5, 100).unwrap();
        assert_eq!(
            head,
            Head {
                seq: 5,
                mac: vec![5; 32]
            }
        );
        let mut expected = AuditBatch::new("n");
        for seq in 3..=5 {
            expected.push(seq, &format!("t{seq}"), &line(seq));
        }
        assert_eq!(batch, expected);
        assert_eq!(u.batch("n", 9, 2).unwrap().1.seq, 4, "at most max events");
        assert!(u.batch("n", 2, 100).is_none(), "none synced yet");
    }

    #[test]
    fn indexed_and_dropped_events_leave_the_rest_with_their_lines() {
        let mut u = filled(1..=6);
        u.drop_until(2);
        assert_eq!(u.lines_between(0, 6), lines_of(3..=6));
        assert_eq!(u.batch("n", 4, 100).unwrap().0.len(), 2);
        u.drop_after(4);
        assert_eq!(u.lines_between(0, 9), lines_of(3..=4));
        u.push(5, "t5".into(), [9; 32], &line(5));
        assert_eq!(u.lines_between(3, 5), lines_of(4..=5));
        assert_eq!(
            u.batch("n", 9, 100).unwrap().1,
            Head {
                seq: 5,
                mac: vec![9; 32]
            }
        );
        u.drop_until(5);
        assert!(u.events.is_empty() && u.lines.is_empty());
    }
}
