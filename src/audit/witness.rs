//! The HSM witness of the audit chain: each node's chain head (sequence number and MAC)
//! kept as a record in the root of trust ([`KekProvider::witness_write`]), outside the disk.
//!
//! The three sinks — store table, event file, anchor file — all live on the vault's disk:
//! whoever wipes or truncates all three together leaves a shorter (or empty) trail that
//! checks out against itself. The witness remembers how far the chain got, so verification
//! ([`compare`]) can say that events were removed from every sink. It is written at most
//! once per `audit.hsm_anchor_interval` ([`Witness::due`]), plus at start and at a clean
//! shutdown ([`Witness::write_forced`]): an HSM call per batch would put the HSM on every
//! request's path. So up to one interval of events can be cut without the witness noticing.
//!
//! Record `sigvault-audit-head:<node>`, value `0x01 ‖ u64be(seq) ‖ mac` (41 bytes; the
//! first byte is the format). Written only for heads that every sink holds, so the trail
//! of a healthy vault always reaches it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::chain::{GENESIS, Head, Problem};
use super::event::hex;
use crate::kek::{KekError, KekProvider};

/// The first byte of every witness value: the encoding's version.
const FORMAT: u8 = 1;
/// A chain MAC (HMAC-SHA256).
const MAC_LEN: usize = 32;
/// Format byte, sequence number, MAC.
const ENCODED_LEN: usize = 1 + 8 + MAC_LEN;

#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// The HSM or KMS could not read or write the record.
    #[error("HSM witness {name}: {source}")]
    Kek {
        name: String,
        #[source]
        source: KekError,
    },
    /// The record is not a witness this build can read, or a head that cannot be one.
    #[error("HSM witness {name} is malformed: {reason}")]
    Malformed { name: String, reason: String },
}

/// The name of `node`'s witness record.
pub(crate) fn record_name(node: &str) -> String {
    format!("sigvault-audit-head:{node}")
}

/// `head` as the record's value.
fn encode(head: &Head) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENCODED_LEN);
    out.push(FORMAT);
    out.extend_from_slice(&head.seq.to_be_bytes());
    out.extend_from_slice(&head.mac);
    out
}

/// The head a record's value names; the reason when it names none. Only format 1 is read:
/// a newer format refuses rather than being half-understood.
fn decode(bytes: &[u8]) -> Result<Head, String> {
    let Some((&format, rest)) = bytes.split_first() else {
        return Err("the record is empty".into());
    };
    if format != FORMAT {
        return Err(format!("format {format} (this build reads format {FORMAT})"));
    }
    if bytes.len() != ENCODED_LEN {
        return Err(format!("{} bytes, expected {ENCODED_LEN}", bytes.len()));
    }
    let (seq, mac) = rest.split_at(8);
    let seq = u64::from_be_bytes(seq.try_into().map_err(|_| "no sequence number".to_owned())?);
    if seq == 0 && mac != GENESIS {
        return Err("sequence 0 with a MAC other than the genesis".into());
    }
    Ok(Head { seq, mac: mac.to_vec() })
}

/// `node`'s witnessed head; `None` when the root of trust holds no witness for it (a vault
/// from before the witness, or one whose writer has not written it yet).
pub async fn read(provider: &dyn KekProvider, node: &str) -> Result<Option<Head>, WitnessError> {
    let name = record_name(node);
    let value = match provider.witness_read(&name).await {
        Ok(value) => value,
        Err(source) => return Err(WitnessError::Kek { name, source }),
    };
    value
        .map(|bytes| decode(&bytes))
        .transpose()
        .map_err(|reason| WitnessError::Malformed { name, reason })
}

/// Writes `head` as `node`'s witness now, whatever the interval: the call the audit writer
/// makes (through [`Witness`]) once a head is in every sink. Refuses a head whose MAC is
/// not a chain MAC, which would write a record [`read`] refuses.
pub(crate) async fn write_now(provider: &dyn KekProvider, node: &str, head: &Head) -> Result<(), WitnessError> {
    let name = record_name(node);
    if head.mac.len() != MAC_LEN {
        let reason = format!("a head MAC of {} bytes, expected {MAC_LEN}", head.mac.len());
        return Err(WitnessError::Malformed { name, reason });
    }
    provider
        .witness_write(&name, &encode(head))
        .await
        .map_err(|source| WitnessError::Kek { name, source })
}

