//! Verification of the whole trail: the store's chain, the event file's chain, that both
//! end at the same head, and that every anchored head lies on the chain. Reports the first
//! bad sequence number and why. Read-only; used by `GET /v1/audit/verify` and
//! `sigvault audit verify`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use super::chain::{ChainCheck, Head};
use super::sink;
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
    fn into_report(self, checked: u64) -> Report {
        match self.0 {
            None => Report {
                ok: true,
                checked,
                first_bad_seq: None,
                reason: None,
            },
            Some((seq, reason)) => Report {
                ok: false,
                checked,
                first_bad_seq: Some(seq),
                reason: Some(reason),
            },
        }
    }
}

/// Progress callback: called with the number of events checked so far.
pub type Progress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// Verifies `node`'s trail in the store, the event file and the anchor file: reads the
/// anchored heads, walks the store's chain and then the file's, and compares where they end
/// with each other and with the anchors. Every step notes its problems; the earliest wins.
pub async fn verify_trail(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    file: &Path,
    anchor_file: &Path,
    progress: Progress<'_>,
) -> Result<Report, VerifyError> {
    let mut worst = Worst::default();
    let anchored = read_anchored_heads(anchor_file, node, &mut worst).await?;
    let (store_walk, seen_at_anchor) = walk_store(store, key, node, &anchored, progress, &mut worst).await?;
    let file_walk = walk_event_file(file, key, node, &mut worst).await?;
    if !store_walk.broken && !file_walk.broken {
        compare_heads(&store_walk.head, &file_walk.head, &mut worst);
    }
    if !store_walk.broken {
        check_anchors(&anchored, &store_walk.head, &seen_at_anchor, &mut worst);
    }
    Ok(worst.into_report(store_walk.head.seq))
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
}

/// Walks the store's chain page by page up to its end or its first bad event. Returns how
/// far it verified and the stored MAC of every verified event an anchor names (for
/// [`check_anchors`]).
async fn walk_store(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    anchored: &BTreeMap<u64, Vec<u8>>,
    progress: Progress<'_>,
    worst: &mut Worst,
) -> Result<(Walk, HashMap<u64, Vec<u8>>), VerifyError> {
    let mut check = ChainCheck::new(key, node, Head::genesis());
    let mut seen_at_anchor = HashMap::new();
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
            if anchored.contains_key(&event.seq) {
                seen_at_anchor.insert(event.seq, mac.clone());
            }
        }
        progress(checked);
    }
    let walk = Walk {
        head: check.head().clone(),
        broken,
    };
    Ok((walk, seen_at_anchor))
}

/// Walks `node`'s events in the event file up to its end or its first bad line. Lines of
/// other nodes (a shared file) are skipped; a line that does not parse breaks the chain at
/// the event that would have followed.
async fn walk_event_file(file: &Path, key: &[u8], node: &str, worst: &mut Worst) -> Result<Walk, VerifyError> {
    let lines = read_blocking(file, sink::read_events).await?;
    let mut check = ChainCheck::new(key, node, Head::genesis());
    let mut broken = false;
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
            }
        }
    }
    Ok(Walk {
        head: check.head().clone(),
        broken,
    })
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
        let report = worst.into_report(9);
        assert_eq!((report.ok, report.checked, report.first_bad_seq), (false, 9, Some(3)));
        assert_eq!(Worst::default().into_report(4), intact(4));
    }

    fn intact(checked: u64) -> Report {
        Report {
            ok: true,
            checked,
            first_bad_seq: None,
            reason: None,
        }
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

    #[test]
    fn an_anchor_at_the_genesis_needs_no_event_behind_it() {
        assert_eq!(anchors_checked(&[(0, 0)], &Head::genesis(), &[]), None);
    }
}
