//! Caller fingerprints as stored: where a SigV4 credential or a bearer API key was used from,
//! counted, with the first and last time seen. They decide no right, so their rows carry no
//! integrity tag (see [`super::integrity`]).

/// Where a credential or API key was used from: the caller's address and user agent as the
/// verifying service reported them (`""` when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FingerprintRecord {
    pub source_ip: String,
    pub user_agent: String,
    pub(crate) first_seen_ms: i64,
    pub(crate) last_seen_ms: i64,
    pub count: u64,
}
