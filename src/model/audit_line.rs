//! The canonical encoding of an audit event and its line in the JSON-lines event file —
//! the same line the store keeps, so the event file and the store's batches hold the same
//! bytes. (The event's data, [`AuditEvent`], is in [`super::audit`].) Pure byte formats:
//! the chain MAC over them is [`crate::audit::chain`]'s.
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
//! (one line), then `,"api":"vault-transit"` (or `"aws-kms"`) before the closing brace for an
//! event of a compatible API only — a native event has no `api` member at all. The file sink writes `{"event":<canonical>,"mac":"<hex>"}\n`. Verification
//! never trusts stored bytes: it re-encodes the parsed fields, so an edit of any field
//! breaks the MAC, whatever the sink.
//!
//! An event never holds a secret, token, message or signature. `secret_hmac` carries the
//! HMAC under the audit key of a secret an auditor may need to correlate (e.g. imported
//! key material), never the secret.

use serde::Deserialize;

use super::audit::AuditEvent;
#[cfg(test)]
use super::audit::{Decision, EventData};

impl AuditEvent {
    /// The bytes the chain MAC covers (see the module docs).
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(320);
        self.write_canonical(&mut out);
        out
    }

    /// Appends the canonical encoding to `out` (the writer reuses one buffer).
    ///
    /// Written by hand, byte for byte what `serde_json::to_writer` makes of the struct (a
    /// test holds the two equal): this runs for every event on the request path, where
    /// serde's serializer cost about three times as much.
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"seq\":");
        push_u64(out, self.seq);
        push_member(out, b",\"node\":", Some(&self.node));
        push_member(out, b",\"time\":", Some(&self.time));
        push_member(out, b",\"request_id\":", Some(&self.request_id));
        push_member(out, b",\"principal\":", Some(&self.principal));
        push_member(out, b",\"action\":", Some(&self.action));
        push_member(out, b",\"resource\":", Some(&self.resource));
        out.extend_from_slice(b",\"key_version\":");
        match self.key_version {
            Some(v) => push_u64(out, u64::from(v)),
            None => out.extend_from_slice(b"null"),
        }
        push_member(out, b",\"decision\":", Some(self.decision.as_str()));
        push_member(out, b",\"policy\":", self.policy.as_deref());
        push_member(out, b",\"outcome\":", Some(&self.outcome));
        push_member(out, b",\"source_ip\":", self.source_ip.as_deref());
        push_member(out, b",\"user_agent\":", self.user_agent.as_deref());
        push_member(out, b",\"secret_hmac\":", self.secret_hmac.as_deref());
        // Only when present: events of the native API (and every event from before the
        // member existed) end at `secret_hmac`.
        if let Some(api) = &self.api {
            push_member(out, b",\"api\":", Some(api));
        }
        out.push(b'}');
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

/// The bytes a line holds when its event's string member `name` is `value`, e.g.
/// `,"principal":"alice"` (every string member but the first, `node`, follows a comma): a
/// row of lines without them holds no such event.
pub(crate) fn string_member(name: &str, value: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + value.len() + 6);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    push_json_string(&mut out, value);
    out
}

/// The sequence number at the start of a line, read without parsing it: `None` unless the
/// line begins exactly as [`push_line`] writes it (then the parser reads the same digits).
pub(crate) fn line_seq(line: &[u8]) -> Option<u64> {
    let rest = line.strip_prefix(b"{\"event\":{\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b',') || digits == 0 || (digits > 1 && rest.first() == Some(&b'0')) {
        return None;
    }
    std::str::from_utf8(rest.get(..digits)?).ok()?.parse().ok()
}

