//! Crash recovery of the writer: reads the three sinks' heads, decides which one holds the
//! truth, repairs the store and the anchor file towards it, and sets the writer's head.
//!
//! The decisions are pure ([`plan_store_repair`], [`anchor_needs_head`]); only what a crash
//! can leave behind is repaired — the event file ahead of the store, store rows of a batch
//! the file never took, the anchor behind. Everything else is evidence of tampering and is
//! refused, never repaired: this module must not drop an acknowledged event or rewrite a
//! sink to hide a difference.

use super::{AuditError, Recovery, append_anchor};
use crate::audit::chain::{ChainCheck, Head};
use crate::audit::event::{AuditEvent, EventData};
use crate::audit::is_one_batch;
use crate::audit::sink;
use crate::audit::witness;
use crate::kek::KekProvider;
use crate::store::AuditBatch;

fn fail(message: String) -> AuditError {
    AuditError::Unavailable(message)
}

/// How many of the last events a start searches for intents without an outcome: a change in
/// flight at a crash wrote its intent at most its own duration before (about two seconds of
/// events at full load).
const INTENT_SCAN: u64 = 100_000;
/// Events read per page of that search.
const SCAN_PAGE: u32 = 2000;
/// The outcome of an intent event (see `api::intend`).
const INTENT: &str = "intent";
/// The outcome recorded for a change a crash interrupted after its intent.
pub(crate) const INTERRUPTED: &str = "interrupted";

/// The outcome event of an interrupted change: its intent's fields, outcome `interrupted`.
fn interrupted(intent: AuditEvent, now_ms: i64) -> EventData {
    EventData {
        time_ms: now_ms,
        request_id: intent.request_id,
        principal: intent.principal,
        action: intent.action,
        resource: intent.resource,
        key_version: intent.key_version,
        decision: intent.decision,
        policy: intent.policy,
        outcome: INTERRUPTED.into(),
        source_ip: intent.source_ip,
        user_agent: intent.user_agent,
        secret_hmac: intent.secret_hmac,
        api: intent.api,
    }
}

/// What the store needs so that it ends where the event file does.
#[derive(Debug, PartialEq, Eq)]
enum StoreRepair {
    /// The store's head stands: the sinks agree, or there is nothing to compare.
    Nothing,
    /// The file holds events past the store's head (a crash between the two writes): copy
    /// them in; they must end at the file's head.
    CopyFileTail { file_head: Head },
    /// The store holds rows past the file's head that no anchor vouches for and that are
    /// one batch (the one a crash interrupted, never acknowledged): take them out.
    TakeBack { file_head: Head },
}

/// The store is ahead of the event file. The file and the store are written at the same
/// time and a batch is acknowledged only when both hold it and its head is anchored, so a
/// crash leaves at most one batch in the store that the file lacks. Those rows are taken
/// back only when they are exactly that: past the last anchored head, starting right after
/// a batch end (the file's head, or the genesis) and holding no batch end but their last.
/// Anything more lost acknowledged events from the file (and the anchor): refused, and
/// nothing is changed, until a person has looked.
fn plan_take_back(
    store_head: &Head,
    file_head: Head,
    anchored: u64,
    batch_ends: &[u64],
) -> Result<StoreRepair, AuditError> {
    if anchored > file_head.seq {
        return Err(fail(format!(
            "the event file ends at {} but the store at {} and the anchor at {anchored}: \
             run `sigvault audit verify`",
            file_head.seq, store_head.seq
        )));
    }
    if is_one_batch(file_head.seq, store_head.seq, batch_ends) {
        return Ok(StoreRepair::TakeBack { file_head });
    }
    let extra = store_head.seq - file_head.seq;
    Err(fail(format!(
        "the store holds {extra} events past the end of the event file (event {}), more than the one \
         batch a crash can leave: acknowledged events are missing from the event file and the anchor. \
         Nothing was changed. Run `sigvault audit verify`; to give these events up, \
         `sigvault audit accept-truncation --events {extra}`",
        file_head.seq
    )))
}

/// Decides how the store reaches the event file's head. `file_head` is `None` for an empty
/// or missing file, and for one that is not a regular file (`file_is_special`), which is
/// not compared: writes will tell. `anchored` is the last anchored sequence number;
/// `batch_ends` the store's batch ends from the file's head on (see [`plan_take_back`]).
fn plan_store_repair(
    store_head: &Head,
    file_head: Option<&Head>,
    file_is_special: bool,
    anchored: u64,
    batch_ends: &[u64],
) -> Result<StoreRepair, AuditError> {
    match file_head {
        None if file_is_special => Ok(StoreRepair::Nothing),
        None if store_head.seq == 0 => Ok(StoreRepair::Nothing),
        Some(f) if f.seq == store_head.seq && f.mac == store_head.mac => Ok(StoreRepair::Nothing),
        Some(f) if f.seq == store_head.seq => Err(fail(format!(
            "event file and store disagree at event {}: run `sigvault audit verify`",
            f.seq
        ))),
        Some(f) if f.seq > store_head.seq => Ok(StoreRepair::CopyFileTail { file_head: f.clone() }),
        behind => plan_take_back(
            store_head,
            behind.cloned().unwrap_or_else(Head::genesis),
            anchored,
            batch_ends,
        ),
    }
}

