//! The words of keys: what a key computes (a MAC, or AES-GCM encryption), where it runs,
//! and its state. The computations themselves belong to [`crate::keys`].

use super::text_enum;

text_enum! {
    /// What a key computes: a MAC (signing keys) or AES-256-GCM (encryption keys). A key
    /// has one algorithm for life: a signing key never encrypts, an encryption key never
    /// signs.
    pub enum Algorithm {
        HmacSha256 = "hmac-sha256",
        HmacSha384 = "hmac-sha384",
        HmacSha512 = "hmac-sha512",
        Aes256Gcm = "aes256-gcm",
        Aes256Kwp = "aes256-kwp",
    }
}

/// The kind of operation a key's algorithm does; a key does no other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Sign and verify (`hmac-*`).
    Mac,
    /// Encrypt, decrypt, rewrap, data keys (`aes256-gcm`).
    Encryption,
    /// Wrap and unwrap key material for other systems (`aes256-kwp`).
    Wrapping,
}

impl KeyKind {
    /// What a key of this kind does, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Mac => "a signing key (it signs and verifies)",
            Self::Encryption => "an encryption key (it encrypts and decrypts)",
            Self::Wrapping => "a key-wrapping key (it wraps and unwraps key material)",
        }
    }
}

impl Algorithm {
    /// The kind of operation the key does.
    pub fn kind(self) -> KeyKind {
        match self {
            Self::HmacSha256 | Self::HmacSha384 | Self::HmacSha512 => KeyKind::Mac,
            Self::Aes256Gcm => KeyKind::Encryption,
            Self::Aes256Kwp => KeyKind::Wrapping,
        }
    }

    /// Whether the key signs and verifies (an HMAC).
    pub fn is_mac(self) -> bool {
        self.kind() == KeyKind::Mac
    }

    /// Length of a full (untruncated) tag. Verification accepts only full tags. An
    /// encryption key has none (it never signs).
    pub fn tag_len(self) -> usize {
        match self {
            Self::HmacSha256 => 32,
            Self::HmacSha384 => 48,
            Self::HmacSha512 => 64,
            Self::Aes256Gcm | Self::Aes256Kwp => 0,
        }
    }

    /// Generated key size when the caller gives none: the hash output size; 32 bytes for
    /// AES-256 (its only size).
    pub(crate) fn default_key_size(self) -> usize {
        match self {
            Self::Aes256Gcm | Self::Aes256Kwp => 32,
            mac => mac.tag_len(),
        }
    }

    /// The one key size the algorithm takes, when it has one (AES-256: 32 bytes).
    pub(crate) fn fixed_key_size(self) -> Option<usize> {
        match self {
            Self::Aes256Gcm | Self::Aes256Kwp => Some(32),
            _ => None,
        }
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
    /// Where the HMAC runs: in this process (`process`), or inside the HSM (`hsm`: the
    /// material is in the clear only inside the HSM; see `keys::resident`).
    pub enum Boundary {
        Process = "process",
        Hsm = "hsm",
    }
}
