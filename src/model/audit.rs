//! The data of one audit event: the fields a request hands to the audit writer
//! ([`EventData`]) and the sequenced event the sinks store ([`AuditEvent`]).
//!
//! [`AuditEvent`]'s field order and serde attributes ARE its canonical encoding — the bytes
//! the chain MAC covers, documented and computed in [`crate::audit::event`]. Reordering,
//! renaming or adding a field changes every MAC: do not, without a new chain format.
//!
//! An event never holds a secret, token, message or signature.

use serde::{Deserialize, Serialize};

/// Longest user agent kept; longer ones are cut (on a character boundary).
pub const MAX_USER_AGENT: usize = 256;

/// The fields of an event before the writer gives it a sequence number and a MAC.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventData {
    pub time_ms: i64,
    pub request_id: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub key_version: Option<u32>,
    pub decision: Decision,
    pub policy: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub secret_hmac: Option<String>,
}

/// The access decision an event records: `allow` or `deny` (by a policy, or a failed
/// authentication), or `none` when the request failed before any policy was asked (e.g. a
/// create whose body — which names the owner and tags policies decide on — did not parse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    #[default]
    #[serde(rename = "none")]
    Undecided,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Undecided => "none",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            "none" => Some(Decision::Undecided),
            _ => None,
        }
    }
}

/// A sequenced event: what the sinks store and verification checks. Field order here IS
/// the canonical order; do not reorder.
///
/// `time` stays the text the MAC covers (fixed-width RFC 3339, see [`time_text`]) rather
/// than a number: a store hands back exactly what was chained, and an edited time is
/// caught by the MAC instead of being normalised away on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub seq: u64,
    pub node: String,
    pub time: String,
    pub request_id: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub key_version: Option<u32>,
    pub decision: Decision,
    pub policy: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub secret_hmac: Option<String>,
}

impl AuditEvent {
    pub fn new(seq: u64, node: &str, data: EventData) -> Self {
        Self {
            seq,
            node: node.to_owned(),
            time: time_text(data.time_ms),
            request_id: data.request_id,
            principal: data.principal,
            action: data.action,
            resource: data.resource,
            key_version: data.key_version,
            decision: data.decision,
            policy: data.policy,
            outcome: data.outcome,
            source_ip: data.source_ip,
            user_agent: data.user_agent.map(|ua| clean_user_agent(&ua)),
            secret_hmac: data.secret_hmac,
        }
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-27T21:18:32.123Z`. Fixed width (for years
/// 0000–9999), so times compare correctly as text — the store filters on it.
pub fn time_text(ms: i64) -> String {
    let t = crate::clock::from_unix_ms(ms);
    let base = crate::timefmt::rfc3339(t);
    let millis = ms.rem_euclid(1000);
    match base.strip_suffix('Z') {
        Some(head) => format!("{head}.{millis:03}Z"),
        None => base,
    }
}

/// Control characters removed and the length bounded: a user agent is caller input.
pub fn clean_user_agent(ua: &str) -> String {
    let mut out = String::new();
    for c in ua.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_USER_AGENT {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_lose_control_characters_and_are_bounded() {
        let long = "é".repeat(300);
        let e = AuditEvent::new(
            1,
            "n",
            EventData {
                user_agent: Some(long),
                ..Default::default()
            },
        );
        let ua = e.user_agent.unwrap();
        assert!(ua.len() <= MAX_USER_AGENT && ua.chars().all(|c| c == 'é'));
    }

    #[test]
    fn event_times_are_fixed_width_text_that_sorts_as_time() {
        assert_eq!(time_text(1_790_000_000_123), "2026-09-21T14:13:20.123Z");
        assert_eq!(time_text(1_790_000_000_000), "2026-09-21T14:13:20.000Z");
        let texts: Vec<String> = [0, 999, 1_000, 1_790_000_000_000].into_iter().map(time_text).collect();
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, sorted);
        assert!(texts.iter().all(|t| t.len() == 24), "{texts:?}");
    }
}
