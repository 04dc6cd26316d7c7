//! The words of SigV4 credentials: their state.

use super::text_enum;

text_enum! {
    /// Whether a credential's signatures are accepted.
    pub enum CredentialState {
        Active = "active",
        Inactive = "inactive",
    }
}

/// The group of a credential's signer when an admin made it and named none. A credential a
/// non-admin made without naming groups has none (and so do those stored before credentials
/// had groups): it is verified for others, and calls this vault as nobody.
pub const DEFAULT_CREDENTIAL_GROUP: &str = "service";
