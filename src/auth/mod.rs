//! Who is calling: the bootstrap root token (principal `root` in group `admin`) and named
//! caller tokens (`POST /v1/auth/tokens`), each a principal with groups.
//!
//! Only keyed hashes of tokens are stored ([`keyed_hash`], under the KEK-sealed pepper); a
//! token itself is shown once, when generated, and is never logged.

pub mod certificate;
pub(crate) mod keyed_hash;
mod limiter;
mod tokens;

use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::keys::cache::{CacheSettings, TtlCache};
use crate::ratelimit::{FailureRule, RateLimitBackend};
pub use crate::store::TokenRecord;
use crate::store::{StoreError, SystemStore, TokenStore};
use keyed_hash::KeyedHasher;
use limiter::FailureLimiter;
pub(crate) use tokens::check_new_token;
pub use tokens::{MAX_GROUPS, NewToken, TokenError, validate_groups, validate_principal};

/// Caller authentication limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthSettings {
    /// Failed authentications per `failure_window` with one credential from one source
    /// address before that credential gets 429 `RATE_LIMITED` from there; also the distinct
    /// failing credentials per window before the address gets it for every credential.
    pub max_failures: u32,
    pub failure_window: time::Duration,
    /// Longest `ttl` a caller token may be given (and the ttl of tokens created without one).
    pub max_token_ttl: time::Duration,
}

/// Domain label of the root token's keyed hash.
pub(crate) const ROOT_TOKEN_DOMAIN: &str = "root-token";
/// Store key under which the root token's keyed hash is kept.
pub(crate) const ROOT_TOKEN_VALUE: &str = "root_token_hash";
/// Prefix of tokens sigvault generates, so secret scanners can spot them.
pub(crate) const TOKEN_PREFIX: &str = "svt_";
const MAX_TOKEN_LEN: usize = 256;
const MIN_TOKEN_LEN: usize = 16;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Token,
    Mtls,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Token => "token",
            Via::Mtls => "mtls",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub groups: Vec<String>,
    pub via: Via,
}

impl Principal {
    pub fn root() -> Self {
        Self {
            name: "root".into(),
            groups: vec!["admin".into()],
            via: Via::Token,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send Authorization: Bearer <token>")]
    Missing,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
    #[error("the token was revoked")]
    Revoked,
    #[error(
        "too many failed authentications from this address (with this credential, or with distinct ones); retry in {0} s"
    )]
    RateLimited(u64),
    #[error(transparent)]
    Unavailable(StoreError),
}

/// Checks a root token chosen by the operator (`SIGVAULT_ROOT_TOKEN`).
pub(crate) fn validate_root_token(token: &str) -> Result<SecretString, &'static str> {
    let len_ok = (MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len());
    if !len_ok || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the root token must be 16 to 256 visible ASCII characters");
    }
    Ok(SecretString::from(token.to_owned()))
}

/// A fresh root token: `svt_` and 256 random bits in unpadded base64url.
pub(crate) fn generate_token() -> Result<SecretString, getrandom::Error> {
    use base64::Engine as _;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    zeroize::Zeroize::zeroize(&mut raw);
    Ok(SecretString::from(format!("{TOKEN_PREFIX}{body}")))
}

/// Most distinct tokens remembered as verified (the least useful go first when full).
const VERIFIED_CACHE_MAX: usize = 10_000;
/// Domain label of caller tokens' keyed hashes.
pub(crate) const CALLER_TOKEN_DOMAIN: &str = "caller-token";

/// A verified token, remembered for at most `cache.max_staleness` and never past its expiry.
struct Verified {
    principal: Arc<Principal>,
    expires_at_ms: Option<i64>,
}

/// Resolves bearer tokens to principals: the root token, and named caller tokens stored as
/// keyed hashes (`caller_tokens`).
///
/// A token that passed the keyed-hash check is remembered by its SHA-256 digest (in memory
/// only; the store never holds an unkeyed hash), so the hot path costs one hash and a map
/// lookup. A revocation clears that memory on this node. Failed authentications are
/// counted per (source address, credential) and, by distinct credentials, per source address
/// ([`FailureLimiter`]); a credential or an address over the limit is refused before its
/// token is even looked at.
pub struct Authenticator {
    /// Shared with the API-key service (one pepper, one domain label per kind of secret).
    hasher: Arc<KeyedHasher>,
    /// Empty once the root token was revoked: nothing matches it.
    root_hash: RwLock<Vec<u8>>,
    store: Arc<dyn TokenStore>,
    /// Where the root token's keyed hash is kept (a system value).
    system: Arc<dyn SystemStore>,
    clock: SharedClock,
    /// Tokens that passed, by their SHA-256, for at most `cache.max_staleness` (so a
    /// revocation on another node sharing the store takes effect here within it). A
    /// revocation on this node clears it, and a lookup that started before one does not
    /// remember what it found (it may have read the row before the revocation committed).
    verified: TtlCache<[u8; 32], Verified>,
    failures: FailureLimiter,
    /// Where failures are counted first (Redis, shared by the nodes); `failures` counts what
    /// it leaves to this node.
    shared_limits: RateLimitBackend,
    failure_rule: FailureRule,
}

