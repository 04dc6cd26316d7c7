//! Verification of the whole trail: the store's chain, the event file's chain, that both
//! end at the same head, that every anchored head lies on the chain, and that the chain
//! reaches the head the HSM witnessed ([`super::witness`]). Reports the first bad sequence
//! number and why. Read-only; used by `GET /v1/audit/verify` and `sigvault audit verify`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::chain::{ChainCheck, Head};
use super::sink;
use super::witness::{self, WitnessError};
use crate::store::{AuditStore, StoreError};

/// Events read from the store per page.
const PAGE: u32 = 2000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ok: bool,
    /// Events of the store's chain that verified (up to the first bad one).
    pub checked: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Events past the last anchored head (see [`verify_trail`]): on a running vault the
    /// batches being written; on a stopped one, events whose anchor line a crash lost.
    #[serde(skip_serializing_if = "is_zero")]
    pub unanchored: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The HSM witness could not be read (for callers that read it: see [`verify_trail`]).
    #[error(transparent)]
    Witness(#[from] WitnessError),
}

/// The earliest problem found so far.
#[derive(Default)]
struct Worst(Option<(u64, String)>);

impl Worst {
    /// Keeps `reason` when it comes before every problem noted so far (at the same
    /// sequence number, the one noted first stays).
    fn note(&mut self, seq: u64, reason: String) {
        if self.0.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.0 = Some((seq, reason));
        }
    }

    /// The report: `checked` is how far the store's chain verified.
    fn into_report(self, checked: u64, unanchored: u64) -> Report {
        match self.0 {
            None => Report {
                ok: true,
                checked,
                first_bad_seq: None,
                reason: None,
                unanchored,
            },
            Some((seq, reason)) => Report {
                ok: false,
                checked,
                first_bad_seq: Some(seq),
                reason: Some(reason),
                unanchored,
            },
        }
    }
}

/// Progress callback: called with the number of events checked so far.
pub type Progress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// What the walks look out for: the anchored heads (read before the walks) and the head the
/// HSM witnessed.
struct Marks {
    anchored: BTreeMap<u64, Vec<u8>>,
    last_anchored: u64,
    witnessed: Option<Head>,
}

impl Marks {
    /// Whether an anchor or the witness names event `seq` (its MAC is kept for the checks).
    fn names(&self, seq: u64) -> bool {
        self.anchored.contains_key(&seq) || self.witnessed.as_ref().is_some_and(|w| w.seq == seq)
    }
}

/// Verifies `node`'s trail in the store, the event file and the anchor file: reads the
/// anchored heads, walks the store's chain and then the file's, and compares where they end
/// with each other, with the anchors and with `witnessed`, the head the HSM holds for the
/// node (read by the caller before this call, so on a running vault it lies behind what the
/// walks find; `None` when there is none). Every step notes its problems; the earliest wins,
/// so a trail cut short in every sink is named by the witness only when nothing on the disk
/// tells (the sinks agree with each other and with the anchors).
///
/// Works on a running vault. The writer appends a batch to the store and the file and only
/// then anchors its head, so both sinks hold at least every event up to the last anchored
/// head read before the walks; past it they may differ in length (a batch in flight, or
/// batches committed between the two walks). There they must agree where both have events,
/// and the report counts the events past the anchor as `unanchored`. Up to the anchor,
/// both sinks must be complete and identical. (A stopped vault's anchor names its head: the
/// writer anchors every batch, and a start repairs a crash's missing anchor line, or refuses
/// a store ahead of its event file.)
pub async fn verify_trail(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    file: &Path,
    anchor_file: &Path,
    witnessed: Option<Head>,
    progress: Progress<'_>,
) -> Result<Report, VerifyError> {
    verify_sinks(store, key, node, Some((file, anchor_file)), witnessed, progress).await
}