/// `name` (its quotes, colon and leading comma included) and a JSON string, or `null`.
fn push_member(out: &mut Vec<u8>, name: &[u8], value: Option<&str>) {
    out.extend_from_slice(name);
    match value {
        Some(text) => push_json_string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string escaped as `serde_json` escapes it: `"`, `\` and the control characters
/// below U+0020 (`\b \t \n \f \r` by name, the rest as `\u00xx`); everything else, UTF-8
/// included, as it is.
fn push_json_string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain..i).unwrap_or_default());
        plain = i + 1;
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(b & 0x0f)).copied().unwrap_or(b'0'));
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(bytes.get(plain..).unwrap_or_default());
    out.push(b'"');
}

/// A decimal number.
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
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
                api: None,
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
    fn the_hand_written_encoding_is_serde_jsons() {
        // Every byte value below 0x80 in a string field, multi-byte UTF-8, empty strings,
        // absent and present options, extreme numbers.
        let ascii: String = (0u8..0x80).map(char::from).collect();
        let texts = [
            String::new(),
            ascii.clone(),
            "é\u{202e}\u{2028}\u{7f}\u{80}\u{10ffff}😀".to_owned(),
            "\"\\\"\\".to_owned(),
            "plain".to_owned(),
        ];
        let mut n = 0u64;
        for text in &texts {
            for (seq, key_version) in [
                (0, None),
                (u64::MAX, Some(u32::MAX)),
                (10, Some(0)),
                (1_234_567, Some(9)),
            ] {
                n += 1;
                let some = |t: &str| n.is_multiple_of(2).then(|| t.to_owned());
                let event = AuditEvent {
                    seq,
                    node: text.clone(),
                    time: text.clone(),
                    request_id: text.clone(),
                    principal: text.clone(),
                    action: text.clone(),
                    resource: text.clone(),
                    key_version,
                    decision: [Decision::Allow, Decision::Deny, Decision::Undecided][(n % 3) as usize],
                    policy: some(text),
                    outcome: text.clone(),
                    source_ip: some(text),
                    user_agent: (!n.is_multiple_of(2)).then(|| text.clone()),
                    secret_hmac: some(text),
                    api: n.is_multiple_of(3).then(|| text.clone()),
                };
                let mut ours = Vec::new();
                event.write_canonical(&mut ours);
                assert_eq!(
                    String::from_utf8(ours).unwrap(),
                    serde_json::to_string(&event).unwrap(),
                    "{event:?}"
                );
            }
        }
        let mut digits = Vec::new();
        for n in [0, 9, 10, 99, 100, 1_000_000, u64::MAX] {
            digits.clear();
            push_u64(&mut digits, n);
            assert_eq!(digits, n.to_string().into_bytes());
        }
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
    fn a_lines_sequence_number_and_members_are_found_in_its_bytes() {
        let line = sample().line(&[1, 2]);
        assert_eq!(line_seq(&line), Some(7));
        assert_eq!(line_seq(b"{\"event\":{\"seq\":18446744073709551615,"), Some(u64::MAX));
        for odd in [
            &b"{\"event\":{\"seq\":18446744073709551616,"[..],
            b"{\"event\":{\"seq\":07,",
            b"{\"event\":{\"seq\":,",
            b"{\"event\":{\"seq\":7}",
            b"{\"event\": {\"seq\":7,",
            b"{\"mac\":\"00\",\"event\":{\"seq\":7,",
        ] {
            assert_eq!(line_seq(odd), None, "{}", String::from_utf8_lossy(odd));
        }
        let text = String::from_utf8(line).unwrap();
        assert!(text.contains(std::str::from_utf8(&string_member("principal", "root")).unwrap()));
        assert!(text.contains(std::str::from_utf8(&string_member("resource", "key:payments")).unwrap()));
        assert!(!text.contains(std::str::from_utf8(&string_member("principal", "roo")).unwrap()));
        assert_eq!(string_member("action", "a\"b\n"), b",\"action\":\"a\\\"b\\n\"".to_vec());
    }

    #[test]
    fn hex_round_trips_and_refuses_garbage() {
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("éé"), None);
    }
}
