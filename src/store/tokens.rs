//! Named caller tokens, stored only as keyed hashes (never the token).

use super::StoreResult;
use crate::BoxFuture;

/// A named caller token as stored: never the token, only its keyed hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub hash: Vec<u8>,
    pub principal: String,
    pub groups: Vec<String>,
    pub description: Option<String>,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: Option<i64>,
    pub(crate) revoked_at_ms: Option<i64>,
    /// Bumped by every update; bound into the row's integrity tag.
    pub(crate) revision: i64,
}

/// Caller tokens. Every method is one atomic operation.
pub trait TokenStore: Send + Sync {
    /// Stores a new caller token. `AlreadyExists` if its id or hash is taken.
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, StoreResult<()>>;

    fn get_token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>>;

    /// The token whose keyed hash is `hash` (revoked and expired ones included).
    fn find_token<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>>;

    /// Marks a token revoked at `now_ms` (once: a second revoke keeps the first time);
    /// returns the row afterwards, `None` when there is no such token.
    fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>>;
}
