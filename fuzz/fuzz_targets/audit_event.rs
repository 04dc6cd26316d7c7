//! An audit event made from what callers control (`AuditEvent::new`): every text field is
//! caller input somewhere (names, ids, user agents, outcomes), so none may forge a line,
//! hide text from a reader of the trail, or change the encoding the chain MAC covers.
//!
//! Properties: no control or bidirectional formatting character stands raw in an event, and
//! text without one is kept as it is; the time is fixed-width RFC 3339 with milliseconds
//! (checked against the `time` crate for years 0000–9999); the hand-written canonical
//! encoding is serde's; the line parses back to the same event and MAC.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sigvault::fuzzing::{audit_line_seq, audit_parse_line};
use sigvault::model::audit::{AuditEvent, Decision, EventData, MAX_USER_AGENT};

#[derive(Arbitrary, Debug)]
struct Input {
    seq: u64,
    node: String,
    time_ms: i64,
    request_id: String,
    principal: String,
    action: String,
    resource: String,
    key_version: Option<u32>,
    decision: u8,
    policy: Option<String>,
    outcome: String,
    source_ip: Option<String>,
    user_agent: Option<String>,
    secret_hmac: Option<String>,
    mac: Vec<u8>,
}

/// Control characters and the bidirectional formatting characters (U+061C, U+200E, U+200F,
/// U+202A–U+202E, U+2066–U+2069).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Years 0000 to 9999, in Unix milliseconds.
const FIXED_WIDTH_MS: std::ops::Range<i64> = -62_167_219_200_000..253_402_300_800_000;

fn reference_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).expect("in range");
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("formats")
}

fuzz_target!(|input: Input| {
    let decision = [Decision::Allow, Decision::Deny, Decision::Undecided][usize::from(input.decision % 3)];
    let given = input.principal.clone();
    let data = EventData {
        time_ms: input.time_ms,
        request_id: input.request_id,
        principal: input.principal,
        action: input.action,
        resource: input.resource,
        key_version: input.key_version,
        decision,
        policy: input.policy,
        outcome: input.outcome,
        source_ip: input.source_ip,
        user_agent: input.user_agent,
        secret_hmac: input.secret_hmac,
        api: None,
    };
    let event = AuditEvent::new(input.seq, &input.node, data);
    let texts = [
        Some(&event.request_id),
        Some(&event.principal),
        Some(&event.action),
        Some(&event.resource),
        event.policy.as_ref(),
        Some(&event.outcome),
        event.source_ip.as_ref(),
        event.user_agent.as_ref(),
        event.secret_hmac.as_ref(),
    ];
    for text in texts.into_iter().flatten() {
        assert!(!text.chars().any(hidden), "{text:?}");
    }
    if !given.chars().any(hidden) {
        assert_eq!(event.principal, given, "text without a hidden character is kept");
    }
    if let Some(ua) = &event.user_agent {
        assert!(ua.len() <= 4 * MAX_USER_AGENT, "{}", ua.len());
    }
    if FIXED_WIDTH_MS.contains(&input.time_ms) {
        assert_eq!(event.time, reference_time(input.time_ms));
    }
    assert_eq!(event.canonical(), serde_json::to_vec(&event).expect("serialises"));
    let line = event.line(&input.mac);
    assert_eq!(audit_line_seq(&line), Some(event.seq));
    let text = std::str::from_utf8(&line).expect("UTF-8");
    let (parsed, mac) = audit_parse_line(text.strip_suffix('\n').expect("newline")).expect("a written line parses");
    assert_eq!(parsed, event);
    assert_eq!(mac, input.mac);
});
