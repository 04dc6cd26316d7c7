//! The keyed hash chain: `mac_n = HMAC-SHA256(audit_key, mac_{n-1} || canonical(event_n))`
//! with `mac_0` = 32 zero bytes, per node, sequence numbers 1, 2, 3, … without gaps.
//!
//! Keyed, so an attacker who rewrites an event cannot recompute the chain without the audit
//! key (which is sealed under the KEK). Pure: no I/O; the sinks and [`super::verify`] feed
//! it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::event::AuditEvent;

/// The MAC that precedes a node's first event.
pub(crate) const GENESIS: [u8; 32] = [0u8; 32];

/// The MAC of `event` following `prev`.
pub fn link(audit_key: &[u8], prev: &[u8], event: &AuditEvent) -> [u8; 32] {
    link_encoded(audit_key, prev, &event.canonical())
}

/// [`link`] over an event already in its canonical encoding (the writer encodes once).
pub(crate) fn link_encoded(audit_key: &[u8], prev: &[u8], canonical: &[u8]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(audit_key) else {
        return [0u8; 32];
    };
    mac.update(prev);
    mac.update(canonical);
    mac.finalize().into_bytes().into()
}

/// The audit key made ready for the chain once: the HMAC state after absorbing the key (its
/// inner and outer pads), cloned for each event instead of keyed again — the writer chains
/// every event, and keying costs two of the hash's blocks. Zeroized on drop.
pub(crate) struct ChainKey(Hmac<Sha256>);

impl ChainKey {
    pub(crate) fn new(audit_key: &[u8]) -> Option<Self> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(audit_key).ok().map(Self)
    }

    /// [`link_encoded`] with this key.
    pub(crate) fn link(&self, prev: &[u8], canonical: &[u8]) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(prev);
        mac.update(canonical);
        mac.finalize().into_bytes().into()
    }
}

/// `HMAC-SHA256(audit_key, len(domain) || domain || data)`: keyed fingerprints of values
/// an auditor correlates without the trail holding them. Domain-separated from the chain.
pub fn keyed(audit_key: &[u8], domain: &[u8], data: &[u8]) -> [u8; 32] {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(audit_key) else {
        return [0u8; 32];
    };
    mac.update(&u32::try_from(domain.len()).unwrap_or(u32::MAX).to_be_bytes());
    mac.update(domain);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The last verified position of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub mac: Vec<u8>,
}

impl Head {
    pub(crate) fn genesis() -> Self {
        Self {
            seq: 0,
            mac: GENESIS.to_vec(),
        }
    }
}

/// Where a chain first fails, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub seq: u64,
    pub reason: String,
}

/// Walks one node's events in stored order, continuing from `from` (the genesis for a
/// whole trail). Every event must carry the next sequence number, name `node`, and carry
/// the MAC the chain predicts.
pub(crate) struct ChainCheck<'a> {
    key: &'a [u8],
    node: &'a str,
    head: Head,
}

impl<'a> ChainCheck<'a> {
    pub(crate) fn new(key: &'a [u8], node: &'a str, from: Head) -> Self {
        Self { key, node, head: from }
    }

    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    /// Checks the next stored event and its stored MAC.
    pub(crate) fn next(&mut self, event: &AuditEvent, stored_mac: &[u8]) -> Result<(), Problem> {
        let expected = self.head.seq + 1;
        if event.seq != expected {
            let reason = if event.seq > expected {
                format!("event {expected} is missing (found {} next)", event.seq)
            } else {
                format!("event {} is out of order or repeated (expected {expected})", event.seq)
            };
            return Err(Problem { seq: expected, reason });
        }
        if event.node != self.node {
            return Err(Problem {
                seq: expected,
                reason: format!("event names node '{}'", event.node),
            });
        }
        let mac = link(self.key, &self.head.mac, event);
        if !bool::from(mac.ct_eq(stored_mac)) {
            return Err(Problem {
                seq: expected,
                reason: "MAC mismatch: the event or an earlier one was altered, replaced or reordered".into(),
            });
        }
        self.head = Head {
            seq: expected,
            mac: mac.to_vec(),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::EventData;
    use sha2::Digest;

    const KEY: &[u8] = &[7u8; 32];

    fn events(n: u64) -> Vec<(AuditEvent, Vec<u8>)> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::new(
                    seq,
                    "n1",
                    EventData {
                        action: "Sign".into(),
                        outcome: "ok".into(),
                        time_ms: seq as i64,
                        ..Default::default()
                    },
                );
                let mac = link(KEY, &prev, &e).to_vec();
                prev = mac.clone();
                (e, mac)
            })
            .collect()
    }

    fn check(list: &[(AuditEvent, Vec<u8>)]) -> Result<Head, Problem> {
        let mut c = ChainCheck::new(KEY, "n1", Head::genesis());
        for (e, m) in list {
            c.next(e, m)?;
        }
        Ok(c.head().clone())
    }

    #[test]
    fn an_intact_chain_verifies_to_its_head() {
        let list = events(5);
        assert_eq!(
            check(&list).unwrap(),
            Head {
                seq: 5,
                mac: list[4].1.clone()
            }
        );
    }

    #[test]
    fn an_edited_field_is_caught_at_its_sequence() {
        let mut list = events(5);
        list[2].0.principal = "mallory".into();
        assert_eq!(check(&list).unwrap_err().seq, 3);
    }

    #[test]
    fn a_deleted_event_is_caught_as_missing() {
        let mut list = events(5);
        list.remove(1);
        let p = check(&list).unwrap_err();
        assert_eq!(p.seq, 2);
        assert!(p.reason.contains("missing"), "{}", p.reason);
    }

    #[test]
    fn swapped_events_are_caught_at_the_first_of_them() {
        let mut list = events(5);
        list.swap(1, 3);
        assert_eq!(check(&list).unwrap_err().seq, 2);
    }

    #[test]
    fn an_unkeyed_recomputation_does_not_verify() {
        // The attacker edits event 3 and rebuilds every later MAC with plain SHA-256.
        let mut list = events(5);
        list[2].0.outcome = "KEY_NOT_FOUND".into();
        let mut prev = list[1].1.clone();
        for (e, m) in list.iter_mut().skip(2) {
            let mut h = sha2::Sha256::new();
            h.update(&prev);
            h.update(e.canonical());
            *m = h.finalize().to_vec();
            prev = m.clone();
        }
        assert_eq!(check(&list).unwrap_err().seq, 3);
    }

    #[test]
    fn a_prepared_chain_key_links_as_the_audit_key_does() {
        let key = ChainKey::new(KEY).unwrap();
        let (event, _) = &events(1)[0];
        let canonical = event.canonical();
        assert_eq!(key.link(&GENESIS, &canonical), link(KEY, &GENESIS, event));
        assert_eq!(
            key.link(&[1u8; 32], &canonical),
            link_encoded(KEY, &[1u8; 32], &canonical)
        );
        assert_ne!(key.link(&[1u8; 32], &canonical), key.link(&GENESIS, &canonical));
    }

    #[test]
    fn a_different_key_does_not_verify() {
        let list = events(2);
        let mut c = ChainCheck::new(&[8u8; 32], "n1", Head::genesis());
        assert_eq!(c.next(&list[0].0, &list[0].1).unwrap_err().seq, 1);
    }
}
