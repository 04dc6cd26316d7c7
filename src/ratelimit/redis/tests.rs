//! The Redis backend against a real Redis (`SIGVAULT_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`; `scripts/redis.sh` provides one): two limiters on one namespace
//! stand for two nodes. Each test has a namespace of its own and deletes its keys.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::apikeys::ratelimit::RateLimiter;

fn redis_url() -> RedisUrl {
    RedisUrl::new(std::env::var("SIGVAULT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()))
}

/// A namespace no other test (or run) uses.
fn namespace(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test-{}-{nanos}-{}-{tag}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Two nodes' limiters sharing `namespace`; its keys are deleted when dropped.
struct Nodes {
    a: RedisLimiter,
    b: RedisLimiter,
    namespace: String,
}

impl Nodes {
    fn new(tag: &str) -> Self {
        let namespace = namespace(tag);
        let node = || RedisLimiter::new(&redis_url(), &namespace, OnRedisError::Deny, Duration::from_secs(2)).unwrap();
        Self {
            a: node(),
            b: node(),
            namespace,
        }
    }

    async fn keys(&self) -> Vec<String> {
        let mut connection = self.a.connection.clone();
        redis::cmd("KEYS")
            .arg(format!("sigvault:{}:*", self.namespace))
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    async fn clean(self) {
        let keys = self.keys().await;
        if !keys.is_empty() {
            let mut connection = self.a.connection.clone();
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<i64>(&mut connection)
                .await
                .unwrap();
        }
    }
}

const FIVE_PER_TEN_SECONDS: Limit = Limit {
    limit: 5,
    period_ms: 10_000,
};

/// A time like the nodes' clocks give (Unix ms in 2026).
const T0: i64 = 1_780_000_000_000;

#[tokio::test]
async fn a_key_taken_alternately_through_two_nodes_gets_its_limit_once_then_again_after_the_window() {
    let nodes = Nodes::new("alternate");
    let mut allowed = 0;
    for i in 0..10 {
        let node = if i % 2 == 0 { &nodes.a } else { &nodes.b };
        match node.take("ak_0123", FIVE_PER_TEN_SECONDS, T0).await.unwrap() {
            Taken::Allowed { left } => {
                assert_eq!(left, 4 - allowed, "take {i}");
                allowed += 1;
            }
            Taken::Limited { retry_after_ms } => assert_eq!(retry_after_ms, 2000, "take {i}"),
        }
    }
    assert_eq!(allowed, 5, "exactly the limit across both nodes");
    let other = nodes.a.take("ak_other", FIVE_PER_TEN_SECONDS, T0).await;
    assert_eq!(other, Some(Taken::Allowed { left: 4 }), "per key");
    let later = T0 + 10_000;
    for i in 0..5 {
        let node = if i % 2 == 0 { &nodes.b } else { &nodes.a };
        assert_eq!(
            node.take("ak_0123", FIVE_PER_TEN_SECONDS, later).await,
            Some(Taken::Allowed { left: 4 - i }),
            "after the window, take {i}"
        );
    }
    assert!(matches!(
        nodes.a.take("ak_0123", FIVE_PER_TEN_SECONDS, later).await,
        Some(Taken::Limited { .. })
    ));
    let keys = nodes.keys().await;
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("sigvault:{}:apikey:", nodes.namespace))),
        "{keys:?}"
    );
    nodes.clean().await;
}

#[tokio::test]
async fn the_script_answers_exactly_as_the_local_bucket_does() {
    let nodes = Nodes::new("parity");
    let local = RateLimiter::new(100);
    let one_a_day = Limit {
        limit: 1_000_000,
        period_ms: 86_400_000,
    };
    let three_a_second = Limit {
        limit: 3,
        period_ms: 1000,
    };
    // (time offset, limit): bursts, partial refills, a clock going back, a changed limit, a
    // wait of many periods, and the largest limit an API key can have.
    let mut steps = Vec::new();
    for t in [0, 0, 0, 0, 1, 333, 334, 500, 499, 1000, 1001, 1001, 1001, 1002, 5000] {
        steps.push((t, three_a_second));
    }
    for t in [5000, 5001, 5001, 6999, 20_000, 20_000, 20_000, 20_000, 20_001] {
        steps.push((t, FIVE_PER_TEN_SECONDS));
    }
    steps.extend([(30_000, three_a_second), (10_000_000_000, three_a_second)]);
    steps.extend((0..4).map(|i| (10_000_000_000 + i, one_a_day)));
    for (i, (offset, limit)) in steps.into_iter().enumerate() {
        let node = if i % 2 == 0 { &nodes.a } else { &nodes.b };
        let shared = node.take("ak_parity", limit, T0 + offset).await;
        assert_eq!(
            shared,
            Some(local.take("ak_parity", limit, T0 + offset)),
            "step {i} at +{offset}"
        );
    }
    nodes.clean().await;
}

#[tokio::test]
async fn a_bucket_expires_when_idle_and_forget_deletes_it() {
    let nodes = Nodes::new("expire");
    nodes.a.take("ak_x", FIVE_PER_TEN_SECONDS, T0).await;
    let key = format!("sigvault:{}:apikey:ak_x", nodes.namespace);
    let mut connection = nodes.a.connection.clone();
    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut connection).await.unwrap();
    assert!((10_000..=11_000).contains(&ttl), "{ttl}");
    nodes.b.forget("ak_x").await;
    assert!(nodes.keys().await.is_empty());
    nodes.clean().await;
}

