//! The Redis backend of the rate limits: each decision is one Lua script (`bucket.lua`,
//! `failures_blocked.lua`, `failures_record.lua`, beside this file), sent with EVALSHA and
//! loaded on a `NOSCRIPT` answer (the `redis` crate's [`Script`]), so Redis runs it
//! atomically and the nodes sharing it share one count.
//!
//! Keys (all under `sigvault:<namespace>:`, so two vaults on one Redis never meet):
//! - `apikey:<key id>`: an API key's bucket (a hash), expiring one period (and a second)
//!   after its last use, when it would be full anyway;
//! - `authfail:{<address>}:source` and `authfail:{<address>}:cred:<32 hex>`: the failure
//!   windows of a source address and of one credential from it, expiring when the window
//!   ends. The credential is known only by its 16-byte SHA-256 digest (never the token), and
//!   the address is braced as a hash tag, so a source's two keys always share a slot.
//!
//! Unlike the in-memory failure limiter, sources are never aggregated into networks: Redis
//! memory is bounded by the keys' expiry rather than by a table size.
//!
//! Redis down or slow: each call is bounded by `redis_timeout` (connecting included); a
//! failure is logged as a warning at most every [`WARN_EVERY`] (its kind only, never the URL
//! or a key), then decided by `on_redis_error`. The [`ConnectionManager`] is created lazily
//! (a Redis down at start delays nothing) and reconnects by itself after an I/O error.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script, ScriptInvocation};

use super::{DENY_RETRY_AFTER_MS, FailureRule, OnRedisError, RateLimitError, RedisUrl};
use crate::apikeys::ratelimit::{Limit, Taken};

/// Fewest milliseconds between two warnings about Redis failing.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Largest `limit * period_ms` the bucket script computes with: Lua numbers are doubles,
/// exact below 2^53 (API keys' limits stay far below: 10^6 per day is 8.64 × 10^13).
const MAX_SCALED: u64 = (1 << 53) / 2;

/// One vault's limits in one Redis.
pub(crate) struct RedisLimiter {
    connection: ConnectionManager,
    timeout: Duration,
    on_error: OnRedisError,
    /// `sigvault:<namespace>:`.
    prefix: String,
    bucket: Script,
    failures_blocked: Script,
    failures_record: Script,
    warnings: Throttle,
}

impl RedisLimiter {
    pub(crate) fn new(
        url: &RedisUrl,
        namespace: &str,
        on_error: OnRedisError,
        timeout: Duration,
    ) -> Result<Self, RateLimitError> {
        // The crate's error may quote the URL: it is not passed on.
        let client = redis::Client::open(url.expose()).map_err(|_| RateLimitError::BadUrl)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(timeout);
        let connection = ConnectionManager::new_lazy_with_config(client, config).map_err(|_| RateLimitError::BadUrl)?;
        Ok(Self {
            connection,
            timeout,
            on_error,
            prefix: format!("sigvault:{namespace}:"),
            bucket: Script::new(include_str!("bucket.lua")),
            failures_blocked: Script::new(include_str!("failures_blocked.lua")),
            failures_record: Script::new(include_str!("failures_record.lua")),
            warnings: Throttle::new(),
        })
    }

