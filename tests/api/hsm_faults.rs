//! The HSM failing under a running vault (issue 13), through the fault-injecting PKCS#11
//! module (`testing/pkcs11-fault`) in front of the real SoftHSM2: the vault is a `sigvault
//! dev` child process whose `kek.pkcs11.module` is the fault module, and the test commands
//! the faults through its control file.
//!
//! In every case a key that must be unwrapped (a *cold* key: created, never used, so its
//! secret is not in the cache) answers 503 `KEK_UNAVAILABLE` — never 500, never later than
//! the call timeout — while a key whose secret is cached keeps signing; and once the fault
//! clears, the same vault, not restarted, signs with cold keys again. The faults do to
//! SoftHSM2 what they mean (sessions closed, the token logged out), so recovering takes new
//! sessions and a new login: a vault that only retried would stay broken.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{DevProcess, FaultControl, ROOT_TOKEN, Reply, b64, spawn_dev, temp_dir};

/// Cold keys each test creates: more than the pool's four sessions, so signing with all of
/// them at once after a fault needs every session the pool reopened.
const COLD_KEYS: usize = 6;
/// How long a test waits for the vault to come back after a fault clears, and the longest any
/// single answer may take: liveness bounds far above the one-second retry interval and the
/// call timeouts used here, never a speed requirement.
const PATIENCE: Duration = Duration::from_secs(30);
const MESSAGE: &[u8] = b"an event to sign";

/// A vault on the fault module, with a warm key (its secret cached) and cold keys.
struct FaultyVault {
    dev: DevProcess,
    hsm: FaultControl,
    warm_signature: Value,
}

