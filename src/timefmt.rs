//! Wire formats for time: RFC 3339 timestamps and the duration strings of docs/API.md
//! (`"90d"`, `"12h"`, `"30m"`, `"45s"`).

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Formats a time as RFC 3339 UTC with second precision, e.g. `2026-11-27T21:18:32Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// Parses a duration string: a positive integer followed by `d`, `h`, `m` or `s`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    let bad = || DurationError(text.chars().take(32).collect());
    // The unit is one ASCII letter; anything else (including a multi-byte last character)
    // is refused before any slicing.
    let (digits, seconds_per_unit) = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)]
        .into_iter()
        .find_map(|(unit, seconds)| text.strip_suffix(unit).map(|digits| (digits, seconds)))
        .ok_or_else(bad)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return Err(bad());
    }
    let amount: i64 = digits.parse().map_err(|_| bad())?;
    if amount <= 0 || amount > 100_000_000 {
        return Err(bad());
    }
    Ok(Duration::seconds(amount.saturating_mul(seconds_per_unit)))
}

/// Formats a duration in the largest unit that divides it exactly.
pub(crate) fn format_duration(d: Duration) -> String {
    let s = d.whole_seconds();
    if s != 0 && s % 86_400 == 0 {
        format!("{}d", s / 86_400)
    } else if s != 0 && s % 3_600 == 0 {
        format!("{}h", s / 3_600)
    } else if s != 0 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a duration: use a positive whole number followed by d, h, m or s (e.g. \"90d\")")]
pub(crate) struct DurationError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_format_back() {
        for (text, secs) in [("90d", 90 * 86_400), ("12h", 43_200), ("30m", 1_800), ("45s", 45)] {
            let d = parse_duration(text).unwrap();
            assert_eq!(d.whole_seconds(), secs);
            assert_eq!(format_duration(d), text);
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for text in [
            "",
            "d",
            "0d",
            "-1d",
            "+1d",
            "1w",
            "1.5h",
            "h1",
            "99999999999d",
            "1é",
            "é",
            "1dé",
            "١d",
            "1 d",
        ] {
            assert!(parse_duration(text).is_err(), "{text} should be rejected");
        }
    }

    #[test]
    fn no_string_of_up_to_three_characters_makes_parsing_panic() {
        let alphabet = ['1', '0', 'd', 'h', 'm', 's', 'é', '€', '😀', ' ', '-', '\u{0}'];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let _ = parse_duration(&format!("{a}{b}{c}"));
                }
            }
        }
    }

    #[test]
    fn rfc3339_is_utc_with_whole_seconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap() + Duration::milliseconds(250);
        assert_eq!(rfc3339(t), "2015-08-30T12:36:00Z");
    }
}
