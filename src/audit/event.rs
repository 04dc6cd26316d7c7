//! One audit event, its canonical encoding, and its line in the JSON-lines sink.
//!
//! The canonical encoding — the bytes the chain MAC covers — is the event as a JSON object
//! with exactly these members in this order, no whitespace, strings escaped as `serde_json`
//! does (UTF-8 kept, only `"`, `\` and control characters escaped), absent values as `null`:
//!
//! ```text
//! {"seq":7,"node":"n1","time":"2026-11-27T21:18:32.123Z","request_id":"…","principal":"root",
//!  "action":"Sign","resource":"key:payments","key_version":2,"decision":"allow","policy":null,
//!  "outcome":"ok","source_ip":"127.0.0.1","user_agent":"curl/8.5","secret_hmac":null}
//! ```
//! (one line). The file sink writes `{"event":<canonical>,"mac":"<hex>"}\n`. Verification
//! never trusts stored bytes: it re-encodes the parsed fields, so an edit of any field
//! breaks the MAC, whatever the sink.
//!
//! An event never holds a secret, token, message or signature. `secret_hmac` carries the
//! HMAC under the audit key of a secret an auditor may need to correlate (e.g. imported
//! key material), never the secret.

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

    /// The bytes the chain MAC covers (see the module docs).
    pub fn canonical(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers and options cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The JSON-lines record: `{"event":<canonical>,"mac":"<hex>"}` plus a newline.
    pub fn line(&self, mac: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        push_line(&mut out, &self.canonical(), mac);
        out
    }

    /// Parses one JSON-lines record into the event and its MAC.
    pub fn parse_line(line: &str) -> Result<(AuditEvent, Vec<u8>), String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Line {
            event: AuditEvent,
            mac: String,
        }
        let parsed: Line = serde_json::from_str(line).map_err(|e| format!("not an audit record: {e}"))?;
        let mac = unhex(&parsed.mac).ok_or_else(|| "the mac is not hex".to_owned())?;
        Ok((parsed.event, mac))
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

/// Appends the JSON-lines record of an already encoded event to `out`.
pub fn push_line(out: &mut Vec<u8>, canonical: &[u8], mac: &[u8]) {
    out.extend_from_slice(b"{\"event\":");
    out.extend_from_slice(canonical);
    out.extend_from_slice(b",\"mac\":\"");
    out.extend_from_slice(hex(mac).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Lower-case hex, in constant time: some of what the trail hex-encodes is a keyed hash of a
/// secret.
pub fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// Hex of either case (what [`hex`] wrote, or an operator's upper-case copy); `None` for
/// anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    base16ct::mixed::decode_vec(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEvent {
        AuditEvent::new(
            7,
            "n1",
            EventData {
                time_ms: 1_790_000_000_123,
                request_id: "r-1".into(),
                principal: "root".into(),
                action: "Sign".into(),
                resource: "key:payments".into(),
                key_version: Some(2),
                decision: Decision::Allow,
                policy: None,
                outcome: "ok".into(),
                source_ip: Some("127.0.0.1".into()),
                user_agent: Some("curl/8.5\r\nX-Injected: 1".into()),
                secret_hmac: None,
            },
        )
    }

    #[test]
    fn the_canonical_form_is_fixed_order_compact_json() {
        let text = String::from_utf8(sample().canonical()).unwrap();
        assert_eq!(
            text,
            r#"{"seq":7,"node":"n1","time":"2026-09-21T14:13:20.123Z","request_id":"r-1","principal":"root","action":"Sign","resource":"key:payments","key_version":2,"decision":"allow","policy":null,"outcome":"ok","source_ip":"127.0.0.1","user_agent":"curl/8.5X-Injected: 1","secret_hmac":null}"#
        );
    }

    #[test]
    fn a_line_parses_back_to_the_same_event_and_mac() {
        let event = sample();
        let line = String::from_utf8(event.line(&[0xab, 0x01])).unwrap();
        assert!(line.ends_with("\"mac\":\"ab01\"}\n"));
        let (parsed, mac) = AuditEvent::parse_line(line.trim_end()).unwrap();
        assert_eq!(parsed, event);
        assert_eq!(mac, vec![0xab, 0x01]);
        assert!(AuditEvent::parse_line("{\"event\":1}").is_err());
    }

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
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("éé"), None);
    }
}
