//! The HTTP side of caller fingerprints, shared by SigV4 verification and API-key
//! verification: the caller a verifying service reports (`source_ip`, `user_agent`, checked
//! and cleaned here), the `on_new_fingerprint` rule a credential or key is given, the
//! fingerprint list an activity read answers, and the `…new_fingerprint` audit event, written
//! durably before the verification that raised it is answered.
//!
//! Reported fingerprints are caller input: nothing here trusts them beyond their shape, and
//! they reach the trail and the store only cleaned.

use std::net::IpAddr;

use serde::Serialize;

use super::AppState;
use super::context::request_id;
use crate::audit::event::{Decision, EventData, clean_user_agent};
use crate::clock::from_unix_ms;
use crate::error::{ApiError, ErrorCode};
use crate::fingerprint::{Fingerprint, NewFingerprint};
use crate::model::OnNewFingerprint;
use crate::store::FingerprintRecord;
use crate::timefmt::rfc3339;

/// Longest `user_agent` a verify request may report (stored cut to the trail's bound).
const MAX_USER_AGENT_INPUT: usize = 4096;

/// The caller a verifying service reports: `source_ip` in its canonical form (`""` when not
/// given), `user_agent` without control characters and cut to the trail's bound (`""` when
/// not given). 400 for an address that is not one, or a user agent over 4096 bytes.
pub(super) fn reported_caller(source_ip: Option<&str>, user_agent: Option<&str>) -> Result<Fingerprint, ApiError> {
    if user_agent.is_some_and(|ua| ua.len() > MAX_USER_AGENT_INPUT) {
        return Err(ApiError::invalid("user_agent is too long"));
    }
    let source_ip = match source_ip {
        Some(ip) => ip
            .parse::<IpAddr>()
            .map_err(|_| ApiError::invalid("source_ip must be an IP address"))?
            .to_string(),
        None => String::new(),
    };
    Ok(Fingerprint {
        source_ip,
        user_agent: user_agent.map(clean_user_agent).unwrap_or_default(),
    })
}

/// An `on_new_fingerprint` value of a request body.
pub(super) fn rule(text: Option<&str>) -> Result<Option<OnNewFingerprint>, ApiError> {
    text.map(|t| {
        OnNewFingerprint::parse(t)
            .ok_or_else(|| ApiError::invalid("on_new_fingerprint must be record, alert or deactivate"))
    })
    .transpose()
}

/// One fingerprint of an activity answer.
#[derive(Serialize)]
pub(super) struct FingerprintJson {
    source_ip: String,
    user_agent: String,
    first_seen: String,
    last_seen: String,
    count: u64,
}

pub(super) fn fingerprints_json(fingerprints: Vec<FingerprintRecord>) -> Vec<FingerprintJson> {
    fingerprints
        .into_iter()
        .map(|f| FingerprintJson {
            source_ip: f.source_ip,
            user_agent: f.user_agent,
            first_seen: rfc3339(from_unix_ms(f.first_seen_ms)),
            last_seen: rfc3339(from_unix_ms(f.last_seen_ms)),
            count: f.count,
        })
        .collect()
}

/// The new-fingerprint event (`action`, e.g. `credential.new_fingerprint`, on `resource`),
/// made durable before the verification is answered: principal = the reporting service,
/// `source_ip` / `user_agent` = the fingerprint's, outcome `learned` / `recorded` /
/// `alerted` / `deactivated`, the verification's decision and policy.
pub(super) async fn record_new_fingerprint(
    state: &AppState,
    (decision, policy): (Decision, Option<String>),
    reporter: &str,
    (action, resource): (&'static str, String),
    new: &NewFingerprint,
    api: Option<&'static str>,
) -> Result<(), ApiError> {
    let event = EventData {
        time_ms: state.clock.now_ms(),
        request_id: request_id(),
        principal: reporter.to_owned(),
        action: action.into(),
        resource,
        key_version: None,
        decision,
        policy,
        outcome: new.outcome().into(),
        source_ip: Some(new.fingerprint.source_ip.clone()).filter(|ip| !ip.is_empty()),
        user_agent: Some(new.fingerprint.user_agent.clone()).filter(|ua| !ua.is_empty()),
        secret_hmac: None,
        api: api.map(str::to_owned),
    };
    state
        .audit
        .record(event)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_ip_is_kept_in_its_canonical_form_so_one_caller_is_one_fingerprint() {
        let who = reported_caller(Some("2001:DB8:0:0::1"), None).unwrap();
        assert_eq!(who.source_ip, "2001:db8::1");
        assert_eq!(who.user_agent, "", "not given");
        assert_eq!(reported_caller(None, None).unwrap().source_ip, "", "not given");
    }

    #[test]
    fn a_source_ip_that_is_not_an_address_is_refused() {
        for bad in ["example.com", "", "10.0.0.1:80", "10.0.0.256"] {
            let refused = reported_caller(Some(bad), None).unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidArgument);
            assert_eq!(refused.message, "source_ip must be an IP address", "{bad}");
        }
    }

    #[test]
    fn a_user_agent_is_cleaned_and_cut_and_one_over_4096_bytes_is_refused() {
        let who = reported_caller(None, Some("sdk/1.0\u{7}\n")).unwrap();
        assert_eq!(who.user_agent, "sdk/1.0");
        let long = "a".repeat(MAX_USER_AGENT_INPUT);
        assert_eq!(reported_caller(None, Some(&long)).unwrap().user_agent.len(), 256);
        let refused = reported_caller(None, Some(&format!("{long}a"))).unwrap_err();
        assert_eq!(
            (refused.code, refused.message.as_str()),
            (ErrorCode::InvalidArgument, "user_agent is too long")
        );
    }
}
