//! An operator's decision to give up events the event file lost: the one repair beyond a
//! crash's interrupted batch, and never automatic.
//!
//! When acknowledged events are missing from the event file (and the anchor) but still in
//! the store, a start refuses (see [`super::reconcile`]). After `sigvault audit verify`, an
//! operator who accepts the loss runs `sigvault audit accept-truncation --events N`: the
//! store's rows past the file's end are taken out, the trail is anchored at the file's head,
//! and an event `audit.accept_truncation` naming the node, the dropped range and the operator
//! is appended to all three sinks, so the decision is itself part of the chain. The count
//! must match what is found, so a stale or mistyped command changes nothing.

use std::sync::Arc;

use super::reconcile::anchor_needs_head;
use super::{AuditError, Auditor, Recovery, WitnessCheck, append_anchor};
use crate::audit::AuditSettings;
use crate::audit::chain::Head;
use crate::audit::event::{Decision, EventData};
use crate::audit::witness;
use crate::kek::KekProvider;
use crate::secret::SecretBytes;
use crate::store::AuditStore;

/// The action of the event that records an accepted truncation (not a request: no policy
/// decides it; the operator had the data dir and the HSM).
pub(crate) const ACCEPT_TRUNCATION: &str = "audit.accept_truncation";

/// What an accepted truncation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The event file's head, where the trail now continues.
    pub kept: u64,
    /// Events taken out of the store (sequence numbers `kept + 1 ..= kept + dropped`).
    pub dropped: u64,
    /// The sequence number of the event that records the decision.
    pub event_seq: u64,
}

fn refused(message: String) -> AuditError {
    AuditError::Unavailable(message)
}

/// Gives up the `events` store rows past the end of `settings.file` (see the module docs),
/// as `operator`, at `time_ms`. Refuses, changing nothing, when the store does not hold
/// exactly that many events past the file's end, when the anchor vouches for events the file
/// lacks, or when the two sinks disagree at the file's head.
pub async fn accept_truncation(
    store: Arc<dyn AuditStore>,
    key: SecretBytes,
    settings: AuditSettings,
    events: u64,
    operator: &str,
    time_ms: i64,
    hsm: Arc<dyn KekProvider>,
) -> Result<Accepted, AuditError> {
    let node = settings.node.clone();
    let key = Arc::new(key);
    let mut writer = Recovery::new(Arc::clone(&store), Arc::clone(&key), settings.clone());
    let store_head = writer.store_head().await?;
    let file_head = writer.file_head().await?.unwrap_or_else(Head::genesis);
    let anchor_last = writer.last_anchor().await?;
    let anchored = anchor_last.as_ref().map_or(0, |a| a.seq);
    // What was lost: the store's rows past the file, or — every sink cut back together, as
    // a restored backup is — the events up to the head the HSM witnessed.
    let witnessed = witness::read(hsm.as_ref(), &node)
        .await
        .map_err(|e| refused(format!("HSM witness: {e}")))?
        .map_or(0, |w| w.seq);
    let last_lost = store_head.seq.max(witnessed);
    let found = last_lost.saturating_sub(file_head.seq);
    if found == 0 {
        return Err(refused(format!(
            "nothing to accept: neither the store nor the HSM witness names an event of node {node} past the event \
             file's end (event {})",
            file_head.seq
        )));
    }
    if found != events {
        return Err(refused(format!(
            "the store and the HSM witness name {found} events of node {node} past the event file's end, not {events}: \
             nothing was changed"
        )));
    }
    if anchored > file_head.seq {
        return Err(refused(format!(
            "the anchor names event {anchored}, past the event file's end at {}: nothing was changed; \
             run `sigvault audit verify`",
            file_head.seq
        )));
    }
    if store_head.seq > file_head.seq {
        writer.take_back_unacknowledged(&file_head).await?;
    }
    if anchor_needs_head(anchor_last.as_ref(), &file_head)? {
        append_anchor(&mut writer.anchor, &node, &file_head)
            .await
            .map_err(|e| refused(format!("anchor file: {e}")))?;
    }
    let data = EventData {
        time_ms,
        principal: operator.to_owned(),
        action: ACCEPT_TRUNCATION.into(),
        resource: format!("audit:{node}:{}-{last_lost}", file_head.seq + 1),
        decision: Decision::Allow,
        outcome: "ok".into(),
        ..EventData::default()
    };
    drop(writer);
    // The sinks now agree at the file's head: the auditor starts there (not comparing with
    // the HSM witness, which names events being given up), records the decision in all
    // three, and witnesses the new head at its shutdown.
    let auditor = Auditor::start_shared(store, key, settings, hsm, WitnessCheck::GiveUp).await?;
    let event_seq = auditor.record_durable(data).await;
    auditor.shutdown().await;
    let event_seq = event_seq?;
    tracing::warn!(
        node,
        from = file_head.seq + 1,
        to = store_head.seq,
        operator,
        "audit events the event file lost were given up by an operator"
    );
    Ok(Accepted {
        kept: file_head.seq,
        dropped: found,
        event_seq,
    })
}