/// As [`verify_trail`] for a node whose event file and anchor file are not here (another
/// node of a cluster, verified from this node's settings): its chain in the shared store,
/// checked against the head the HSM witnessed for it. Its own files are checked on its own
/// machine.
pub async fn verify_stored_trail(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    witnessed: Option<Head>,
    progress: Progress<'_>,
) -> Result<Report, VerifyError> {
    verify_sinks(store, key, node, None, witnessed, progress).await
}

/// [`verify_trail`], with `files` (the event file and the anchor file) when they are this
/// node's to check.
async fn verify_sinks(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    files: Option<(&Path, &Path)>,
    witnessed: Option<Head>,
    progress: Progress<'_>,
) -> Result<Report, VerifyError> {
    let mut worst = Worst::default();
    let anchored = match files {
        Some((_, anchor_file)) => read_anchored_heads(anchor_file, node, &mut worst).await?,
        None => BTreeMap::new(),
    };
    let last_anchored = anchored.keys().next_back().copied().unwrap_or(0);
    let marks = Marks {
        anchored,
        last_anchored,
        witnessed,
    };
    let (store_walk, seen) = walk_store(store, key, node, &marks, progress, &mut worst).await?;
    let file_walk = match files {
        Some((file, _)) => Some(walk_event_file(file, key, node, last_anchored, &mut worst).await?),
        None => None,
    };
    if let Some(file_walk) = &file_walk
        && !store_walk.broken
        && !file_walk.broken
    {
        // The store may be ahead of the file by the batch being written, never by more.
        let store_ahead = store_walk.head.seq > file_walk.head.seq;
        let batch_ends = if store_ahead {
            store
                .audit_batch_ends(node, file_walk.head.seq.saturating_sub(1))
                .await?
        } else {
            Vec::new()
        };
        compare_ends(&store_walk, file_walk, last_anchored, &batch_ends, &mut worst);
    }
    if !store_walk.broken {
        check_anchors(&marks.anchored, &store_walk.head, &seen, &mut worst);
        if let Some(witnessed) = &marks.witnessed {
            check_witness(witnessed, &store_walk.head, &seen, &mut worst);
        }
    }
    let file_head = file_walk.as_ref().map_or(0, |w| w.head.seq);
    let unanchored = if files.is_some() {
        store_walk.head.seq.max(file_head).saturating_sub(last_anchored)
    } else {
        0
    };
    Ok(worst.into_report(store_walk.head.seq, unanchored))
}

/// Runs a file read on the blocking pool; a task that did not finish reads as an I/O error
/// of `path`.
async fn read_blocking<T: Send + 'static>(
    path: &Path,
    read: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
) -> Result<T, VerifyError> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read(&owned))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r)
        .map_err(|source| VerifyError::Io {
            path: path.display().to_string(),
            source,
        })
}

/// The anchored heads of `node` by sequence number. A malformed anchor line is a problem
/// at sequence 0 (it cannot be placed on the chain) but does not stop the verification.
async fn read_anchored_heads(
    anchor_file: &Path,
    node: &str,
    worst: &mut Worst,
) -> Result<BTreeMap<u64, Vec<u8>>, VerifyError> {
    let owned_node = node.to_owned();
    let anchors = read_blocking(anchor_file, move |path| sink::read_anchors(path, &owned_node)).await?;
    // Ordered, so the first truncation reported is the earliest anchored head past the end.
    let mut anchored = BTreeMap::new();
    for (i, anchor) in anchors.into_iter().enumerate() {
        match anchor {
            Ok(head) => {
                anchored.insert(head.seq, head.mac);
            }
            Err(reason) => worst.note(0, format!("anchor file entry {}: {reason}", i + 1)),
        }
    }
    Ok(anchored)
}

/// How far one sink's chain verified.
struct Walk {
    /// The last event that verified (the genesis when none did).
    head: Head,
    /// Whether the chain broke before its end (the problem is noted).
    broken: bool,
    /// The MAC of every verified event from the last anchored head on, by sequence number:
    /// where the two sinks may differ in length, [`compare_ends`] compares them here.
    past_anchor: BTreeMap<u64, Vec<u8>>,
}

