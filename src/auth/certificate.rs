//! Callers named by a verified TLS client certificate: the certificate's name (see
//! [`crate::tls::san`]) is the principal; its groups come from `tls.client_groups`, else
//! `tls.default_client_groups`.
//!
//! This maps names only; it must never be given a name that webpki has not verified
//! against the client CA. A certificate can never stand for the bootstrap principal `root`.

use std::collections::BTreeMap;

use super::{Principal, Via};

/// Groups of certificate principals not listed in `tls.client_groups`, by default.
pub const DEFAULT_CLIENT_GROUPS: &[&str] = &["service"];
/// Principal names reserved for token callers: a certificate naming one is not mapped.
const RESERVED: &[&str] = &["root"];

/// The `tls.client_groups` table and its fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateGroups {
    listed: BTreeMap<String, Vec<String>>,
    default: Vec<String>,
}

impl Default for CertificateGroups {
    fn default() -> Self {
        Self::new(
            BTreeMap::new(),
            DEFAULT_CLIENT_GROUPS.iter().map(|g| (*g).to_owned()).collect(),
        )
    }
}

impl CertificateGroups {
    pub fn new(listed: BTreeMap<String, Vec<String>>, default: Vec<String>) -> Self {
        Self { listed, default }
    }

    /// The principal a verified certificate name stands for; `None` for a reserved name.
    pub fn principal(&self, name: &str) -> Option<Principal> {
        if RESERVED.contains(&name) {
            return None;
        }
        let groups = self.listed.get(name).unwrap_or(&self.default);
        Some(Principal {
            name: name.to_owned(),
            groups: groups.clone(),
            via: Via::Mtls,
        })
    }
}

/// Whether `name` can be a group: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn is_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_principals_get_their_groups_and_others_the_default() {
        let groups = CertificateGroups::new(
            BTreeMap::from([("spiffe://example.org/ops".to_owned(), vec!["custodian".to_owned()])]),
            vec!["service".into(), "auditor".into()],
        );
        assert_eq!(
            groups.principal("spiffe://example.org/ops"),
            Some(Principal {
                name: "spiffe://example.org/ops".into(),
                groups: vec!["custodian".into()],
                via: Via::Mtls,
            })
        );
        assert_eq!(
            groups.principal("client.example.org").map(|p| p.groups),
            Some(vec!["service".to_owned(), "auditor".to_owned()])
        );
        assert_eq!(
            CertificateGroups::default().principal("x").map(|p| p.groups),
            Some(vec!["service".to_owned()])
        );
    }

    #[test]
    fn a_certificate_cannot_name_the_root_principal() {
        assert_eq!(CertificateGroups::default().principal("root"), None);
    }

    #[test]
    fn group_names_are_short_and_plain() {
        assert!(is_group_name("service"));
        assert!(is_group_name("team.payments-1_a"));
        assert!(!is_group_name(""));
        assert!(!is_group_name("a b"));
        assert!(!is_group_name(&"a".repeat(65)));
    }
}
