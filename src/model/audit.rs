//! The data of one audit event: the fields a request hands to the audit writer
//! ([`EventData`]) and the sequenced event the sinks store ([`AuditEvent`]).
//!
//! [`AuditEvent`]'s field order and serde attributes ARE its canonical encoding — the bytes
//! the chain MAC covers, documented and computed in [`super::audit_line`] (written by hand
//! there, and held equal to serde's output by a test, which also names every field).
//! Reordering, renaming or adding a field changes every MAC: do not, without a new chain
//! format.
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
    /// The compatible API the request came through (`vault-transit`, `aws-kms`); absent for
    /// the native API.
    pub api: Option<String>,
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
    /// The compatible API the request came through; absent (and then not encoded at all,
    /// so events from before it existed keep their bytes and MACs) for the native API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
}

impl AuditEvent {
    pub fn new(seq: u64, node: &str, data: EventData) -> Self {
        Self {
            seq,
            node: node.to_owned(),
            time: time_text(data.time_ms),
            request_id: visible(data.request_id),
            principal: visible(data.principal),
            action: visible(data.action),
            resource: visible(data.resource),
            key_version: data.key_version,
            decision: data.decision,
            policy: data.policy.map(visible),
            outcome: visible(data.outcome),
            source_ip: data.source_ip.map(visible),
            user_agent: data.user_agent.map(|ua| visible(clean_user_agent_owned(ua))),
            secret_hmac: data.secret_hmac.map(visible),
            api: data.api.map(visible),
        }
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-27T21:18:32.123Z`. Fixed width (for years
/// 0000–9999), so times compare correctly as text — the store filters on it.
pub fn time_text(ms: i64) -> String {
    if let Some(text) = fast_time_text(ms) {
        return text;
    }
    let t = crate::clock::from_unix_ms(ms);
    let base = crate::timefmt::rfc3339(t);
    let millis = ms.rem_euclid(1000);
    match base.strip_suffix('Z') {
        Some(head) => format!("{head}.{millis:03}Z"),
        None => base,
    }
}

/// [`time_text`] for years 1970–9999 without a calendar library: every audit event formats
/// its time, so this is on the request path. (Days to a civil date as in H. Hinnant's
/// `civil_from_days`.)
fn fast_time_text(ms: i64) -> Option<String> {
    if !(0..253_402_300_800_000).contains(&ms) {
        return None;
    }
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (hour, minute, second) = (day_secs / 3600, day_secs / 60 % 60, day_secs % 60);
    // Digits by hand: `write!` with widths cost about ten times as much, on every event.
    let mut out = String::with_capacity(24);
    let parts = [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (hour, 2, ':'),
        (minute, 2, ':'),
        (second, 2, '.'),
        (millis, 3, 'Z'),
    ];
    for (value, width, then) in parts {
        push_digits(&mut out, value, width);
        out.push(then);
    }
    Some(out)
}

/// Appends the last `width` decimal digits of `n` (0 ≤ n), zero-padded.
fn push_digits(out: &mut String, n: i64, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10_i64.pow(place) % 10;
        out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
    }
}

/// An IP address as text for an audit event: IPv4 by hand (the common case, on every
/// event), IPv6 through its `Display`.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    out.push(char::from(b'0' + octet / 10 % 10));
                }
                out.push(char::from(b'0' + octet % 10));
            }
            out
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

/// Whether `c` must not stand raw in an event: a control character (a newline or an ESC
/// sequence would forge lines or colour a terminal that shows the trail) or a bidirectional
/// formatting character (U+202E and kin reorder what a reader sees).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control and bidirectional formatting character written as a visible
/// escape (`\u{1b}`): every text field of an event passes through here, whatever a caller
/// managed to put in it. Returns the string itself when nothing needs escaping (the common
/// case: printable ASCII is checked byte by byte).
pub fn visible(text: String) -> String {
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) || !text.chars().any(hidden) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// [`clean_user_agent`] that keeps the caller's string when it needs no change (the common
/// case), instead of copying it.
pub fn clean_user_agent_owned(ua: String) -> String {
    if ua.len() <= MAX_USER_AGENT && !ua.chars().any(char::is_control) {
        ua
    } else {
        clean_user_agent(&ua)
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
mod fast_time_tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_never_stand_raw_in_an_event() {
        assert_eq!(visible("key:payments/1".into()), "key:payments/1");
        assert_eq!(visible("päyments 🔑".into()), "päyments 🔑");
        assert_eq!(
            visible("a\nb\u{1b}[31m\u{0}\u{202e}c\u{2066}\u{7f}\u{85}".into()),
            "a\\u{a}b\\u{1b}[31m\\u{0}\\u{202e}c\\u{2066}\\u{7f}\\u{85}"
        );
        let event = AuditEvent::new(
            1,
            "n",
            EventData {
                request_id: "r\r\n".into(),
                principal: "p\u{202e}".into(),
                action: "A\t".into(),
                resource: "credential:x\ny".into(),
                policy: Some("pol\u{1b}".into()),
                outcome: "o\u{0}".into(),
                source_ip: Some("1.2.3.4\n".into()),
                user_agent: Some("ua\u{202e}".into()),
                secret_hmac: Some("h\u{200f}".into()),
                ..Default::default()
            },
        );
        let texts = [
            &event.request_id,
            &event.principal,
            &event.action,
            &event.resource,
            &event.outcome,
        ]
        .into_iter()
        .chain(
            [&event.policy, &event.source_ip, &event.user_agent, &event.secret_hmac]
                .into_iter()
                .flatten(),
        );
        for text in texts {
            assert!(!text.chars().any(hidden), "{text:?}");
        }
        assert_eq!(event.resource, "credential:x\\u{a}y");
    }

    /// The calendar library's formatting, which the fast path must match.
    fn slow(ms: i64) -> String {
        let t = crate::clock::from_unix_ms(ms);
        let base = crate::timefmt::rfc3339(t);
        format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
    }

    #[test]
    fn ip_text_matches_display() {
        for text in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.255",
            "127.0.0.1",
            "255.255.255.255",
            "99.100.9.10",
            "::1",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
        for n in (0..=u32::MAX).step_by(65_521) {
            let ip = std::net::IpAddr::V4(std::net::Ipv4Addr::from(n));
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn the_fast_time_text_matches_the_calendar_library_across_the_range() {
        let mut ms: i64 = 0;
        // Steps of a prime number of milliseconds (~3.4 days) cross every month, leap day
        // and century rule between 1970 and 9999.
        while ms < 253_402_300_800_000 {
            assert_eq!(fast_time_text(ms).as_deref(), Some(slow(ms).as_str()), "{ms}");
            ms += 294_967_291;
        }
        for ms in [0, 951_782_400_000, 4_107_542_399_999, 253_402_300_799_999] {
            assert_eq!(fast_time_text(ms).unwrap(), slow(ms), "{ms}");
        }
        assert_eq!(fast_time_text(-1), None);
        assert_eq!(fast_time_text(253_402_300_800_000), None);
        assert_eq!(time_text(-1), slow(-1), "outside the range the library formats it");
    }

    #[test]
    fn a_clean_user_agent_is_kept_and_a_dirty_one_cleaned() {
        assert_eq!(clean_user_agent_owned("curl/8.5".into()), "curl/8.5");
        assert_eq!(clean_user_agent_owned("a\r\nb".into()), "ab");
        assert_eq!(clean_user_agent_owned("x".repeat(300)).len(), MAX_USER_AGENT);
    }
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
