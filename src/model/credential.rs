//! The words of SigV4 credentials: their state and what a new caller fingerprint does.

use super::text_enum;

text_enum! {
    /// Whether a credential's signatures are accepted.
    pub enum CredentialState {
        Active = "active",
        Inactive = "inactive",
    }
}

text_enum! {
    /// What a credential does when a request comes from a caller fingerprint (source address
    /// and user agent) it has not seen before.
    pub enum OnNewFingerprint {
        /// Remember it and write a `credential.new_fingerprint` audit event.
        Record = "record",
        /// As `Record`, and log a warning an alerting pipeline can pick up.
        Alert = "alert",
        /// As `Alert`, and turn the credential inactive: that request and every later one
        /// fail with `INACTIVE_ACCESS_KEY` until an operator reactivates it.
        Deactivate = "deactivate",
    }
}