impl FaultyVault {
    async fn start(tag: &str, call_timeout: &str) -> Self {
        let home = temp_dir(tag);
        let hsm = FaultControl::new(home.join("pkcs11-fault.control"));
        let mut env: Vec<(&str, String)> = hsm.vault_env();
        env.push(("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN.to_owned()));
        env.push(("SIGVAULT_KEK__PKCS11__CALL_TIMEOUT", call_timeout.to_owned()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dev = spawn_dev(&home.join("data"), &env);
        let mut vault = Self {
            dev,
            hsm,
            warm_signature: Value::Null,
        };
        for name in std::iter::once("warm".to_owned()).chain((0..COLD_KEYS).map(cold)) {
            let r = vault.create_key(&name).await;
            assert_eq!(r.status, StatusCode::CREATED, "{name}: {}", r.body);
        }
        let r = vault.sign("warm").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        vault.warm_signature = r.body["signature"].clone();
        vault
    }

    async fn create_key(&self, name: &str) -> Reply {
        self.dev
            .request(
                Method::POST,
                "/v1/keys",
                ROOT_TOKEN,
                Some(json!({"name": name, "algorithm": "hmac-sha256"})),
            )
            .await
    }

    async fn sign(&self, name: &str) -> Reply {
        self.dev
            .request(
                Method::POST,
                &format!("/v1/keys/{name}/sign"),
                ROOT_TOKEN,
                Some(json!({"message": b64(MESSAGE)})),
            )
            .await
    }

    async fn health(&self) -> Reply {
        self.dev.request(Method::GET, "/v1/sys/health", ROOT_TOKEN, None).await
    }

    /// The warm key signs as before: its secret is in memory, the HSM is not asked.
    async fn assert_the_cached_key_signs(&self) {
        let r = self.sign("warm").await;
        assert_eq!(r.status, StatusCode::OK, "a cached key keeps signing: {}", r.body);
        assert_eq!(r.body["signature"], self.warm_signature);
    }

    /// Once the fault cleared: a cold key signs within [`PATIENCE`] (the first tries may
    /// meet the retry interval), then every cold key signs at once, all together.
    async fn assert_recovered(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let r = self.sign(&cold(0)).await;
            if r.status == StatusCode::OK {
                break;
            }
            assert_kek_unavailable(&r);
            assert!(
                Instant::now() < deadline,
                "the vault did not sign with a cold key within {PATIENCE:?} of the fault clearing: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let signs = (1..COLD_KEYS).map(|i| async move { self.sign(&cold(i)).await });
        for r in futures_util::future::join_all(signs).await {
            assert_eq!(r.status, StatusCode::OK, "every cold key signs again: {}", r.body);
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let r = self.health().await;
            if r.status == StatusCode::OK {
                assert_eq!(r.body["kek"], "ok", "{}", r.body);
                break;
            }
            assert!(Instant::now() < deadline, "health stays unavailable: {}", r.body);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn cold(i: usize) -> String {
    format!("cold-{i}")
}

/// 503 `KEK_UNAVAILABLE` with the generic message: the module's codes stay in the log.
#[track_caller]
fn assert_kek_unavailable(r: &Reply) {
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.code(), "KEK_UNAVAILABLE", "{}", r.body);
    assert_eq!(
        r.body["error"]["message"], "the key-encryption key is unavailable",
        "{}",
        r.body
    );
}

/// `C_UnwrapKey` fails with `code`: cold keys answer 503, the cached key signs, health says
/// the KEK is unavailable; cleared, the vault recovers.
async fn an_unwrap_failure_is_503_for_cold_keys_until_it_clears(tag: &str, code: &str) {
    let vault = FaultyVault::start(tag, "5s").await;
    vault.hsm.fail("C_UnwrapKey", code);

    for attempt in 0..3 {
        let started = Instant::now();
        let r = vault.sign(&cold(0)).await;
        assert_kek_unavailable(&r);
        assert!(started.elapsed() < PATIENCE, "attempt {attempt} answered in time");
    }
    vault.assert_the_cached_key_signs().await;
    let r = vault.health().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.body["kek"], "unavailable", "{}", r.body);

    vault.hsm.clear();
    vault.assert_recovered().await;
    vault.dev.stop();
}

#[tokio::test]
async fn a_removed_device_answers_503_for_cold_keys_and_the_vault_reopens_its_sessions_when_it_returns() {
    an_unwrap_failure_is_503_for_cold_keys_until_it_clears("hsm-removed", "CKR_DEVICE_REMOVED").await;
}

#[tokio::test]
async fn a_token_not_present_answers_503_for_cold_keys_and_the_vault_reopens_its_sessions_when_it_returns() {
    an_unwrap_failure_is_503_for_cold_keys_until_it_clears("hsm-absent", "CKR_TOKEN_NOT_PRESENT").await;
}

#[tokio::test]
async fn an_invalid_session_answers_503_for_a_cold_key_and_the_vault_opens_new_sessions() {
    an_unwrap_failure_is_503_for_cold_keys_until_it_clears("hsm-session", "CKR_SESSION_HANDLE_INVALID").await;
}

#[tokio::test]
async fn a_token_that_lost_its_login_answers_503_for_a_cold_key_and_the_vault_logs_in_again() {
    an_unwrap_failure_is_503_for_cold_keys_until_it_clears("hsm-login", "CKR_USER_NOT_LOGGED_IN").await;
}

#[tokio::test]
async fn a_hung_unwrap_answers_503_within_the_call_timeout_and_the_vault_recovers_when_it_returns() {
    let vault = FaultyVault::start("hsm-hang", "1s").await;
    vault.hsm.hang("C_UnwrapKey");

    // More requests at once than the pool has sessions and hung-call permits together.
    let started = Instant::now();
    let signs = (0..COLD_KEYS).chain(0..COLD_KEYS).map(|i| {
        let vault = &vault;
        async move { vault.sign(&cold(i)).await }
    });
    for r in futures_util::future::join_all(signs).await {
        assert_kek_unavailable(&r);
    }
    assert!(
        started.elapsed() < PATIENCE,
        "answered after the 1 s call timeout, not when the hang ends: {:?}",
        started.elapsed()
    );
    // The calls still hang inside the module; nothing else waits for them.
    vault.assert_the_cached_key_signs().await;
    let started = Instant::now();
    let r = vault.health().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.body["kek"], "unavailable", "{}", r.body);
    assert!(started.elapsed() < PATIENCE, "health answered in time");

    vault.hsm.clear();
    vault.assert_recovered().await;
    vault.dev.stop();
}

#[tokio::test]
async fn while_every_hsm_call_fails_only_cached_keys_sign_and_the_vault_comes_back_when_the_hsm_does() {
    let vault = FaultyVault::start("hsm-down", "5s").await;
    vault.hsm.fail("*", "CKR_DEVICE_REMOVED");

    let r = vault.create_key("created-while-down").await;
    assert_kek_unavailable(&r);
    for _ in 0..3 {
        assert_kek_unavailable(&vault.sign(&cold(0)).await);
    }
    vault.assert_the_cached_key_signs().await;
    let r = vault.health().await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.body["kek"], "unavailable", "{}", r.body);

    vault.hsm.clear();
    vault.assert_recovered().await;
    let r = vault.create_key("created-after").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = vault.sign("created-after").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    vault.dev.stop();
}
