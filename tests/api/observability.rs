//! `[log] format = "json"` and `[metrics] listen`, on the real binary: every log line is one
//! JSON object, the access lines carry the request id, and no token, key material, message or
//! secret reaches the log in any encoding (searched as the dump tests search); the scraper's
//! listener serves `GET /metrics` without a token and nothing else.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ROOT_TOKEN, b64, encodings, found_needles, random_bytes, spawn_dev, sqlite_only, stderr_log, temp_dir,
};

#[tokio::test]
async fn json_logs_carry_request_ids_and_no_secret_and_the_scraper_listener_serves_only_metrics() {
    sqlite_only!("runs `sigvault dev`, whose store is SQLite in its data dir whatever the suite's store");
    let data_dir = temp_dir("json-logs");
    let dev = spawn_dev(
        &data_dir,
        &[
            ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN),
            ("SIGVAULT_LOG__FORMAT", "json"),
            ("SIGVAULT_LOG", "sigvault=info,warn"),
            ("SIGVAULT_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    let metrics_url = dev
        .stdout_lines
        .iter()
        .find_map(|l| l.strip_prefix("metrics on "))
        .unwrap_or_else(|| panic!("a `metrics on` line: {:?}", dev.stdout_lines))
        .to_owned();

    // Secrets of every kind cross the API.
    let material = random_bytes(48);
    let message = b"a message the log must not hold, 0123456789".to_vec();
    let r = dev
        .request(
            Method::POST,
            "/v1/keys/logged/import",
            ROOT_TOKEN,
            Some(json!({"key_material": b64(&material), "algorithm": "hmac-sha256"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = dev
        .request(
            Method::POST,
            "/v1/keys/logged/sign",
            ROOT_TOKEN,
            Some(json!({"message": b64(&message)})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = dev
        .request(
            Method::POST,
            "/v1/auth/tokens",
            ROOT_TOKEN,
            Some(json!({"principal": "logged-svc", "groups": ["service"]})),
        )
        .await;
    let token = r.body["token"].as_str().expect("a token").to_owned();
    let r = dev
        .request(
            Method::POST,
            "/v1/credentials",
            ROOT_TOKEN,
            Some(json!({"principal": "logged-svc"})),
        )
        .await;
    let secret = r.body["secret_access_key"].as_str().expect("a secret").to_owned();
    let wrong_token = "svt_a-wrong-token-that-must-not-be-logged-0000";
    let r = dev.request(Method::GET, "/v1/keys", wrong_token, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The scraper's listener: no token, metrics only.
    let client = reqwest::Client::new();
    let r = client.get(&metrics_url).send().await.expect("scrape");
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("page");
    assert!(
        page.contains(r#"sigvault_http_requests_total{route="/v1/keys/{name}/sign",method="POST",code="200"} 1"#),
        "{page}"
    );
    let base = metrics_url.trim_end_matches("/metrics");
    for (method, path) in [
        (Method::GET, "/v1/keys"),
        (Method::POST, "/metrics"),
        (Method::GET, "/v1/sys/ping"),
    ] {
        let r = client
            .request(method.clone(), format!("{base}{path}"))
            .bearer_auth(ROOT_TOKEN)
            .send()
            .await
            .expect("sent");
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{method} {path} on the scraper's listener"
        );
    }
    // The main listener's /metrics still needs a token.
    let r = client.get(dev.url("/metrics")).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    dev.stop();

    let log = std::fs::read_to_string(stderr_log(&data_dir)).expect("the log");
    let mut access = 0;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(event["level"].is_string() && event["timestamp"].is_string(), "{line}");
        if event["target"] == "sigvault::access" {
            access += 1;
            assert!(
                event["request_id"].as_str().is_some_and(|id| !id.is_empty()),
                "an access line names its request: {line}"
            );
            assert!(event["status"].is_u64(), "{line}");
        }
    }
    assert!(access >= 6, "one access line per request: {access}\n{log}");
    let mut needles = encodings("key material", &material);
    needles.extend(encodings("message", &message));
    needles.extend(encodings("root token", ROOT_TOKEN.as_bytes()));
    needles.extend(encodings("caller token", token.as_bytes()));
    needles.extend(encodings("wrong token", wrong_token.as_bytes()));
    needles.extend(encodings("credential secret", secret.as_bytes()));
    let hits = found_needles(&[("log", log.as_bytes())], &needles);
    assert!(hits.is_empty(), "secrets in the log: {hits:?}");
}
