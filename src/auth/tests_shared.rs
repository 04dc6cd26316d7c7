//! Failed authentications counted in Redis (`[ratelimit] backend = "redis"`): two
//! authenticators sharing one Redis namespace stand for two nodes behind a load balancer.
//! Needs the Redis of `SIGVAULT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::time::{Duration, Instant};

use super::tests::{Fixture, ROOT, bearer, fixture};
use super::*;
use crate::ratelimit::{Backend, OnRedisError, RateLimitSettings, RedisUrl};

fn redis_url() -> String {
    std::env::var("SIGVAULT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn shared(url: String, namespace: &str, on_redis_error: OnRedisError) -> RateLimitBackend {
    RateLimitBackend::new(&RateLimitSettings {
        backend: Backend::Redis {
            url: RedisUrl::new(url),
            namespace: namespace.to_owned(),
        },
        on_redis_error,
        redis_timeout: Duration::from_millis(300),
    })
    .unwrap()
}

/// A node: a fresh authenticator (failures: 3 per minute) counting in `limits`.
async fn node(name: &str, limits: RateLimitBackend) -> Fixture {
    let Fixture { auth, clock, _dir } = fixture(name).await;
    Fixture {
        auth: auth.with_rate_limits(limits),
        clock,
        _dir,
    }
}

async fn delete_namespace(namespace: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("sigvault:{namespace}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<i64>(&mut connection)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn failures_spread_over_two_nodes_block_the_address_on_both() {
    let namespace = format!("test-auth-{}-spread", std::process::id());
    delete_namespace(&namespace).await;
    let a = node("shared-a", shared(redis_url(), &namespace, OnRedisError::Deny)).await;
    let b = node("shared-b", shared(redis_url(), &namespace, OnRedisError::Deny)).await;
    let ip: IpAddr = "198.51.100.7".parse().unwrap();
    let other: IpAddr = "198.51.100.8".parse().unwrap();
    // Three distinct wrong tokens, the first two through `a`, the third through `b`: neither
    // node alone saw three.
    for (auth, token) in [(&a.auth, "svt_wrong-one-1234"), (&a.auth, "svt_wrong-two-1234")] {
        assert!(matches!(
            auth.authenticate(Some(&bearer(token)), Some(ip)).await,
            Err(AuthError::Invalid)
        ));
    }
    assert!(
        b.auth.authenticate(Some(&bearer(ROOT)), Some(ip)).await.is_ok(),
        "two so far"
    );
    let _ = b.auth.authenticate(Some(&bearer("svt_wrong-three-12")), Some(ip)).await;
    for auth in [&a.auth, &b.auth] {
        assert!(matches!(
            auth.authenticate(Some(&bearer(ROOT)), Some(ip)).await,
            Err(AuthError::RateLimited(60))
        ));
        assert!(auth.authenticate(Some(&bearer(ROOT)), Some(other)).await.is_ok());
    }
    // One credential failing on both nodes blocks that credential only.
    for auth in [&a.auth, &b.auth, &a.auth] {
        let _ = auth.authenticate(None, Some(other)).await;
    }
    assert!(matches!(
        b.auth.authenticate(None, Some(other)).await,
        Err(AuthError::RateLimited(60))
    ));
    assert!(a.auth.authenticate(Some(&bearer(ROOT)), Some(other)).await.is_ok());
    // The windows end by the nodes' clocks.
    for clock in [&a.clock, &b.clock] {
        clock.advance(time::Duration::seconds(61));
    }
    assert!(a.auth.authenticate(Some(&bearer(ROOT)), Some(ip)).await.is_ok());
    delete_namespace(&namespace).await;
}

#[tokio::test]
async fn an_unreachable_redis_refuses_quickly_under_deny_and_counts_locally_under_local() {
    let ip: IpAddr = "198.51.100.9".parse().unwrap();
    let down = "redis://127.0.0.1:1".to_owned();
    let deny = node("down-deny", shared(down.clone(), "down", OnRedisError::Deny)).await;
    let started = Instant::now();
    assert!(matches!(
        deny.auth.authenticate(Some(&bearer(ROOT)), Some(ip)).await,
        Err(AuthError::RateLimited(1))
    ));
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    assert!(
        deny.auth.authenticate(Some(&bearer(ROOT)), None).await.is_ok(),
        "no source address: nothing to limit"
    );

    let local = node("down-local", shared(down, "down", OnRedisError::Local)).await;
    assert!(local.auth.authenticate(Some(&bearer(ROOT)), Some(ip)).await.is_ok());
    for i in 0..3 {
        let token = format!("svt_wrong-token-{i:04}");
        let _ = local.auth.authenticate(Some(&bearer(&token)), Some(ip)).await;
    }
    assert!(
        matches!(
            local.auth.authenticate(Some(&bearer(ROOT)), Some(ip)).await,
            Err(AuthError::RateLimited(60))
        ),
        "counted by this node's own limiter"
    );
}
