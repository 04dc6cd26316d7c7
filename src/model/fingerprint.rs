//! The words of caller fingerprints: what a secret whose use is watched (a SigV4 credential,
//! a bearer API key) does when it is presented from a fingerprint it was not used from.

use super::text_enum;

text_enum! {
    /// What a credential or API key does when it is used from a caller fingerprint (source
    /// address and user agent, as the verifying service reports them) it has not seen before.
    pub enum OnNewFingerprint {
        /// Remember it and write an audit event (`credential.new_fingerprint`,
        /// `apikey.new_fingerprint`).
        Record = "record",
        /// As `Record`, and log a warning an alerting pipeline can pick up.
        Alert = "alert",
        /// As `Alert`, and stop the secret: a credential turns inactive, an API key disabled,
        /// so that use and every later one are refused until an operator turns it back on.
        Deactivate = "deactivate",
    }
}