const RULE: FailureRule = FailureRule {
    max: 3,
    window_ms: 60_000,
};

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn credential(n: u8) -> [u8; 16] {
    [n; 16]
}

#[tokio::test]
async fn failures_on_both_nodes_block_a_pair_then_a_source_until_the_window_ends() {
    let nodes = Nodes::new("failures");
    let ip = v4(1);
    let (wrong, right) = (credential(1), credential(2));
    // One credential failing on both nodes: the pair is blocked on both, for it only.
    assert!(nodes.a.failures_record(RULE, ip, &wrong, T0).await);
    assert!(nodes.b.failures_record(RULE, ip, &wrong, T0 + 1000).await);
    assert_eq!(nodes.a.failures_blocked(RULE, ip, &wrong, T0 + 1000).await, Some(None));
    assert!(nodes.a.failures_record(RULE, ip, &wrong, T0 + 2000).await);
    for node in [&nodes.a, &nodes.b] {
        assert_eq!(node.failures_blocked(RULE, ip, &wrong, T0 + 2000).await, Some(Some(58)));
        assert_eq!(node.failures_blocked(RULE, ip, &right, T0 + 2000).await, Some(None));
        assert_eq!(node.failures_blocked(RULE, v4(2), &wrong, T0 + 2000).await, Some(None));
    }
    // Distinct credentials, counted once each whichever node saw them: the third blocks the
    // source for every credential.
    assert!(nodes.b.failures_record(RULE, ip, &credential(3), T0 + 3000).await);
    assert_eq!(nodes.a.failures_blocked(RULE, ip, &right, T0 + 3000).await, Some(None));
    assert!(nodes.a.failures_record(RULE, ip, &credential(3), T0 + 3000).await);
    assert_eq!(
        nodes.b.failures_blocked(RULE, ip, &right, T0 + 3000).await,
        Some(None),
        "one more failure of credential 3 is not another credential"
    );
    assert!(nodes.a.failures_record(RULE, ip, &credential(4), T0 + 4000).await);
    for node in [&nodes.a, &nodes.b] {
        assert_eq!(node.failures_blocked(RULE, ip, &right, T0 + 4000).await, Some(Some(56)));
    }
    assert_eq!(
        nodes.b.failures_blocked(RULE, ip, &right, T0 + 59_001).await,
        Some(Some(1)),
        "Retry-After counts down"
    );
    assert_eq!(
        nodes.b.failures_blocked(RULE, ip, &right, T0 + 60_000).await,
        Some(None)
    );
    assert_eq!(
        nodes.a.failures_blocked(RULE, ip, &wrong, T0 + 60_000).await,
        Some(None)
    );
    // The raw credential is nowhere: keys carry the digest's hex only.
    let keys = nodes.keys().await;
    assert!(keys.contains(&format!(
        "sigvault:{}:authfail:{{192.0.2.1}}:cred:{}",
        nodes.namespace,
        "01".repeat(16)
    )));
    assert!(keys.contains(&format!("sigvault:{}:authfail:{{192.0.2.1}}:source", nodes.namespace)));
    nodes.clean().await;
}