/// Walks the store's chain page by page up to its end or its first bad event. Returns how
/// far it verified and the stored MAC of every verified event an anchor or the witness
/// names (for [`check_anchors`] and [`check_witness`]).
async fn walk_store(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    marks: &Marks,
    progress: Progress<'_>,
    worst: &mut Worst,
) -> Result<(Walk, HashMap<u64, Vec<u8>>), VerifyError> {
    let last_anchored = marks.last_anchored;
    let mut check = ChainCheck::new(key, node, Head::genesis());
    let mut seen = HashMap::new();
    let mut past_anchor = BTreeMap::new();
    let mut checked = 0u64;
    let mut broken = false;
    'pages: loop {
        let page = store.audit_range(node, check.head().seq.max(checked), PAGE).await?;
        if page.is_empty() {
            break;
        }
        for (event, mac) in &page {
            checked = checked.max(event.seq);
            if let Err(p) = check.next(event, mac) {
                worst.note(p.seq, format!("store: {}", p.reason));
                broken = true;
                break 'pages;
            }
            if marks.names(event.seq) {
                seen.insert(event.seq, mac.clone());
            }
            if event.seq >= last_anchored {
                past_anchor.insert(event.seq, mac.clone());
            }
        }
        progress(checked);
    }
    let walk = Walk {
        head: check.head().clone(),
        broken,
        past_anchor,
    };
    Ok((walk, seen))
}

/// Walks `node`'s events in the event file up to its end or its first bad line. Lines of
/// other nodes (a shared file) are skipped; a line that does not parse breaks the chain at
/// the event that would have followed.
async fn walk_event_file(
    file: &Path,
    key: &[u8],
    node: &str,
    last_anchored: u64,
    worst: &mut Worst,
) -> Result<Walk, VerifyError> {
    let lines = read_blocking(file, sink::read_events).await?;
    let mut check = ChainCheck::new(key, node, Head::genesis());
    let mut broken = false;
    let mut past_anchor = BTreeMap::new();
    for (line_no, parsed) in lines {
        match parsed {
            Err(reason) => {
                worst.note(check.head().seq + 1, format!("event file line {line_no}: {reason}"));
                broken = true;
                break;
            }
            Ok((event, _)) if event.node != node => {}
            Ok((event, mac)) => {
                if let Err(p) = check.next(&event, &mac) {
                    worst.note(p.seq, format!("event file line {line_no}: {}", p.reason));
                    broken = true;
                    break;
                }
                if event.seq >= last_anchored {
                    past_anchor.insert(event.seq, mac);
                }
            }
        }
    }
    Ok(Walk {
        head: check.head().clone(),
        broken,
        past_anchor,
    })
}

/// Where the two sinks end (call only when neither chain broke). When both reach the last
/// anchored head, the difference in length past it is the writer's work in progress: the
/// shorter one's last event must then be the longer one's event of that number, and a store
/// ahead of the file may hold only the one batch being written (`batch_ends`: the store's
/// batch ends from the file's head on; see [`super::is_one_batch`]) — the file is read after
/// the store, so it has caught up with anything older. Otherwise they must end together
/// ([`compare_heads`]).
fn compare_ends(store: &Walk, file: &Walk, last_anchored: u64, batch_ends: &[u64], worst: &mut Worst) {
    let shorter = if store.head.seq <= file.head.seq { store } else { file };
    let longer = if std::ptr::eq(shorter, store) { file } else { store };
    let reaches_anchor = shorter.head.seq >= last_anchored;
    // The genesis (an empty sink before the first anchor) agrees with every chain.
    let agrees = shorter.head.seq == 0 || longer.past_anchor.get(&shorter.head.seq) == Some(&shorter.head.mac);
    let in_flight = store.head.seq <= file.head.seq || super::is_one_batch(file.head.seq, store.head.seq, batch_ends);
    if reaches_anchor && agrees && in_flight {
        return;
    }
    compare_heads(&store.head, &file.head, worst);
}