/// Keeps one node's witness current at most once per interval. The writer asks
/// [`Witness::write_if_due`] after each committed batch, and writes unconditionally
/// ([`Witness::write_forced`]) once the start's reconciliation settled the head and at a
/// clean shutdown, so a stopped vault's witness names its last event.
pub(crate) struct Witness {
    provider: Arc<dyn KekProvider>,
    node: String,
    interval: Duration,
    /// When the last write was tried, successful or not: an HSM that does not answer is
    /// asked again only after an interval, not by every batch (each try blocks a worker).
    last_try: Option<Instant>,
    /// The head the root of trust holds, as far as this process wrote it.
    written: Option<Head>,
}

impl Witness {
    pub(crate) fn new(provider: Arc<dyn KekProvider>, node: &str, interval: Duration) -> Self {
        Self {
            provider,
            node: node.to_owned(),
            interval,
            last_try: None,
            written: None,
        }
    }

    /// Whether `head` is to be written at `now`: it is not what the witness holds, and no
    /// write was tried in the last interval.
    pub(crate) fn due(&self, head: &Head, now: Instant) -> bool {
        let changed = !self.holds(head);
        let rested = self
            .last_try
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        changed && rested
    }

    /// Whether the HSM already holds `head`, as far as this process wrote it.
    pub(crate) fn holds(&self, head: &Head) -> bool {
        self.written.as_ref() == Some(head)
    }

    /// Writes `head` when [`Witness::due`]; returns whether it wrote.
    pub(crate) async fn write_if_due(&mut self, head: &Head, now: Instant) -> Result<bool, WitnessError> {
        if !self.due(head, now) {
            return Ok(false);
        }
        self.write_forced(head, now).await.map(|()| true)
    }

    /// Writes `head` now, whatever the interval (at start and at shutdown).
    pub(crate) async fn write_forced(&mut self, head: &Head, now: Instant) -> Result<(), WitnessError> {
        self.last_try = Some(now);
        write_now(self.provider.as_ref(), &self.node, head).await?;
        self.written = Some(head.clone());
        Ok(())
    }
}

/// Checks a trail against its witness: the trail must reach the witnessed event and hold
/// the witnessed MAC there. `trail_end` is the last event that verified; `mac_at_witnessed`
/// the MAC the trail holds at the witnessed sequence number (`None` when it ends before).
/// A trail that ends early lost events from every sink — each of which agreed with the
/// others, or verification would have named that first.
pub(crate) fn compare(witnessed: &Head, trail_end: u64, mac_at_witnessed: Option<&[u8]>) -> Result<(), Problem> {
    if witnessed.seq == 0 {
        // The genesis lies on every chain.
        return Ok(());
    }
    if trail_end < witnessed.seq {
        return Err(Problem {
            seq: trail_end + 1,
            reason: format!(
                "the HSM witness names event {} (MAC {}…) but the trail ends at event {trail_end}: events were \
                 removed from every sink",
                witnessed.seq,
                short(&witnessed.mac)
            ),
        });
    }
    if mac_at_witnessed == Some(witnessed.mac.as_slice()) {
        return Ok(());
    }
    Err(Problem {
        seq: witnessed.seq,
        reason: format!(
            "the trail differs from the HSM witness at event {}: the witness holds MAC {}…, the trail {}",
            witnessed.seq,
            short(&witnessed.mac),
            mac_at_witnessed.map_or_else(|| "none".to_owned(), |mac| format!("{}…", short(mac)))
        ),
    })
}

/// The first 8 bytes of a MAC in hex: enough to tell two MACs apart in a report.
fn short(mac: &[u8]) -> String {
    hex(mac.get(..8).unwrap_or(mac))
}

#[cfg(test)]
mod tests;
