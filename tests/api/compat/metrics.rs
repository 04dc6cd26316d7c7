//! `GET /metrics`: parsed by prometheus_client's text-format parser (the Prometheus Python
//! client), its counters moving as the test's requests say, and read only by whom the
//! policies allow (admin and auditor).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::run_client;
use crate::helpers::{ROOT_TOKEN, TestApp, b64, spawn_app};

/// Parses the page with prometheus_client and prints every sample as
/// `{"name","labels","value"}`; a page the parser refuses fails the script.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
types = {}
for family in text_string_to_metric_families(sys.stdin.read() if sys.argv[1] == "-" else sys.argv[1]):
    types[family.name] = family.type
    for s in family.samples:
        samples.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps({"samples": samples, "types": types}))
"#;

async fn scrape(app: &TestApp, token: &str) -> Value {
    let r = reqwest::Client::new()
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::OK);
    let content_type = r.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = r.text().await.expect("a body");
    serde_json::from_str(&run_client(PARSE, vec![text]).await).expect("the parser's JSON")
}

/// The value of the sample `name` whose labels include `labels` (0 when there is none).
fn sample(page: &Value, name: &str, labels: &Value) -> f64 {
    page["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| {
            labels
                .as_object()
                .expect("labels")
                .iter()
                .all(|(k, v)| &s["labels"][k] == v)
        })
        .map(|s| s["value"].as_f64().expect("a number"))
        .sum()
}

#[tokio::test]
async fn metrics_parse_with_prometheus_client_and_count_the_requests_made() {
    let app = spawn_app().await;
    app.create_key("metered").await;
    let message = b64(b"counted");
    for _ in 0..3 {
        let r = app.post("/v1/keys/metered/sign", json!({"message": message})).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app
        .post(
            "/v1/keys/metered/verify",
            json!({"message": message, "signature": b64(&[0; 32])}),
        )
        .await;
    assert_eq!(r.body["valid"], false);
    let r = app.get("/v1/keys/no-such-key").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let page = scrape(&app, ROOT_TOKEN).await;
    let sign = json!({"route": "/v1/keys/{name}/sign", "method": "POST", "code": "200"});
    assert_eq!(sample(&page, "sigvault_http_requests_total", &sign), 3.0, "{page}");
    assert_eq!(
        sample(
            &page,
            "sigvault_http_requests_total",
            &json!({"route": "/v1/keys/{name}", "method": "GET", "code": "404"})
        ),
        1.0
    );
    assert_eq!(
        sample(
            &page,
            "sigvault_http_request_duration_seconds_count",
            &json!({"route": "/v1/keys/{name}/sign"})
        ),
        3.0
    );
    assert_eq!(
        sample(
            &page,
            "sigvault_http_request_duration_seconds_bucket",
            &json!({"route": "/v1/keys/{name}/sign", "le": "+Inf"})
        ),
        3.0
    );
    assert_eq!(page["types"]["sigvault_http_request_duration_seconds"], "histogram");
    assert_eq!(page["types"]["sigvault_http_requests"], "counter");
    assert!(
        sample(
            &page,
            "sigvault_kek_calls_total",
            &json!({"provider": "pkcs11", "operation": "wrap", "outcome": "ok"})
        ) >= 1.0,
        "creating the key wrapped its DEK with the HSM"
    );
    let secret_lookups = sample(&page, "sigvault_key_cache_lookups_total", &json!({"cache": "secret"}));
    assert!(
        secret_lookups >= 4.0,
        "three signs and a verify looked up the secret: {secret_lookups}"
    );
    assert_eq!(sample(&page, "sigvault_store_up", &json!({})), 1.0);
    let max = sample(&page, "sigvault_store_pool_connections", &json!({"state": "max"}));
    assert!(max >= 1.0, "the store's pools are shown: {max}");
    assert!(
        sample(&page, "sigvault_audit_sync_batch_events_count", &json!({})) >= 1.0,
        "the trail was synced"
    );

    // Two more, and the counter says five; the first scrape is counted too.
    for _ in 0..2 {
        app.post("/v1/keys/metered/sign", json!({"message": message})).await;
    }
    let page = scrape(&app, ROOT_TOKEN).await;
    assert_eq!(sample(&page, "sigvault_http_requests_total", &sign), 5.0);
    assert_eq!(
        sample(
            &page,
            "sigvault_http_requests_total",
            &json!({"route": "/metrics", "method": "GET", "code": "200"})
        ),
        1.0
    );
    let text = page.to_string();
    assert!(!text.contains("metered"), "no key name in the metrics");
}

#[tokio::test]
async fn metrics_are_read_by_admin_and_auditor_only_and_audited() {
    let app = spawn_app().await;
    let token = |groups: Value| {
        let app = &app;
        async move {
            let r = app
                .post("/v1/auth/tokens", json!({"principal": "someone", "groups": groups}))
                .await;
            r.body["token"].as_str().expect("a token").to_owned()
        }
    };
    let auditor = token(json!(["auditor"])).await;
    let service = token(json!(["service"])).await;
    let r = app.send(Method::GET, "/metrics", Some(&auditor), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.send(Method::GET, "/metrics", Some(&service), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "PERMISSION_DENIED");
    let r = app.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = app.send(Method::POST, "/metrics", Some(ROOT_TOKEN), None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let trail = std::fs::read_to_string(app.home.audit_file()).expect("the audit file");
    assert!(
        trail.contains(r#""action":"ReadMetrics""#),
        "reading the metrics is audited"
    );
}