/// Both sinks must end at the same head (call only when neither chain broke): the shorter
/// one lost the events after its end, or, at the same length, the two disagree on the last.
fn compare_heads(store_head: &Head, file_head: &Head, worst: &mut Worst) {
    if store_head == file_head {
        return;
    }
    let (short, long, which) = if store_head.seq < file_head.seq {
        (store_head, file_head, "store")
    } else {
        (file_head, store_head, "event file")
    };
    if short.seq == long.seq {
        worst.note(short.seq, "the store and the event file disagree on this event".into());
    } else {
        worst.note(
            short.seq + 1,
            format!(
                "the {which} ends at event {} but the other sink goes on to {}",
                short.seq, long.seq
            ),
        );
    }
}

/// Every anchored head must lie on the store's chain (call only when it did not break): an
/// anchor past its end means the tail was removed, one whose MAC differs means the event
/// it names was replaced.
fn check_anchors(
    anchored: &BTreeMap<u64, Vec<u8>>,
    store_head: &Head,
    seen_at_anchor: &HashMap<u64, Vec<u8>>,
    worst: &mut Worst,
) {
    for (seq, mac) in anchored {
        if *seq > store_head.seq {
            worst.note(
                store_head.seq + 1,
                format!(
                    "truncated: the anchor names event {seq} but the trail ends at {}",
                    store_head.seq
                ),
            );
        } else if *seq > 0 && seen_at_anchor.get(seq) != Some(mac) {
            worst.note(*seq, "the anchor's MAC for this event does not match the trail".into());
        }
    }
}

