//! API keys' rate limits counted in Redis (`[ratelimit] backend = "redis"`): two services on
//! one store, each with its own connection to one Redis namespace, stand for two nodes.
//! Needs the Redis of `SIGVAULT_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::time::{Duration as StdDuration, Instant};

use time::Duration;

use super::*;
use crate::clock::ManualClock;
use crate::ratelimit::{Backend, OnRedisError, RateLimitSettings, RedisUrl};
use crate::secret::SecretBytes;
use crate::store::Store;
use zeroize::Zeroizing;

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
        redis_timeout: StdDuration::from_millis(300),
    })
    .unwrap()
}

struct Cluster {
    nodes: Vec<(ApiKeyService, Arc<ManualClock>)>,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One store, and a service per backend in `limits`, each with its own clock.
async fn cluster(name: &str, limits: Vec<RateLimitBackend>) -> Cluster {
    let dir = std::env::temp_dir().join(format!("sv-apikeys-shared-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store: Arc<dyn Store> = crate::store::open(&crate::store::StoreSettings::Sqlite { path: dir.join("db") })
        .await
        .unwrap();
    let integrity = crate::integrity::RowIntegrity::new(SecretBytes::from_slice(&[8u8; 32]));
    store.enable_row_integrity(Arc::new(integrity)).await.unwrap();
    let hasher = Arc::new(KeyedHasher::from_pepper(SecretBytes::from_slice(&[9u8; 32])));
    let cache = CacheSettings {
        ttl: Duration::hours(1),
        max_entries: 100,
        max_staleness: Duration::seconds(5),
    };
    let nodes = limits
        .into_iter()
        .map(|limits| {
            let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-06-01 00:00 UTC)));
            let service = ApiKeyService::new(
                store.clone(),
                Arc::clone(&hasher),
                clock.clone(),
                ApiKeySettings::default(),
                cache,
            )
            .with_rate_limits(limits);
            (service, clock)
        })
        .collect();
    Cluster { nodes, dir }
}

fn caller() -> Fingerprint {
    Fingerprint {
        source_ip: "203.0.113.5".into(),
        user_agent: "test".into(),
    }
}

/// A key limited to 5 verifications per 10 s.
async fn limited_key(service: &ApiKeyService) -> (String, Zeroizing<String>) {
    let (record, key) = service
        .create(NewApiKey {
            principal: "payments".into(),
            ratelimit: Some((5, Duration::seconds(10))),
            ..NewApiKey::default()
        })
        .await
        .unwrap();
    (record.id, key)
}

async fn redis_keys(namespace: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(format!("sigvault:{namespace}:*"))
        .query_async(&mut connection)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_key_verified_alternately_on_two_nodes_passes_its_limit_once_per_window() {
    let namespace = format!("test-apikeys-{}-alternate", std::process::id());
    let limits = |_| shared(redis_url(), &namespace, OnRedisError::Deny);
    let cluster = cluster("alternate", (0..2).map(limits).collect()).await;
    let (id, key) = limited_key(&cluster.nodes[0].0).await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let outcome = cluster.nodes[i % 2].0.verify(&key, &[], caller()).await.unwrap();
        codes.push((outcome.code, outcome.retry_after_ms));
    }
    let valid = codes.iter().filter(|(code, _)| *code == Code::Valid).count();
    assert_eq!(valid, 5, "{codes:?}");
    assert!(
        codes[5..].iter().all(|c| *c == (Code::RateLimited, Some(2000))),
        "{codes:?}"
    );
    for (_, clock) in &cluster.nodes {
        clock.advance(Duration::seconds(10));
    }
    let outcome = cluster.nodes[1].0.verify(&key, &[], caller()).await.unwrap();
    assert_eq!(outcome.code, Code::Valid, "a new window");
    assert_eq!(
        redis_keys(&namespace).await,
        vec![format!("sigvault:{namespace}:apikey:{id}")]
    );
    cluster.nodes[0].0.revoke(&id).await.unwrap();
    assert!(redis_keys(&namespace).await.is_empty(), "revoking deletes the bucket");
}

#[tokio::test]
async fn an_unreachable_redis_answers_rate_limited_under_deny_and_counts_locally_under_local() {
    let down = "redis://127.0.0.1:1".to_owned();
    let cluster = cluster(
        "down",
        vec![
            shared(down.clone(), "down", OnRedisError::Deny),
            shared(down, "down", OnRedisError::Local),
        ],
    )
    .await;
    let (_, key) = limited_key(&cluster.nodes[0].0).await;
    let started = Instant::now();
    let outcome = cluster.nodes[0].0.verify(&key, &[], caller()).await.unwrap();
    assert_eq!((outcome.code, outcome.retry_after_ms), (Code::RateLimited, Some(1000)));
    assert!(
        started.elapsed() < StdDuration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    let local = &cluster.nodes[1].0;
    for i in 0..5 {
        assert_eq!(
            local.verify(&key, &[], caller()).await.unwrap().code,
            Code::Valid,
            "{i}"
        );
    }
    assert_eq!(local.verify(&key, &[], caller()).await.unwrap().code, Code::RateLimited);
}