/// Whether the trail's `head` must be appended to the anchor file. An anchor past the head
/// means events were removed from both sinks: refused.
pub(super) fn anchor_needs_head(anchor_last: Option<&Head>, head: &Head) -> Result<bool, AuditError> {
    match anchor_last {
        Some(a) if a.seq > head.seq => Err(fail(format!(
            "the anchor names event {} but the trail ends at {}: events were removed; run `sigvault audit verify`",
            a.seq, head.seq
        ))),
        Some(a) if a.seq == head.seq && a.mac == head.mac => Ok(false),
        _ if head.seq == 0 => Ok(false),
        _ => Ok(true),
    }
}

impl Recovery {
    /// Brings the sinks to one head after a crash (see the module docs of [`super`]): reads
    /// the three heads, repairs the store towards the event file, then the anchor towards
    /// the result.
    pub(super) async fn reconcile(&mut self) -> Result<(), AuditError> {
        let store_head = self.store_head().await?;
        let file_head = self.file_head().await?;
        let anchor_last = self.last_anchor().await?;
        let anchored = anchor_last.as_ref().map_or(0, |a| a.seq);
        let file_is_special = file_head.is_none() && self.file_is_special();
        let file_seq = file_head.as_ref().map_or(0, |h| h.seq);
        let batch_ends = if store_head.seq > file_seq && !file_is_special {
            self.store
                .audit_batch_ends(&self.settings.node, file_seq.saturating_sub(1))
                .await
                .map_err(|e| fail(format!("store: {e}")))?
        } else {
            Vec::new()
        };
        let repair = plan_store_repair(&store_head, file_head.as_ref(), file_is_special, anchored, &batch_ends)?;
        let head = match repair {
            StoreRepair::Nothing => store_head,
            StoreRepair::CopyFileTail { file_head } => {
                let head = self.copy_file_tail_into_store(&store_head).await?;
                if head != file_head {
                    return Err(fail("event file tail does not chain onto the store".into()));
                }
                head
            }
            StoreRepair::TakeBack { file_head } => {
                self.take_back_unacknowledged(&file_head).await?;
                tracing::warn!(
                    from = file_head.seq + 1,
                    to = store_head.seq,
                    "audit events of a batch interrupted by a crash were taken back out of the store"
                );
                file_head
            }
        };
        if anchor_needs_head(anchor_last.as_ref(), &head)? {
            append_anchor(&mut self.anchor, &self.settings.node, &head)
                .await
                .map_err(|e| fail(format!("anchor file: {e}")))?;
        }
        self.head = head;
        Ok(())
    }

    /// Refuses a trail that does not reach the head the HSM witnessed (or holds another MAC
    /// there): its events were removed from every sink, which no crash does.
    pub(super) async fn check_witness(&self, hsm: &dyn KekProvider) -> Result<(), AuditError> {
        let node = &self.settings.node;
        let witnessed = witness::read(hsm, node)
            .await
            .map_err(|e| fail(format!("HSM witness: {e}")))?;
        let Some(witnessed) = witnessed else {
            return Ok(());
        };
        let mac = if witnessed.seq == 0 || witnessed.seq > self.head.seq {
            None
        } else {
            self.store
                .audit_range(node, witnessed.seq - 1, 1)
                .await
                .map_err(|e| fail(format!("store: {e}")))?
                .into_iter()
                .find(|(e, _)| e.seq == witnessed.seq)
                .map(|(_, mac)| mac)
        };
        witness::compare(&witnessed, self.head.seq, mac.as_deref())
            .map_err(|p| fail(format!("{}. Run `sigvault audit verify`", p.reason)))
    }