/// The store's chain must reach the witnessed head and hold its MAC there (call only when
/// the chain did not break; see [`witness::compare`]).
fn check_witness(witnessed: &Head, store_head: &Head, seen: &HashMap<u64, Vec<u8>>, worst: &mut Worst) {
    let mac = seen.get(&witnessed.seq).map(Vec::as_slice);
    if let Err(problem) = witness::compare(witnessed, store_head.seq, mac) {
        worst.note(problem.seq, problem.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, mac: u8) -> Head {
        Head {
            seq,
            mac: vec![mac; 32],
        }
    }

    fn compared(store: &Head, file: &Head) -> Option<(u64, String)> {
        let mut worst = Worst::default();
        compare_heads(store, file, &mut worst);
        worst.0
    }

    fn anchors_checked(anchored: &[(u64, u8)], store_head: &Head, seen: &[(u64, u8)]) -> Option<(u64, String)> {
        let anchored = anchored.iter().map(|(s, m)| (*s, vec![*m; 32])).collect();
        let seen = seen.iter().map(|(s, m)| (*s, vec![*m; 32])).collect();
        let mut worst = Worst::default();
        check_anchors(&anchored, store_head, &seen, &mut worst);
        worst.0
    }

    #[test]
    fn the_earliest_problem_is_the_one_reported() {
        let mut worst = Worst::default();
        worst.note(7, "later".into());
        worst.note(3, "earlier".into());
        worst.note(5, "between".into());
        worst.note(3, "same sequence, found second".into());
        assert_eq!(worst.0, Some((3, "earlier".into())));
        let report = worst.into_report(9, 0);
        assert_eq!((report.ok, report.checked, report.first_bad_seq), (false, 9, Some(3)));
        assert_eq!(Worst::default().into_report(4, 0), intact(4));
    }

    fn intact(checked: u64) -> Report {
        Report {
            ok: true,
            checked,
            first_bad_seq: None,
            reason: None,
            unanchored: 0,
        }
    }

    fn walk(seq: u64, mac: u8, past_anchor: &[(u64, u8)]) -> Walk {
        Walk {
            head: head(seq, mac),
            broken: false,
            past_anchor: past_anchor.iter().map(|(s, m)| (*s, vec![*m; 32])).collect(),
        }
    }

    /// [`compare_ends`] with the store's batches ending at `batch_ends`.
    fn ends_compared_with(store: &Walk, file: &Walk, last_anchored: u64, batch_ends: &[u64]) -> Option<(u64, String)> {
        let mut worst = Worst::default();
        compare_ends(store, file, last_anchored, batch_ends, &mut worst);
        worst.0
    }

    /// [`compare_ends`] with every event of the store a batch of its own.
    fn ends_compared(store: &Walk, file: &Walk, last_anchored: u64) -> Option<(u64, String)> {
        let ends: Vec<u64> = (0..=store.head.seq).collect();
        ends_compared_with(store, file, last_anchored, &ends)
    }

    #[test]
    fn past_the_last_anchor_the_file_may_be_ahead_of_the_store_while_they_agree() {
        // Anchored up to 4; the store holds 5 and 6, the file (read later) 5 to 8.
        let store = walk(6, 6, &[(5, 5), (6, 6)]);
        let file = walk(8, 8, &[(5, 5), (6, 6), (7, 7), (8, 8)]);
        assert_eq!(ends_compared(&store, &file, 4), None);
    }

    #[test]
    fn past_the_last_anchor_the_store_may_be_ahead_of_the_file_by_the_one_batch_being_written() {
        let store = walk(8, 8, &[(5, 5), (6, 6), (7, 7), (8, 8)]);
        let file = walk(6, 6, &[(5, 5), (6, 6)]);
        // 7 and 8 are one batch (batches end at 4, 6 and 8).
        assert_eq!(ends_compared_with(&store, &file, 4, &[4, 6, 8]), None);
        // Two batches (7, and 8): the file lost an acknowledged one.
        assert_eq!(
            ends_compared_with(&store, &file, 4, &[4, 6, 7, 8]),
            Some((
                7,
                "the event file ends at event 6 but the other sink goes on to 8".into()
            ))
        );
    }

    #[test]
    fn a_sink_that_ends_at_the_last_anchor_may_be_behind_one_that_goes_on() {
        let store = walk(4, 4, &[(4, 4)]);
        let file = walk(6, 6, &[(4, 4), (5, 5), (6, 6)]);
        assert_eq!(ends_compared(&store, &file, 4), None);
        let other_at_the_anchor = walk(6, 6, &[(4, 9), (5, 5), (6, 6)]);
        assert!(ends_compared(&store, &other_at_the_anchor, 4).is_some());
        // Before the first anchor an empty sink is only behind.
        assert_eq!(
            ends_compared(
                &Walk {
                    past_anchor: BTreeMap::new(),
                    ..walk(0, 0, &[])
                },
                &walk(1, 1, &[(1, 1)]),
                0
            ),
            None
        );
    }

    #[test]
    fn past_the_last_anchor_sinks_that_disagree_are_still_reported() {
        let store = walk(6, 9, &[(5, 5), (6, 9)]);
        let file = walk(8, 8, &[(5, 5), (6, 6), (7, 7), (8, 8)]);
        assert_eq!(
            ends_compared(&store, &file, 4),
            Some((7, "the store ends at event 6 but the other sink goes on to 8".into()))
        );
    }

    #[test]
    fn a_sink_that_ends_before_the_last_anchor_must_end_with_the_other() {
        let store = walk(3, 3, &[]);
        let file = walk(6, 6, &[(4, 4), (5, 5), (6, 6)]);
        assert_eq!(
            ends_compared(&store, &file, 4),
            Some((4, "the store ends at event 3 but the other sink goes on to 6".into()))
        );
        assert_eq!(ends_compared(&walk(6, 6, &[]), &walk(6, 6, &[]), 6), None);
    }

    #[test]
    fn sinks_ending_at_the_same_head_agree() {
        assert_eq!(compared(&head(4, 1), &head(4, 1)), None);
        assert_eq!(compared(&Head::genesis(), &Head::genesis()), None);
    }

    #[test]
    fn the_shorter_sink_is_named_at_the_first_event_it_lacks() {
        assert_eq!(
            compared(&head(3, 1), &head(5, 2)),
            Some((4, "the store ends at event 3 but the other sink goes on to 5".into()))
        );
        assert_eq!(
            compared(&head(5, 2), &head(3, 1)),
            Some((
                4,
                "the event file ends at event 3 but the other sink goes on to 5".into()
            ))
        );
    }

    #[test]
    fn sinks_of_the_same_length_with_different_last_macs_disagree_on_that_event() {
        assert_eq!(
            compared(&head(5, 1), &head(5, 2)),
            Some((5, "the store and the event file disagree on this event".into()))
        );
    }

    #[test]
    fn an_anchor_past_the_end_of_the_trail_reports_a_truncation_after_its_last_event() {
        assert_eq!(
            anchors_checked(&[(2, 1), (6, 1), (9, 1)], &head(4, 0), &[(2, 1)]),
            Some((5, "truncated: the anchor names event 6 but the trail ends at 4".into()))
        );
    }

    #[test]
    fn an_anchor_whose_mac_differs_from_the_trail_is_reported_at_its_event() {
        assert_eq!(
            anchors_checked(&[(2, 1), (4, 9)], &head(4, 0), &[(2, 1), (4, 7)]),
            Some((4, "the anchor's MAC for this event does not match the trail".into()))
        );
        assert_eq!(anchors_checked(&[(2, 1), (4, 7)], &head(4, 0), &[(2, 1), (4, 7)]), None);
    }

    fn witness_checked(witnessed: &Head, store_head: &Head, seen: &[(u64, u8)]) -> Option<(u64, String)> {
        let seen = seen.iter().map(|(s, m)| (*s, vec![*m; 32])).collect();
        let mut worst = Worst::default();
        check_witness(witnessed, store_head, &seen, &mut worst);
        worst.0
    }

    #[test]
    fn a_trail_that_holds_the_witnessed_head_passes_the_witness() {
        assert_eq!(witness_checked(&head(3, 7), &head(3, 7), &[(3, 7)]), None);
        assert_eq!(witness_checked(&head(3, 7), &head(9, 1), &[(3, 7)]), None);
    }

    #[test]
    fn a_trail_that_ends_before_the_witnessed_head_is_reported_after_its_last_event() {
        let (seq, reason) = witness_checked(&head(6, 7), &head(4, 1), &[]).unwrap();
        assert_eq!(seq, 5);
        assert!(
            reason.starts_with("the HSM witness names event 6 (MAC 0707070707070707…) but the trail ends at event 4"),
            "{reason}"
        );
        let (seq, _) = witness_checked(&head(6, 7), &Head::genesis(), &[]).unwrap();
        assert_eq!(seq, 1, "a wiped trail fails at its first event");
    }

    #[test]
    fn a_trail_with_another_mac_at_the_witnessed_event_is_reported_there() {
        let (seq, reason) = witness_checked(&head(3, 7), &head(5, 1), &[(3, 8)]).unwrap();
        assert_eq!(seq, 3);
        assert!(
            reason.starts_with("the trail differs from the HSM witness at event 3"),
            "{reason}"
        );
    }

    #[test]
    fn a_sink_that_tells_more_is_reported_before_the_witness() {
        // The file goes on to 6 while the store ends at 3; the witness names 5. At the same
        // sequence number the sinks' disagreement, found first, is the one reported.
        let mut worst = Worst::default();
        compare_heads(&head(3, 3), &head(6, 6), &mut worst);
        check_witness(&head(5, 5), &head(3, 3), &HashMap::new(), &mut worst);
        assert_eq!(
            worst.0,
            Some((4, "the store ends at event 3 but the other sink goes on to 6".into()))
        );
    }

    #[test]
    fn an_anchor_at_the_genesis_needs_no_event_behind_it() {
        assert_eq!(anchors_checked(&[(0, 0)], &Head::genesis(), &[]), None);
    }
}