#[tokio::test]
async fn two_namespaces_do_not_share_counts() {
    let first = Nodes::new("ns-one");
    let second = Nodes::new("ns-two");
    for _ in 0..5 {
        first.a.take("ak_same", FIVE_PER_TEN_SECONDS, T0).await;
    }
    assert!(matches!(
        first.b.take("ak_same", FIVE_PER_TEN_SECONDS, T0).await,
        Some(Taken::Limited { .. })
    ));
    assert_eq!(
        second.a.take("ak_same", FIVE_PER_TEN_SECONDS, T0).await,
        Some(Taken::Allowed { left: 4 })
    );
    first.clean().await;
    second.clean().await;
}

/// What a limiter decides when its Redis cannot answer, and how long it took at most.
async fn unreachable(url: String, on_error: OnRedisError) -> (Option<Taken>, Option<Option<u64>>, bool, Duration) {
    let timeout = Duration::from_millis(300);
    let limiter = RedisLimiter::new(&RedisUrl::new(url), "unreachable", on_error, timeout).unwrap();
    let mut slowest = Duration::ZERO;
    let mut timed = Instant::now();
    let mut lap = || {
        slowest = slowest.max(timed.elapsed());
        timed = Instant::now();
    };
    let taken = limiter.take("ak_down", FIVE_PER_TEN_SECONDS, T0).await;
    lap();
    // Twice: the connection manager's reconnection is tried again.
    let _ = limiter.take("ak_down", FIVE_PER_TEN_SECONDS, T0).await;
    lap();
    let blocked = limiter.failures_blocked(RULE, v4(9), &credential(9), T0).await;
    lap();
    let recorded = limiter.failures_record(RULE, v4(9), &credential(9), T0).await;
    lap();
    limiter.forget("ak_down").await;
    lap();
    (taken, blocked, recorded, slowest)
}

#[tokio::test]
async fn an_unreachable_redis_denies_quickly_under_deny_and_leaves_decisions_local_under_local() {
    let refused = "redis://127.0.0.1:1".to_owned();
    let (taken, blocked, recorded, slowest) = unreachable(refused.clone(), OnRedisError::Deny).await;
    assert_eq!(taken, Some(Taken::Limited { retry_after_ms: 1000 }));
    assert_eq!(blocked, Some(Some(1)));
    assert!(recorded, "nothing left to count locally");
    assert!(slowest < Duration::from_millis(800), "{slowest:?}");
    let (taken, blocked, recorded, slowest) = unreachable(refused, OnRedisError::Local).await;
    assert_eq!((taken, blocked, recorded), (None, None, false), "all local");
    assert!(slowest < Duration::from_millis(800), "{slowest:?}");
}

#[tokio::test]
async fn a_redis_that_never_answers_is_given_up_on_after_the_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (taken, blocked, recorded, slowest) = unreachable(format!("redis://{addr}"), OnRedisError::Deny).await;
    assert_eq!(taken, Some(Taken::Limited { retry_after_ms: 1000 }));
    assert_eq!(blocked, Some(Some(1)));
    assert!(recorded);
    assert!(slowest >= Duration::from_millis(250), "it did wait: {slowest:?}");
    assert!(
        slowest < Duration::from_millis(800),
        "but not past the timeout: {slowest:?}"
    );
    silent.abort();
}

#[test]
fn warnings_are_throttled() {
    let throttle = Throttle::new();
    assert!(throttle.allow());
    assert!(!throttle.allow());
    throttle.next_ms.store(0, Ordering::Relaxed);
    assert!(throttle.allow());
}
