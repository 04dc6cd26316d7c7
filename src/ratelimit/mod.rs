//! Where the rate limits count: in this node's memory, or across every node through Redis.
//!
//! Two limits are kept: API keys' own rate limits ([`crate::apikeys::ratelimit`], a token
//! bucket per key) and failed authentications (`auth::limiter`, per source address and per
//! (address, credential) pair). Their in-memory implementations are unchanged and remain what
//! `backend = "local"` (the default) uses: each node then allows a key its limit on its own,
//! so N nodes behind a load balancer allow N times it.
//!
//! With `backend = "redis"` ([`redis`], behind the default `ratelimit-redis` feature) every
//! decision is one Lua script run atomically by Redis, so the nodes share one count. Times
//! are still the node's injected clock (passed to the script), so tests step them; the
//! nodes' clocks are assumed to agree to well within a window, as NTP keeps them.
//!
//! [`RateLimitBackend`] is the small seam both limiters call: each of its answers is either a
//! decision or `None`, "decide locally" — always for `Local` (a match and nothing more: no
//! allocation, no await that suspends), and for `Redis` when Redis failed or was slow and
//! `on_redis_error = "local"`. With `on_redis_error = "deny"` a failure is a refusal: an API
//! key's verification answers `RATE_LIMITED` (retry after [`DENY_RETRY_AFTER_MS`]) and an
//! authentication gets 429 `RATE_LIMITED`. Neither is a 500, and neither waits past
//! `redis_timeout`.
//!
//! The Redis URL may hold a password: [`RedisUrl`] keeps it secret, its `Debug` shows the URL
//! without user information, and no error names it.

#[cfg(feature = "ratelimit-redis")]
pub(crate) mod redis;

use std::net::IpAddr;
#[cfg(feature = "ratelimit-redis")]
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::apikeys::ratelimit::{Limit, Taken};
use crate::clock::Clock;

/// The retry-after of a verification refused because Redis could not be asked.
pub const DENY_RETRY_AFTER_MS: i64 = 1000;

/// The default of `ratelimit.redis_timeout`.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// The default of `ratelimit.namespace`.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `[ratelimit]`.
#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub backend: Backend,
    pub on_redis_error: OnRedisError,
    /// Longest wait for Redis (connecting included) before `on_redis_error` decides.
    pub redis_timeout: Duration,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            on_redis_error: OnRedisError::Deny,
            redis_timeout: DEFAULT_REDIS_TIMEOUT,
        }
    }
}

/// Where the limits count.
#[derive(Debug, Clone)]
pub enum Backend {
    /// In this node's memory.
    Local,
    /// In Redis, under `sigvault:<namespace>:`.
    Redis { url: RedisUrl, namespace: String },
}

/// What a limit decides when Redis cannot be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisError {
    /// Refuse (rate limited).
    Deny,
    /// Decide with this node's in-memory limiter.
    Local,
}

impl OnRedisError {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "deny" => Some(Self::Deny),
            "local" => Some(Self::Local),
            _ => None,
        }
    }
}

/// A `redis://` or `rediss://` URL, which may hold a password: kept as a secret, shown
/// without its user information.
#[derive(Clone)]
pub struct RedisUrl(SecretString);

impl RedisUrl {
    pub fn new(url: String) -> Self {
        Self(SecretString::from(url))
    }

    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({:?})", redact_userinfo(self.expose()))
    }
}

/// `text` with the user information of every URL in it (`scheme://user:password@`) replaced
/// by `***`, and the query of such a URL dropped: for messages that may quote a Redis URL
/// (a config file's line in a parse error).
pub fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        // The authority ends at a path, a query, a quote or white space.
        let end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        let (authority, after) = tail.split_at(end);
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(authority.get(userinfo_end..).unwrap_or_default());
            }
            None => out.push_str(authority),
        }
        // The path runs to a quote or white space; its query may carry a password too.
        let stop = after
            .find(|c: char| c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(after.len());
        let (path, after) = after.split_at(stop);
        match path.split_once('?') {
            Some((path, _query)) => {
                out.push_str(path);
                out.push_str("?***");
            }
            None => out.push_str(path),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// The failed-authentication rule the shared counts apply (`[auth]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureRule {
    pub(crate) max: u32,
    pub(crate) window_ms: i64,
}

/// Why a backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("ratelimit.backend = \"redis\": this build has no Redis support (the `ratelimit-redis` feature)")]
    NoRedisSupport,
    #[error("ratelimit.redis_url is not a usable Redis URL (not shown: it may hold a password)")]
    BadUrl,
}

