//! The words of signing keys: which MAC a key computes, where it runs, and its state.
//! The MAC computation itself belongs to [`crate::keys`].

use super::text_enum;

text_enum! {
    /// The MAC a key computes.
    pub enum Algorithm {
        HmacSha256 = "hmac-sha256",
        HmacSha384 = "hmac-sha384",
        HmacSha512 = "hmac-sha512",
    }
}

impl Algorithm {
    /// Length of a full (untruncated) tag. Verification accepts only full tags.
    pub fn tag_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
        }
    }

    /// Generated key size when the caller gives none: the hash output size.
    pub(crate) fn default_key_size(self) -> usize {
        self.tag_len()
    }
}

text_enum! {
    /// A key's state. `PendingDeletion` keys serve nothing until restored or destroyed.
    pub enum KeyState {
        Enabled = "enabled",
        Disabled = "disabled",
        PendingDeletion = "pending_deletion",
    }
}

text_enum! {
    /// Where a key's material came from. A version may be imported only into an imported
    /// key: importing known material as the newest version of a generated key would let the
    /// importer forge the signatures of the service that uses it.
    pub enum KeyOrigin {
        Generated = "generated",
        Imported = "imported",
    }
}

text_enum! {
    /// Where the HMAC runs. Only `process` is served by this build; `hsm` is refused at
    /// creation with a clear error rather than silently downgraded, and a stored row naming
    /// it reads as corrupt.
    pub enum Boundary {
        Process = "process",
    }
}