    /// The outcome events of changes whose intent is among the last [`INTENT_SCAN`] events
    /// with no event of the same request after it: a crash came between the change and its
    /// outcome. Each is the intent's event with outcome `interrupted`, timed now: whether the
    /// change was made is in the store's state of the resource it names.
    pub(super) async fn interrupted_changes(&self) -> Result<Vec<EventData>, AuditError> {
        let node = &self.settings.node;
        let mut after = self.head.seq.saturating_sub(INTENT_SCAN);
        let mut open: Vec<AuditEvent> = Vec::new();
        loop {
            let page = self
                .store
                .audit_range(node, after, SCAN_PAGE)
                .await
                .map_err(|e| fail(format!("store: {e}")))?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = last.seq;
            for (event, _) in page {
                open.retain(|intent| intent.request_id != event.request_id);
                if event.outcome == INTENT {
                    open.push(event);
                }
            }
        }
        let now_ms = crate::clock::unix_ms(time::OffsetDateTime::now_utc());
        Ok(open.into_iter().map(|intent| interrupted(intent, now_ms)).collect())
    }

    /// The store's last event of this node, or the genesis.
    pub(super) async fn store_head(&self) -> Result<Head, AuditError> {
        let last = self
            .store
            .audit_head(&self.settings.node)
            .await
            .map_err(|e| fail(format!("store: {e}")))?;
        Ok(match last {
            Some((event, mac)) => Head { seq: event.seq, mac },
            None => Head::genesis(),
        })
    }

    /// The event file's last complete event, after cutting off a line a crash left half
    /// written; `None` when the file holds none (or is not a regular file).
    pub(super) async fn file_head(&self) -> Result<Option<Head>, AuditError> {
        let path = self.settings.file.clone();
        let last = tokio::task::spawn_blocking(move || {
            sink::drop_partial_line(&path)?;
            sink::last_line(&path)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("event file: {e}")))?;
        let Some(line) = last else {
            return Ok(None);
        };
        let (event, mac) = AuditEvent::parse_line(&line).map_err(|e| fail(format!("event file, last line: {e}")))?;
        Ok(Some(Head { seq: event.seq, mac }))
    }

    /// This node's last well-formed anchor, after cutting off a line a crash left half
    /// written. (Malformed lines are `sigvault audit verify`'s to report.)
    pub(super) async fn last_anchor(&self) -> Result<Option<Head>, AuditError> {
        let path = self.settings.anchor_file.clone();
        let node = self.settings.node.clone();
        let anchors = tokio::task::spawn_blocking(move || {
            sink::drop_partial_line(&path)?;
            sink::read_anchors(&path, &node)
        })
        .await
        .map_err(|e| fail(e.to_string()))?
        .map_err(|e| fail(format!("anchor file: {e}")))?;
        Ok(anchors.into_iter().filter_map(Result::ok).next_back())
    }

    /// Removes store events after `file_head` once the store agrees with the file at it.
    pub(super) async fn take_back_unacknowledged(&mut self, file_head: &Head) -> Result<(), AuditError> {
        let node = self.settings.node.clone();
        if file_head.seq > 0 {
            let at = self
                .store
                .audit_range(&node, file_head.seq - 1, 1)
                .await
                .map_err(|e| fail(format!("store: {e}")))?;
            let agrees = at
                .first()
                .is_some_and(|(e, mac)| e.seq == file_head.seq && *mac == file_head.mac);
            if !agrees {
                return Err(fail(format!(
                    "event file and store disagree at event {}: run `sigvault audit verify`",
                    file_head.seq
                )));
            }
        }
        self.store
            .truncate_audit(&node, file_head.seq)
            .await
            .map_err(|e| fail(format!("store: {e}")))
    }

    /// Whether the event file is something other than a regular file (a device, a pipe).
    fn file_is_special(&self) -> bool {
        std::fs::metadata(&self.settings.file)
            .map(|m| !m.is_file())
            .unwrap_or(false)
    }

    /// Copies events the file holds beyond the store's head into the store, checking that
    /// they continue its chain. Returns the new head.
    async fn copy_file_tail_into_store(&mut self, store_head: &Head) -> Result<Head, AuditError> {
        let path = self.settings.file.clone();
        let lines = tokio::task::spawn_blocking(move || sink::read_events(&path))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(format!("event file: {e}")))?;
        let mut check = ChainCheck::new(self.key.expose_secret(), &self.settings.node, store_head.clone());
        let mut missing = Vec::new();
        for (line_no, parsed) in lines {
            let (event, mac) = parsed.map_err(|e| fail(format!("event file line {line_no}: {e}")))?;
            if event.node != self.settings.node || event.seq <= store_head.seq {
                continue;
            }
            check
                .next(&event, &mac)
                .map_err(|p| fail(format!("event file at {}: {}", p.seq, p.reason)))?;
            missing.push((event, mac));
        }
        self.store
            .append_audit(&AuditBatch::of(&self.settings.node, &missing))
            .await
            .map_err(|e| fail(format!("store: {e}")))?;
        tracing::warn!(
            events = missing.len(),
            "recovered audit events the store missed after a crash"
        );
        Ok(check.head().clone())
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

