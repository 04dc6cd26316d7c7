//! The authenticator: root token, caller tokens, revocation, expiry and the failed-auth limit.

use super::*;
use crate::clock::ManualClock;
use crate::secret::SecretBytes;

pub(super) const ROOT: &str = "svt_0123456789abcdef";

pub(super) struct Fixture {
    pub(super) auth: Authenticator,
    pub(super) clock: Arc<ManualClock>,
    pub(super) _dir: PathGuard,
}

pub(super) struct PathGuard(std::path::PathBuf);
impl Drop for PathGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) async fn fixture(name: &str) -> Fixture {
    let dir = std::env::temp_dir().join(format!("sv-auth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = crate::store::open(&crate::store::StoreSettings::Sqlite { path: dir.join("db") })
        .await
        .unwrap();
    store
        .enable_row_integrity(Arc::new(crate::integrity::RowIntegrity::new(SecretBytes::from_slice(
            &[8u8; 32],
        ))))
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(time::macros::datetime!(2026-06-01 00:00 UTC)));
    let hasher = KeyedHasher::from_pepper(SecretBytes::from_slice(&[9u8; 32]));
    let hash = Authenticator::root_hash_of(&hasher, &SecretString::from(ROOT.to_owned()));
    let settings = AuthSettings {
        max_failures: 3,
        failure_window: time::Duration::minutes(1),
        max_token_ttl: time::Duration::days(30),
    };
    let auth = Authenticator::new(
        Arc::new(hasher),
        hash.to_vec(),
        store.clone(),
        store,
        clock.clone(),
        settings,
        crate::keys::cache::CacheSettings {
            ttl: time::Duration::hours(1),
            max_entries: 100,
            max_staleness: time::Duration::seconds(5),
        },
    );
    Fixture {
        auth,
        clock,
        _dir: PathGuard(dir),
    }
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn the_root_token_authenticates_as_root_in_admin_before_and_after_forgetting() {
    let f = fixture("root").await;
    let a = &f.auth;
    let root = Principal::root();
    assert_eq!(*a.authenticate(Some(&bearer(ROOT)), None).await.unwrap(), root);
    assert_eq!(
        *a.authenticate(Some("bearer   svt_0123456789abcdef "), None)
            .await
            .unwrap(),
        root
    );
    a.forget_all();
    assert_eq!(*a.authenticate(Some(&bearer(ROOT)), None).await.unwrap(), root);
    assert!(matches!(
        a.authenticate(Some("Bearer svt_0123456789abcdeX"), None).await,
        Err(AuthError::Invalid)
    ));
}

#[tokio::test]
async fn a_revoked_root_token_stops_authenticating() {
    let f = fixture("root-revoked").await;
    let a = &f.auth;
    a.authenticate(Some(&bearer(ROOT)), None).await.unwrap();
    assert!(a.root_is_active());
    a.revoke_root().await.unwrap();
    assert!(!a.root_is_active());
    assert!(
        matches!(a.authenticate(Some(&bearer(ROOT)), None).await, Err(AuthError::Invalid)),
        "not even from the memory of verified tokens"
    );
    assert_eq!(a.system.get_value(ROOT_TOKEN_VALUE).await.unwrap(), Some(vec![]));
}

#[tokio::test]
async fn other_tokens_and_schemes_are_refused() {
    let f = fixture("schemes").await;
    let a = &f.auth;
    assert!(matches!(a.authenticate(None, None).await, Err(AuthError::Missing)));
    assert!(matches!(
        a.authenticate(Some("Basic svt_0123456789abcdef"), None).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        a.authenticate(Some("Bearer"), None).await,
        Err(AuthError::Missing)
    ));
    assert!(matches!(
        a.authenticate(Some(&bearer(&"x".repeat(300))), None).await,
        Err(AuthError::Invalid)
    ));
}

#[tokio::test]
async fn a_named_token_authenticates_until_it_expires_or_is_revoked() {
    let f = fixture("named").await;
    let a = &f.auth;
    let new = NewToken {
        principal: "payments".into(),
        groups: vec!["service".into()],
        ttl: Some(time::Duration::hours(1)),
        description: None,
    };
    let (record, token) = a.create_token(new.clone(), time::Duration::days(30)).await.unwrap();
    assert!(token.expose_secret().starts_with(TOKEN_PREFIX));
    assert_ne!(record.hash, Sha256::digest(token.expose_secret().as_bytes()).to_vec());
    let who = a
        .authenticate(Some(&bearer(token.expose_secret())), None)
        .await
        .unwrap();
    assert_eq!(
        *who,
        Principal {
            name: "payments".into(),
            groups: vec!["service".into()],
            via: Via::Token
        }
    );
    f.clock.advance(time::Duration::minutes(61));
    assert!(
        matches!(
            a.authenticate(Some(&bearer(token.expose_secret())), None).await,
            Err(AuthError::Expired)
        ),
        "expiry holds for a remembered token too"
    );

    let (second, token2) = a
        .create_token(NewToken { ttl: None, ..new }, time::Duration::days(30))
        .await
        .unwrap();
    a.authenticate(Some(&bearer(token2.expose_secret())), None)
        .await
        .unwrap();
    a.revoke_token(&second.id).await.unwrap();
    assert!(matches!(
        a.authenticate(Some(&bearer(token2.expose_secret())), None).await,
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        a.revoke_token("tok_missing").await,
        Err(TokenError::NotFound(_))
    ));
}

#[tokio::test]
async fn bad_token_requests_are_refused() {
    let f = fixture("bad").await;
    let max = time::Duration::days(30);
    let new = |principal: &str, groups: &[&str], ttl: Option<time::Duration>| NewToken {
        principal: principal.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        ttl,
        description: None,
    };
    for bad in [
        new("root", &[], None),
        new("-", &[], None),
        new("", &[], None),
        new("a\nb", &[], None),
        new("ok", &["bad group"], None),
        new("ok", &["dup", "dup"], None),
        new("ok", &[], Some(time::Duration::days(31))),
        new("ok", &[], Some(time::Duration::ZERO)),
    ] {
        assert!(
            matches!(f.auth.create_token(bad.clone(), max).await, Err(TokenError::Invalid(_))),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn an_address_that_fails_with_too_many_distinct_tokens_is_refused_until_the_window_ends() {
    let f = fixture("limit").await;
    let a = &f.auth;
    let attacker: IpAddr = "192.0.2.7".parse().unwrap();
    let other: IpAddr = "192.0.2.8".parse().unwrap();
    for i in 0..3 {
        assert!(matches!(
            a.authenticate(Some(&bearer(&format!("svt_guess-guess-{i}"))), Some(attacker))
                .await,
            Err(AuthError::Invalid)
        ));
    }
    assert!(
        matches!(
            a.authenticate(Some(&bearer(ROOT)), Some(attacker)).await,
            Err(AuthError::RateLimited(60))
        ),
        "even a right token is not looked at"
    );
    assert!(matches!(
        a.authenticate(None, Some(attacker)).await,
        Err(AuthError::RateLimited(60))
    ));
    a.authenticate(Some(&bearer(ROOT)), Some(other)).await.unwrap();
    f.clock.advance(time::Duration::seconds(61));
    a.authenticate(Some(&bearer(ROOT)), Some(attacker)).await.unwrap();
}

#[tokio::test]
async fn one_wrong_token_repeated_is_refused_alone_and_the_right_one_still_works() {
    let f = fixture("limit-one").await;
    let a = &f.auth;
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let wrong = bearer("svt_stale-token-from-a-script");
    for i in 0..20 {
        let result = a.authenticate(Some(&wrong), Some(ip)).await;
        if i < 3 {
            assert!(matches!(result, Err(AuthError::Invalid)), "failure {i}: {result:?}");
        } else {
            assert!(
                matches!(result, Err(AuthError::RateLimited(60))),
                "failure {i}: {result:?}"
            );
        }
    }
    assert_eq!(
        *a.authenticate(Some(&bearer(ROOT)), Some(ip)).await.unwrap(),
        Principal::root(),
        "the right token from the same address"
    );
    assert!(
        matches!(
            a.authenticate(Some("  Bearer svt_stale-token-from-a-script "), Some(ip))
                .await,
            Err(AuthError::RateLimited(60))
        ),
        "the header is compared trimmed"
    );
    f.clock.advance(time::Duration::seconds(61));
    assert!(
        matches!(a.authenticate(Some(&wrong), Some(ip)).await, Err(AuthError::Invalid)),
        "the window ended: looked at again"
    );
}

#[tokio::test]
async fn a_repeated_token_counts_once_toward_the_address_limit() {
    let f = fixture("limit-mixed").await;
    let a = &f.auth;
    let ip: IpAddr = "192.0.2.9".parse().unwrap();
    for _ in 0..5 {
        let _ = a.authenticate(Some("Bearer svt_wrong-wrong-wrong"), Some(ip)).await;
    }
    for _ in 0..5 {
        let _ = a.authenticate(None, Some(ip)).await;
    }
    assert!(matches!(
        a.authenticate(None, Some(ip)).await,
        Err(AuthError::RateLimited(60))
    ));
    a.authenticate(Some(&bearer(ROOT)), Some(ip))
        .await
        .expect("two distinct failing credentials: under the limit of three");
    assert!(matches!(
        a.authenticate(Some("Bearer svt_third-wrong-token"), Some(ip)).await,
        Err(AuthError::Invalid)
    ));
    assert!(
        matches!(
            a.authenticate(Some(&bearer(ROOT)), Some(ip)).await,
            Err(AuthError::RateLimited(60))
        ),
        "the third distinct credential blocks the address"
    );
}

#[test]
fn generated_tokens_are_prefixed_and_distinct() {
    let a = generate_token().unwrap();
    let b = generate_token().unwrap();
    assert!(a.expose_secret().starts_with("svt_"));
    assert_eq!(a.expose_secret().len(), 4 + 43);
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert!(validate_root_token(a.expose_secret()).is_ok());
    assert!(validate_root_token("short").is_err());
    assert!(validate_root_token("has a space in it!!").is_err());
}

#[tokio::test]
async fn a_token_revoked_by_another_node_is_refused_here_within_the_staleness_bound() {
    let f = fixture("stale").await;
    let a = &f.auth;
    let new = NewToken {
        principal: "payments".into(),
        groups: vec!["service".into()],
        ttl: None,
        description: None,
    };
    let (record, token) = a.create_token(new, time::Duration::days(30)).await.unwrap();
    let header = bearer(token.expose_secret());
    a.authenticate(Some(&header), None).await.unwrap();
    // Another node sharing the store revokes it: this node's memory is not told.
    a.store
        .revoke_token(&record.id, crate::clock::Clock::now_ms(f.clock.as_ref()))
        .await
        .unwrap()
        .unwrap();
    f.clock.advance(time::Duration::seconds(4));
    assert!(
        a.authenticate(Some(&header), None).await.is_ok(),
        "served from memory within cache.max_staleness (5 s here)"
    );
    f.clock.advance(time::Duration::seconds(1));
    assert!(matches!(
        a.authenticate(Some(&header), None).await,
        Err(AuthError::Revoked)
    ));
}