/// The shared counts both limiters ask first; see the module documentation. The default is
/// `Local`: nothing shared.
#[derive(Clone, Default)]
pub struct RateLimitBackend(Shared);

#[derive(Clone, Default)]
enum Shared {
    /// Nothing shared: every decision is the node's own.
    #[default]
    Local,
    #[cfg(feature = "ratelimit-redis")]
    Redis(Arc<redis::RedisLimiter>),
}

impl RateLimitBackend {
    /// The backend `settings` name. Connects lazily: a Redis that is down now delays nothing
    /// (the first decisions follow `on_redis_error` until it answers). Needs a Tokio runtime
    /// for Redis (the connection manager's task).
    pub fn new(settings: &RateLimitSettings) -> Result<Self, RateLimitError> {
        match &settings.backend {
            Backend::Local => Ok(Self(Shared::Local)),
            #[cfg(feature = "ratelimit-redis")]
            Backend::Redis { url, namespace } => Ok(Self(Shared::Redis(Arc::new(redis::RedisLimiter::new(
                url,
                namespace,
                settings.on_redis_error,
                settings.redis_timeout,
            )?)))),
            #[cfg(not(feature = "ratelimit-redis"))]
            Backend::Redis { .. } => Err(RateLimitError::NoRedisSupport),
        }
    }

    /// Takes one token of `key_id`'s bucket; `None`: take it from the local limiter.
    #[cfg_attr(not(feature = "ratelimit-redis"), allow(unused_variables, clippy::unused_async))]
    pub(crate) async fn take(&self, key_id: &str, limit: Limit, now_ms: i64) -> Option<Taken> {
        match &self.0 {
            Shared::Local => None,
            #[cfg(feature = "ratelimit-redis")]
            Shared::Redis(redis) => redis.take(key_id, limit, now_ms).await,
        }
    }

    /// Drops `key_id`'s shared bucket (the key was revoked). Best effort: a bucket left
    /// behind expires after one period.
    #[cfg_attr(not(feature = "ratelimit-redis"), allow(unused_variables, clippy::unused_async))]
    pub(crate) async fn forget(&self, key_id: &str) {
        match &self.0 {
            Shared::Local => {}
            #[cfg(feature = "ratelimit-redis")]
            Shared::Redis(redis) => redis.forget(key_id).await,
        }
    }

    /// Seconds until `ip` may try again with the credential `digest` gives (`None` when not
    /// blocked); `None` overall: ask the local limiter. `digest` and `clock` are read only
    /// for Redis (the local limiter's fast path needs neither).
    #[cfg_attr(not(feature = "ratelimit-redis"), allow(unused_variables, clippy::unused_async))]
    pub(crate) async fn failures_blocked(
        &self,
        rule: FailureRule,
        ip: IpAddr,
        digest: impl FnOnce() -> [u8; 16],
        clock: &dyn Clock,
    ) -> Option<Option<u64>> {
        match &self.0 {
            Shared::Local => None,
            #[cfg(feature = "ratelimit-redis")]
            Shared::Redis(redis) => redis.failures_blocked(rule, ip, &digest(), clock.now_ms()).await,
        }
    }

    /// Counts a failed authentication; false: count it in the local limiter.
    #[cfg_attr(not(feature = "ratelimit-redis"), allow(unused_variables, clippy::unused_async))]
    pub(crate) async fn failures_record(
        &self,
        rule: FailureRule,
        ip: IpAddr,
        digest: impl FnOnce() -> [u8; 16],
        clock: &dyn Clock,
    ) -> bool {
        match &self.0 {
            Shared::Local => false,
            #[cfg(feature = "ratelimit-redis")]
            Shared::Redis(redis) => redis.failures_record(rule, ip, &digest(), clock.now_ms()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_and_queries_are_redacted() {
        assert_eq!(
            redact_userinfo("redis://:hunter2@cache:6379/0"),
            "redis://***@cache:6379/0"
        );
        assert_eq!(
            redact_userinfo("line 3: redis_url = \"rediss://u:p@s:w@h\" and ftp://x/y?q"),
            "line 3: redis_url = \"rediss://***@h\" and ftp://x/y?***"
        );
        assert_eq!(
            redact_userinfo("x = redis://h:1?password=s3cret y"),
            "x = redis://h:1?*** y"
        );
        assert_eq!(
            redact_userinfo("redis://h/0?password=s3cret&x=1\n"),
            "redis://h/0?***\n"
        );
        assert_eq!(redact_userinfo("no url here"), "no url here");
        let url = RedisUrl::new("redis://user:s3cret@127.0.0.1:6379".into());
        let shown = format!(
            "{:?}",
            Backend::Redis {
                url,
                namespace: "n".into()
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");
    }
}