    /// Runs a script within the timeout; `None` when Redis failed or was slow (warned).
    async fn run<T: FromRedisValue>(&self, what: &str, invocation: &ScriptInvocation<'_>) -> Option<T> {
        let mut connection = self.connection.clone();
        let failure = match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut connection)).await {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(e)) if e.is_timeout() => "timed out",
            Ok(Err(e)) if e.is_connection_refusal() => "connection refused",
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => "connection failed",
            Ok(Err(_)) => "answered with an error",
            Err(_) => "timed out",
        };
        if self.warnings.allow() {
            let decided_by = match self.on_error {
                OnRedisError::Deny => "refused (on_redis_error = deny)",
                OnRedisError::Local => "decided by this node alone (on_redis_error = local)",
            };
            tracing::warn!(
                limit = what,
                "Redis of the shared rate limits {failure}: {decided_by}; said at most every 10 s"
            );
        }
        None
    }

    /// Takes a token of `key_id`'s bucket; `None`: decide locally.
    pub(crate) async fn take(&self, key_id: &str, limit: Limit, now_ms: i64) -> Option<Taken> {
        let period = limit.period_ms.max(1);
        let scaled = u64::from(limit.limit).saturating_mul(period.unsigned_abs());
        if scaled > MAX_SCALED {
            // Out of the script's exact range (no API key can have such a limit): this node's
            // own count, as if Redis were not there.
            return None;
        }
        let mut invocation = self.bucket.key(format!("{}apikey:{key_id}", self.prefix));
        invocation.arg(limit.limit).arg(period).arg(now_ms);
        match self.run::<(i64, i64)>("api key", &invocation).await {
            Some((1, left)) => Some(Taken::Allowed {
                left: u32::try_from(left).unwrap_or(0),
            }),
            Some((_, retry_after_ms)) => Some(Taken::Limited {
                retry_after_ms: retry_after_ms.max(1),
            }),
            None => match self.on_error {
                OnRedisError::Deny => Some(Taken::Limited {
                    retry_after_ms: DENY_RETRY_AFTER_MS,
                }),
                OnRedisError::Local => None,
            },
        }
    }

    /// Deletes `key_id`'s bucket, best effort (it expires anyway).
    pub(crate) async fn forget(&self, key_id: &str) {
        let mut connection = self.connection.clone();
        let mut del = redis::cmd("DEL");
        del.arg(format!("{}apikey:{key_id}", self.prefix));
        let deleted = tokio::time::timeout(self.timeout, del.query_async::<i64>(&mut connection)).await;
        if !matches!(deleted, Ok(Ok(_))) && self.warnings.allow() {
            tracing::warn!(
                "Redis of the shared rate limits did not delete a revoked key's bucket; it expires by itself"
            );
        }
    }

    /// The keys of `ip`'s failure windows: the source's, and that of `credential` from it.
    fn failure_keys(&self, ip: IpAddr, credential: &[u8; 16]) -> (String, String) {
        let source = format!("{}authfail:{{{ip}}}:", self.prefix);
        let pair = format!("{source}cred:{}", base16ct::lower::encode_string(credential));
        (format!("{source}source"), pair)
    }

    /// Seconds until `ip` may try again with `credential`, if blocked; `None`: decide locally.
    pub(crate) async fn failures_blocked(
        &self,
        rule: FailureRule,
        ip: IpAddr,
        credential: &[u8; 16],
        now_ms: i64,
    ) -> Option<Option<u64>> {
        let (source, pair) = self.failure_keys(ip, credential);
        let mut invocation = self.failures_blocked.key(source);
        invocation.key(pair).arg(now_ms).arg(rule.window_ms).arg(rule.max);
        match self.run::<i64>("authentication failures", &invocation).await {
            Some(ends) if ends > now_ms => Some(Some(u64::try_from((ends - now_ms + 999) / 1000).unwrap_or(1))),
            Some(_) => Some(None),
            None => match self.on_error {
                OnRedisError::Deny => Some(Some(u64::try_from(DENY_RETRY_AFTER_MS / 1000).unwrap_or(1))),
                OnRedisError::Local => None,
            },
        }
    }

    /// Counts a failure of `ip` with `credential`; false: count it locally.
    pub(crate) async fn failures_record(
        &self,
        rule: FailureRule,
        ip: IpAddr,
        credential: &[u8; 16],
        now_ms: i64,
    ) -> bool {
        let (source, pair) = self.failure_keys(ip, credential);
        let mut invocation = self.failures_record.key(source);
        invocation.key(pair).arg(now_ms).arg(rule.window_ms);
        match self.run::<i64>("authentication failures", &invocation).await {
            Some(_) => true,
            // Refusing is for decisions; a failure that cannot be counted under `deny` is
            // lost (every authentication is refused while Redis stays unreachable anyway).
            None => self.on_error == OnRedisError::Deny,
        }
    }
}

/// Allows one event per [`WARN_EVERY`], without a lock.
struct Throttle {
    start: Instant,
    /// Milliseconds since `start` before which nothing more is allowed.
    next_ms: AtomicU64,
}

impl Throttle {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
        }
    }

    fn allow(&self) -> bool {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        now >= next
            && self
                .next_ms
                .compare_exchange(next, now.saturating_add(every), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests;
