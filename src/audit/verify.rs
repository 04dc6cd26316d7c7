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
    fn note(&mut self, seq: u64, reason: String) {
        if self.0.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.0 = Some((seq, reason));
        }
    }
}

/// Progress callback: called with the number of events checked so far.
pub type Progress<'a> = &'a mut (dyn FnMut(u64) + Send);

/// Verifies `node`'s trail in the store, the event file and the anchor file.
pub async fn verify_trail(
    store: &dyn AuditStore,
    key: &[u8],
    node: &str,
    file: &Path,
    anchor_file: &Path,
    progress: Progress<'_>,
) -> Result<Report, VerifyError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| VerifyError::Io { path, source }
    };
    let anchors = {
        let (path, node) = (anchor_file.to_path_buf(), node.to_owned());
        tokio::task::spawn_blocking(move || sink::read_anchors(&path, &node))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(io(anchor_file))?
    };
    let mut worst = Worst::default();
    // Ordered, so the first truncation reported is the earliest anchored head past the end.
    let mut anchored: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (i, anchor) in anchors.iter().enumerate() {
        match anchor {
            Ok(head) => {
                anchored.insert(head.seq, head.mac.clone());
            }
            Err(reason) => worst.note(0, format!("anchor file entry {}: {reason}", i + 1)),
        }
    }

    // The store's chain.
    let mut check = ChainCheck::new(key, node, Head::genesis());
    let mut seen_at_anchor: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut checked = 0u64;
    let mut store_broken = false;
    'pages: loop {
        let page = store.audit_range(node, check.head().seq.max(checked), PAGE).await?;
        if page.is_empty() {
            break;
        }
        for (event, mac) in &page {
            checked = checked.max(event.seq);
            if let Err(p) = check.next(event, mac) {
                worst.note(p.seq, format!("store: {}", p.reason));
                store_broken = true;
                break 'pages;
            }
            if anchored.contains_key(&event.seq) {
                seen_at_anchor.insert(event.seq, mac.clone());
            }
        }
        progress(checked);
    }
    let store_head = check.head().clone();

    // The event file's chain.
    let lines = {
        let path = file.to_path_buf();
        tokio::task::spawn_blocking(move || sink::read_events(&path))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(io(file))?
    };
    let mut fcheck = ChainCheck::new(key, node, Head::genesis());
    let mut file_broken = false;
    for (line_no, parsed) in lines {
        match parsed {
            Err(reason) => {
                worst.note(fcheck.head().seq + 1, format!("event file line {line_no}: {reason}"));
                file_broken = true;
                break;
            }
            Ok((event, _)) if event.node != node => {}
            Ok((event, mac)) => {
                if let Err(p) = fcheck.next(&event, &mac) {
                    worst.note(p.seq, format!("event file line {line_no}: {}", p.reason));
                    file_broken = true;
                    break;
                }
            }
        }
    }
    let file_head = fcheck.head().clone();

    // Both sinks must end at the same head.
    if !store_broken && !file_broken && store_head != file_head {
        let (short, long, which) = if store_head.seq < file_head.seq {
            (&store_head, &file_head, "store")
        } else {
            (&file_head, &store_head, "event file")
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

    // Every anchored head must lie on the chain: a later one means the tail was removed.
    if !store_broken {
        for (seq, mac) in &anchored {
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

    Ok(match worst.0 {
        None => Report {
            ok: true,
            checked: store_head.seq,
            first_bad_seq: None,
            reason: None,
        },
        Some((seq, reason)) => Report {
            ok: false,
            checked: store_head.seq,
            first_bad_seq: Some(seq),
            reason: Some(reason),
        },
    })
}
