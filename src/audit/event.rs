//! The canonical encoding of an audit event and its line in the JSON-lines sink. (The
//! event's data, [`AuditEvent`], lives in [`crate::model::audit`]: the store keeps it too.)
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

use serde::Deserialize;

pub use crate::model::audit::{AuditEvent, Decision, EventData, MAX_USER_AGENT, clean_user_agent, time_text};

impl AuditEvent {
    /// The bytes the chain MAC covers (see the module docs).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical encoding to `out` (the writer reuses one buffer).
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        // Serialising a struct of strings, integers and options into memory cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
    }

    /// The JSON-lines record: `{"event":<canonical>,"mac":"<hex>"}` plus a newline.
    pub fn line(&self, mac: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        push_line(&mut out, &self.canonical(), mac);
        out
    }

    /// Parses one JSON-lines record into the event and its MAC.
    pub(crate) fn parse_line(line: &str) -> Result<(AuditEvent, Vec<u8>), String> {
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

/// Appends the JSON-lines record of an already encoded event to `out`.
pub(crate) fn push_line(out: &mut Vec<u8>, canonical: &[u8], mac: &[u8]) {
    out.extend_from_slice(b"{\"event\":");
    out.extend_from_slice(canonical);
    out.extend_from_slice(b",\"mac\":\"");
    let mut text = [0u8; 64];
    match base16ct::lower::encode(mac, &mut text) {
        Ok(hex) => out.extend_from_slice(hex),
        // Longer than a chain MAC: not on the writer's path.
        Err(_) => out.extend_from_slice(hex(mac).as_bytes()),
    }
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
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("éé"), None);
    }
}
