//! Changes that nodes sharing one store tell each other about, so each drops what its caches
//! hold of a changed row at once instead of serving it until `cache.max_staleness` ends.
//!
//! A backend that several nodes can share (PostgreSQL) announces a [`Change`] in the
//! transaction that makes it, so it is heard exactly when the change commits, and hands each
//! node a [`ChangeReceiver`] ([`super::SystemStore::watch_changes`]). A node hears its own
//! changes too; dropping a cache entry is always safe. When the backend may have missed
//! announcements (its listening connection dropped and came back), it sends
//! [`Change::Everything`]. An embedded store (SQLite) has one node and no feed: each
//! service drops its own entries after its own writes.
//!
//! The wire form is a short text (`key <id> <name>`, `credential <id>`, `tokens`,
//! `root-token`, `api-keys`, `kek`), well under PostgreSQL's 8000-byte notification payload: ids
//! and names are bounded and hold no space.

/// Which cached rows are stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A signing key's row or versions: its metadata, its missing-name entry and its
    /// secrets.
    Key { id: String, name: String },
    /// A caller token (memory is keyed by the token's digest, so all of it goes).
    Tokens,
    /// A system value was written — the root token's hash (replaced or revoked) is one.
    RootToken,
    /// A SigV4 credential: its metadata, secret and derived keys.
    Credential { access_key_id: String },
    /// A bearer API key or its hashes (lookups are keyed by the presented key's digest, so
    /// all of them go).
    ApiKeys,
    /// A node rotated or retired a KEK: every node reads its KEKs again (a record wrapped
    /// under the new KEK must open everywhere) and its rewrap job looks for work.
    Kek,
    /// Announcements may have been missed: every cache goes.
    Everything,
}

/// What a node hears. Closed when the store shuts down.
pub type ChangeReceiver = tokio::sync::mpsc::Receiver<Change>;

impl Change {
    /// The wire form.
    pub fn encode(&self) -> String {
        match self {
            Self::Key { id, name } => format!("key {id} {name}"),
            Self::Tokens => "tokens".to_owned(),
            Self::RootToken => "root-token".to_owned(),
            Self::Credential { access_key_id } => format!("credential {access_key_id}"),
            Self::ApiKeys => "api-keys".to_owned(),
            Self::Kek => "kek".to_owned(),
            Self::Everything => "everything".to_owned(),
        }
    }

    /// Reads a wire form; anything else is `None` (a newer node's change this one does not
    /// know is handled by its caller as [`Change::Everything`]).
    pub fn decode(text: &str) -> Option<Self> {
        let mut words = text.split(' ');
        let change = match (words.next()?, words.next(), words.next()) {
            ("key", Some(id), Some(name)) if !id.is_empty() && !name.is_empty() => Self::Key {
                id: id.to_owned(),
                name: name.to_owned(),
            },
            ("credential", Some(id), None) if !id.is_empty() => Self::Credential {
                access_key_id: id.to_owned(),
            },
            ("tokens", None, None) => Self::Tokens,
            ("root-token", None, None) => Self::RootToken,
            ("api-keys", None, None) => Self::ApiKeys,
            ("kek", None, None) => Self::Kek,
            ("everything", None, None) => Self::Everything,
            _ => return None,
        };
        words.next().is_none().then_some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_reads_back_as_written() {
        for change in [
            Change::Key {
                id: "k_00ff".into(),
                name: "payments-webhook".into(),
            },
            Change::Tokens,
            Change::RootToken,
            Change::Credential {
                access_key_id: "AKIAEXAMPLE".into(),
            },
            Change::ApiKeys,
            Change::Everything,
        ] {
            assert_eq!(Change::decode(&change.encode()), Some(change.clone()), "{change:?}");
        }
    }

    #[test]
    fn anything_else_is_not_a_change() {
        for text in [
            "",
            "key",
            "key k_1",
            "key k_1 name extra",
            "key  name",
            "credential",
            "credential a b",
            "tokens now",
            "TOKENS",
            "rotate k_1",
        ] {
            assert_eq!(Change::decode(text), None, "{text:?}");
        }
    }
}