    fn refusal(result: Result<impl std::fmt::Debug, AuditError>) -> String {
        match result {
            Err(AuditError::Unavailable(message)) => message,
            Ok(other) => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn sinks_that_agree_need_no_repair() {
        assert_eq!(
            plan_store_repair(&head(5, 1), Some(&head(5, 1)), false, 5, &[]).unwrap(),
            StoreRepair::Nothing
        );
        assert_eq!(
            plan_store_repair(&Head::genesis(), None, false, 0, &[]).unwrap(),
            StoreRepair::Nothing,
            "a new trail"
        );
    }

    #[test]
    fn an_event_file_that_is_not_a_regular_file_is_not_compared() {
        assert_eq!(
            plan_store_repair(&head(5, 1), None, true, 5, &[]).unwrap(),
            StoreRepair::Nothing
        );
    }

    #[test]
    fn sinks_of_the_same_length_with_different_last_macs_are_refused() {
        let message = refusal(plan_store_repair(&head(5, 1), Some(&head(5, 2)), false, 5, &[]));
        assert_eq!(
            message,
            "event file and store disagree at event 5: run `sigvault audit verify`"
        );
    }

    #[test]
    fn an_event_file_ahead_of_the_store_is_copied_in() {
        assert_eq!(
            plan_store_repair(&head(3, 1), Some(&head(5, 2)), false, 5, &[]).unwrap(),
            StoreRepair::CopyFileTail { file_head: head(5, 2) }
        );
    }

    #[test]
    fn one_interrupted_batch_past_the_file_and_the_anchor_is_taken_back() {
        // Batches end at 5 (the file's head) and 7: rows 6 and 7 are one batch.
        assert_eq!(
            plan_store_repair(&head(7, 1), Some(&head(5, 2)), false, 5, &[5, 7]).unwrap(),
            StoreRepair::TakeBack { file_head: head(5, 2) }
        );
        assert_eq!(
            plan_store_repair(&head(2, 1), None, false, 0, &[2]).unwrap(),
            StoreRepair::TakeBack {
                file_head: Head::genesis()
            },
            "the first batch of a trail whose file never took it"
        );
    }

    #[test]
    fn store_rows_past_the_file_that_are_more_than_one_batch_are_refused() {
        // Two batch ends past the file's head: acknowledged events were cut from the file.
        let message = refusal(plan_store_repair(&head(7, 1), Some(&head(5, 2)), false, 5, &[5, 6, 7]));
        assert_eq!(
            message,
            "the store holds 2 events past the end of the event file (event 5), more than the one batch a \
             crash can leave: acknowledged events are missing from the event file and the anchor. Nothing \
             was changed. Run `sigvault audit verify`; to give these events up, `sigvault audit \
             accept-truncation --events 2`"
        );
        // The file ends inside a batch: the cut did not follow a batch boundary.
        assert!(refusal(plan_store_repair(&head(7, 1), Some(&head(5, 2)), false, 4, &[7])).contains("2 events past"));
        // Rows written before batch ends were recorded count as a batch each.
        assert!(
            refusal(plan_store_repair(
                &head(50, 1),
                Some(&head(0, 0)),
                false,
                0,
                &(1..=50).collect::<Vec<_>>()
            ))
            .contains("50 events past")
        );
    }

    #[test]
    fn an_anchor_past_the_event_file_refuses_when_the_store_is_ahead() {
        let message = refusal(plan_store_repair(&head(7, 1), Some(&head(5, 2)), false, 6, &[5, 7]));
        assert_eq!(
            message,
            "the event file ends at 5 but the store at 7 and the anchor at 6: run `sigvault audit verify`"
        );
        let message = refusal(plan_store_repair(&head(7, 1), None, false, 1, &[7]));
        assert!(
            message.starts_with("the event file ends at 0 but the store at 7"),
            "{message}"
        );
    }

    #[test]
    fn the_anchor_is_appended_only_when_it_is_behind_or_differs() {
        assert!(!anchor_needs_head(Some(&head(5, 1)), &head(5, 1)).unwrap());
        assert!(!anchor_needs_head(None, &Head::genesis()).unwrap(), "nothing to anchor");
        assert!(anchor_needs_head(None, &head(5, 1)).unwrap());
        assert!(anchor_needs_head(Some(&head(4, 1)), &head(5, 1)).unwrap());
        assert!(
            anchor_needs_head(Some(&head(5, 2)), &head(5, 1)).unwrap(),
            "a different MAC is anchored again"
        );
    }

    #[test]
    fn an_anchor_past_the_trail_is_refused() {
        let message = refusal(anchor_needs_head(Some(&head(9, 1)), &head(5, 1)));
        assert_eq!(
            message,
            "the anchor names event 9 but the trail ends at 5: events were removed; run `sigvault audit verify`"
        );
    }
}