impl Authenticator {
    pub fn new(
        hasher: Arc<KeyedHasher>,
        root_hash: Vec<u8>,
        store: Arc<dyn TokenStore>,
        system: Arc<dyn SystemStore>,
        clock: SharedClock,
        settings: AuthSettings,
        cache: CacheSettings,
    ) -> Self {
        Self {
            hasher,
            root_hash: RwLock::new(root_hash),
            store,
            system,
            failures: FailureLimiter::new(settings.max_failures, settings.failure_window, clock.clone()),
            shared_limits: RateLimitBackend::default(),
            failure_rule: FailureRule {
                max: settings.max_failures,
                window_ms: i64::try_from(settings.failure_window.whole_milliseconds()).unwrap_or(i64::MAX),
            },
            verified: TtlCache::new(VERIFIED_CACHE_MAX, cache.state_ttl(), clock.clone()),
            clock,
        }
    }

    /// Counts failed authentications in `shared` first (`[ratelimit]`); without it, or where
    /// it leaves a decision to this node, in this node's memory.
    #[must_use]
    pub fn with_rate_limits(mut self, shared: RateLimitBackend) -> Self {
        self.shared_limits = shared;
        self
    }

    /// Drops every remembered verification (after a revocation).
    pub(crate) fn forget_all(&self) {
        self.verified.invalidate(|_| true);
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The keyed hash under which `token` is stored.
    pub(crate) fn root_hash_of(hasher: &KeyedHasher, token: &SecretString) -> [u8; 32] {
        // The token is hashed, never stored or compared in the clear.
        hasher.hash(ROOT_TOKEN_DOMAIN, token.expose_secret().as_bytes())
    }

    /// Authenticates an `Authorization` header value sent from `source`. Every failure is
    /// counted against `source` and that header value ([`FailureLimiter`]); a header value
    /// that failed too often from `source`, or any header from a source that failed with too
    /// many distinct ones, gets [`AuthError::RateLimited`] without its token being checked.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        source: Option<IpAddr>,
    ) -> Result<Arc<Principal>, AuthError> {
        if let Some(ip) = source
            && let Some(retry_after) = self.blocked(ip, authorization).await
        {
            return Err(AuthError::RateLimited(retry_after));
        }
        let result = self.check(authorization).await;
        if let (Err(AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked), Some(ip)) =
            (&result, source)
        {
            self.record_failure(ip, authorization).await;
        }
        result
    }

    /// For a caller authenticated elsewhere than by a token (a SigV4 signature of the
    /// KMS-compatible API, `credential` naming its access key id): seconds until `ip` may
    /// try again, when its failures are over the limit. The same counts as tokens'.
    pub async fn failures_blocked(&self, ip: IpAddr, credential: &str) -> Option<u64> {
        self.blocked(ip, Some(credential)).await
    }

    /// Counts a failed authentication of such a caller ([`Authenticator::failures_blocked`]).
    pub async fn failed(&self, ip: IpAddr, credential: &str) {
        self.record_failure(ip, Some(credential)).await;
    }

    /// Seconds until `ip` may try again with `authorization`, when blocked: by the shared
    /// count, or this node's.
    async fn blocked(&self, ip: IpAddr, authorization: Option<&str>) -> Option<u64> {
        let digest = || limiter::credential_digest(authorization);
        let shared = self
            .shared_limits
            .failures_blocked(self.failure_rule, ip, digest, &*self.clock);
        match shared.await {
            Some(decided) => decided,
            None => self.failures.blocked(ip, authorization),
        }
    }

    /// Counts a failed authentication: in the shared count, or this node's.
    async fn record_failure(&self, ip: IpAddr, authorization: Option<&str>) {
        let digest = || limiter::credential_digest(authorization);
        let shared = self
            .shared_limits
            .failures_record(self.failure_rule, ip, digest, &*self.clock);
        if !shared.await {
            self.failures.record(ip, authorization);
        }
    }

    async fn check(&self, authorization: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        let token = token.trim();
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.verified.get(&digest) {
            if hit.expires_at_ms.is_some_and(|at| self.now_ms() >= at) {
                return Err(AuthError::Expired);
            }
            return Ok(Arc::clone(&hit.principal));
        }
        let fill = self.verified.fill_token();
        let is_root = {
            let root_hash = self.root_hash.read().unwrap_or_else(PoisonError::into_inner);
            !root_hash.is_empty() && self.hasher.matches(ROOT_TOKEN_DOMAIN, token.as_bytes(), &root_hash)
        };
        let verified = if is_root {
            Verified {
                principal: Arc::new(Principal::root()),
                expires_at_ms: None,
            }
        } else {
            self.named(token).await?
        };
        let principal = Arc::clone(&verified.principal);
        // Remembered only when no revocation happened meanwhile (the cache checks).
        self.verified.insert(digest, Arc::new(verified), fill);
        Ok(principal)
    }

    /// A named caller token, by its keyed hash.
    async fn named(&self, token: &str) -> Result<Verified, AuthError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(AuthError::Invalid);
        }
        let hash = self.hasher.hash(CALLER_TOKEN_DOMAIN, token.as_bytes());
        let record = self
            .store
            .find_token(&hash)
            .await
            .map_err(AuthError::Unavailable)?
            .ok_or(AuthError::Invalid)?;
        if record.revoked_at_ms.is_some() {
            return Err(AuthError::Revoked);
        }
        if record.expires_at_ms.is_some_and(|at| self.now_ms() >= at) {
            return Err(AuthError::Expired);
        }
        Ok(Verified {
            principal: Arc::new(Principal {
                name: record.principal,
                groups: record.groups,
                via: Via::Token,
            }),
            expires_at_ms: record.expires_at_ms,
        })
    }
}

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "ratelimit-redis"))]
mod tests_shared;
