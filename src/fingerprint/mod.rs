//! Caller fingerprints — the source address and user agent a verifying service reports for
//! whoever presented a secret — of the secrets whose use is watched: SigV4 credentials and
//! bearer API keys. This module owns one node's memory of them: which fingerprints each
//! secret is known to have been used from, the uses counted and the latest use since the last
//! flush, and the block a `deactivate` rule puts on a secret here ([`FingerprintTracker`],
//! in `tracker`); and what a notice means ([`report`]).
//!
//! It never reads or writes the store (the owning service loads a secret's stored
//! fingerprints before its first notice, and writes what [`FingerprintTracker::take`] hands
//! over), never chooses a refusal code and never audits: the service maps [`Blocked`] to its
//! own code, and the API records the [`NewFingerprint`] it is handed.
//!
//! Each secret's known fingerprints are loaded the first time it is seen on this node, so
//! "new" means new to the secret, not to the process. Noticing is atomic per secret: two
//! concurrent uses from one new fingerprint raise one report, and once a new fingerprint has
//! blocked a secret every use of it on this node is refused, before the store has recorded
//! the change. A crash loses at most one interval of counts and last-use times; whether a
//! fingerprint is new is decided again after a restart from what was flushed.

use crate::model::OnNewFingerprint;

mod tracker;

pub(crate) use tracker::{FingerprintTracker, LastUse, Pending};

/// A caller as the verifying service saw it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The caller's address (`""` when the service did not say).
    pub source_ip: String,
    /// The caller's user agent (`""` when absent).
    pub user_agent: String,
}

/// A caller of the tests.
#[cfg(test)]
pub(crate) fn who(source_ip: &str, user_agent: &str) -> Fingerprint {
    Fingerprint {
        source_ip: source_ip.into(),
        user_agent: user_agent.into(),
    }
}

/// What noticing a use found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// This fingerprint has used the secret before.
    Known,
    /// The secret's first fingerprint ever: learned, not alarming.
    First,
    /// A fingerprint the secret has not been used from before.
    New,
    /// The secret was stopped by a new fingerprint (rule `deactivate`) on this node and has
    /// not been turned back on since: refuse, whatever the fingerprint.
    Blocked,
}

/// A fingerprint the secret had not been used from, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFingerprint {
    /// The secret's id: an access key id or an API key id.
    pub id: String,
    pub principal: String,
    pub fingerprint: Fingerprint,
    /// `record`, `alert` or `deactivate` (the rule applied).
    pub rule: OnNewFingerprint,
    /// The secret's first fingerprint ever: learned without alert or deactivation.
    pub first: bool,
}

impl NewFingerprint {
    /// The outcome its audit event records.
    pub fn outcome(&self) -> &'static str {
        match (self.first, self.rule) {
            (true, _) => "learned",
            (false, OnNewFingerprint::Record) => "recorded",
            (false, OnNewFingerprint::Alert) => "alerted",
            (false, OnNewFingerprint::Deactivate) => "deactivated",
        }
    }
}

/// A use of a secret that a new fingerprint stopped on this node: refused, whatever its own
/// fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Blocked;

/// What noticing the caller means for the verdict: a blocked secret refuses every caller; a
/// fingerprint new to the secret, or its first ever, is reported; a known one is not.
pub(crate) fn report(
    seen: Seen,
    id: &str,
    principal: &str,
    who: Fingerprint,
    rule: OnNewFingerprint,
) -> Result<Option<NewFingerprint>, Blocked> {
    match seen {
        Seen::Blocked => Err(Blocked),
        Seen::Known => Ok(None),
        Seen::First | Seen::New => Ok(Some(NewFingerprint {
            id: id.to_owned(),
            principal: principal.to_owned(),
            fingerprint: who,
            rule,
            first: seen == Seen::First,
        })),
    }
}

/// The warning an alerting pipeline picks up when a secret is used from a new fingerprint
/// under rule `alert` or `deactivate` (`kind` names the secret's kind).
pub(crate) fn warn_when_alerting(kind: &'static str, id: &str, principal: &str, rule: OnNewFingerprint) {
    if rule != OnNewFingerprint::Record {
        tracing::warn!(
            kind,
            id = %id,
            principal = %principal,
            rule = rule.as_str(),
            "used from a new caller fingerprint"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(seen: Seen, rule: OnNewFingerprint) -> Result<Option<NewFingerprint>, Blocked> {
        report(seen, "SVAKEXAMPLE", "acme-ci", who("10.0.0.1", "sdk"), rule)
    }

    #[test]
    fn a_blocked_secret_is_refused_without_a_report() {
        assert_eq!(reported(Seen::Blocked, OnNewFingerprint::Deactivate), Err(Blocked));
    }

    #[test]
    fn a_known_fingerprint_is_not_reported() {
        assert_eq!(reported(Seen::Known, OnNewFingerprint::Alert), Ok(None));
    }

    #[test]
    fn a_first_and_a_new_fingerprint_are_reported_with_the_rule_and_whether_first() {
        let expected = |first| NewFingerprint {
            id: "SVAKEXAMPLE".into(),
            principal: "acme-ci".into(),
            fingerprint: who("10.0.0.1", "sdk"),
            rule: OnNewFingerprint::Alert,
            first,
        };
        assert_eq!(reported(Seen::First, OnNewFingerprint::Alert), Ok(Some(expected(true))));
        assert_eq!(reported(Seen::New, OnNewFingerprint::Alert), Ok(Some(expected(false))));
    }

    #[test]
    fn the_event_outcome_is_learned_for_a_first_fingerprint_and_names_the_rule_after_it() {
        let outcome = |seen, rule| reported(seen, rule).unwrap().unwrap().outcome();
        for rule in OnNewFingerprint::ALL {
            assert_eq!(outcome(Seen::First, *rule), "learned");
        }
        assert_eq!(outcome(Seen::New, OnNewFingerprint::Record), "recorded");
        assert_eq!(outcome(Seen::New, OnNewFingerprint::Alert), "alerted");
        assert_eq!(outcome(Seen::New, OnNewFingerprint::Deactivate), "deactivated");
    }
}
