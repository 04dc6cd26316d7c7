//! The words of SigV4 credentials: their state.

use super::text_enum;

text_enum! {
    /// Whether a credential's signatures are accepted.
    pub enum CredentialState {
        Active = "active",
        Inactive = "inactive",
    }
}
