//! The words of SigV4 credentials: their state.

use super::text_enum;

text_enum! {
    /// Whether a credential's signatures are accepted.
    pub enum CredentialState {
        Active = "active",
        Inactive = "inactive",
    }
}

/// The groups of a credential's signer when its creator named none (and of every credential
/// stored before credentials had groups).
pub const DEFAULT_CREDENTIAL_GROUP: &str = "service";
