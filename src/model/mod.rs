//! The vocabulary shared by the store and the domain: the enums of typed records (states,
//! algorithms, rules) with the text they are stored and shown as, and the audit event's
//! data. Both [`crate::store`] and the domain modules import it, so neither imports the
//! other's types through a back door and no module cycle forms around a shared word.
//!
//! Pure data: no I/O, no cryptography, no knowledge of any backend or of HTTP. The audit
//! event's byte formats ([`audit_line`]: its canonical encoding and its JSON line) are here
//! too, because the store keeps those lines; behaviour that needs more (an algorithm's MAC,
//! the audit chain) lives with the domain module that owns it, as further `impl` blocks on
//! these types.

pub mod api_key;
pub mod audit;
pub mod audit_line;
pub mod credential;
pub mod fingerprint;
pub mod key;

pub use api_key::ApiKeyState;
pub use audit::{AuditEvent, Decision, EventData};
pub use credential::{CredentialState, DEFAULT_CREDENTIAL_GROUP};
pub use fingerprint::OnNewFingerprint;
pub use key::{Algorithm, Boundary, KeyKind, KeyOrigin, KeyState};

/// An enum whose values are stored and shown as fixed texts: one table per type says which,
/// and `parse` / `as_str` / `ALL` (and serialising as that text, for reports and answers)
/// are derived from it, so the directions cannot drift.
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $(#[$meta])*
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The value `text` names; `None` for any other text.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some(Self::$variant), )+
                    _ => None,
                }
            }

            /// The text this value is stored and shown as.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stored text parses back to its value, and no two values share a text.
    fn round_trips<T: Copy + PartialEq + std::fmt::Debug>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        parse: fn(&str) -> Option<T>,
    ) {
        let mut texts: Vec<&str> = all.iter().map(|v| as_str(*v)).collect();
        for v in all {
            assert_eq!(parse(as_str(*v)), Some(*v));
        }
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), all.len(), "two values share a text");
    }

    #[test]
    fn every_stored_text_parses_back_to_its_value_and_nothing_else_parses() {
        round_trips(Algorithm::ALL, Algorithm::as_str, Algorithm::parse);
        round_trips(KeyState::ALL, KeyState::as_str, KeyState::parse);
        round_trips(Boundary::ALL, Boundary::as_str, Boundary::parse);
        round_trips(CredentialState::ALL, CredentialState::as_str, CredentialState::parse);
        round_trips(OnNewFingerprint::ALL, OnNewFingerprint::as_str, OnNewFingerprint::parse);
        round_trips(ApiKeyState::ALL, ApiKeyState::as_str, ApiKeyState::parse);
        // Texts are exact: no case folding, no trimming.
        assert_eq!(KeyState::parse("Enabled"), None);
        assert_eq!(CredentialState::parse(" active"), None);
        assert_eq!(ApiKeyState::parse(""), None);
        assert_eq!(Algorithm::parse("hmac-sha1"), None);
    }
}
