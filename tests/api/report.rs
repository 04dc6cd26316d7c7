//! `GET /v1/reports/compliance`, black-box: the JSON report after a scenario that ages keys
//! past the cryptoperiod with the manual clock (exact findings and counts, and the shape the
//! OpenAPI document gives), the refusals, the HTML page's self-containment and escaping, and
//! that the page renders in headless Chromium (a screenshot is kept under the target dir).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::timefmt::rfc3339;
use time::{Duration, OffsetDateTime};

use crate::helpers::{ROOT_TOKEN, TestApp, b64, spawn_app, temp_dir};

/// Printable and without spaces, so a valid owner — and markup all the same.
const HOSTILE_OWNER: &str = r#"<b>x</b>&'""#;
const HOSTILE_TAG: &str = "<i>ops</i>";
/// Where Debian's `chromium` package puts its launcher.
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMIUM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The manual clock's start (helpers' `spawn_app_in`) plus `days`, as the API writes it.
fn day(days: i64) -> String {
    let start = OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("time");
    rfc3339(start + Duration::days(days))
}

/// Five keys at day 400 of the clock:
/// - `alpha`, created on day 0 and used then: over-age;
/// - `bravo`, imported on day 0 by a hostile owner, never used, rotated on day 400 and then
///   set to rotate automatically every 30 days: fresh, next rotation on day 430;
/// - `charlie`, created on day 400 and disabled (with a 90-day period it is not rotated on); `delta`, created on day 400 and scheduled
///   for deletion: both never used;
/// - `echo`, created and used on day 50: due for rotation on day 415, within 30 days.
async fn scenario(app: &TestApp) {
    app.create_key("alpha").await;
    let r = app
        .post(
            "/v1/keys/bravo/import",
            json!({
                "key_material": b64(&[7u8; 64]),
                "algorithm": "hmac-sha512",
                "owner": HOSTILE_OWNER,
                "tags": {"team": HOSTILE_TAG},
            }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (signature, _) = app.sign("alpha", b"payload").await;
    let verified = app.verify("alpha", b"payload", &signature).await;
    assert_eq!(verified.body["valid"], true, "{}", verified.body);

    app.clock.advance(Duration::days(50));
    app.create_key("echo").await;
    app.sign("echo", b"payload").await;

    app.clock.advance(Duration::days(350));
    let r = app.post("/v1/keys/bravo/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = app.patch("/v1/keys/bravo", json!({"auto_rotate_period": "30d"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.create_key("charlie").await;
    let r = app
        .patch(
            "/v1/keys/charlie",
            json!({"state": "disabled", "auto_rotate_period": "90d"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.create_key("delta").await;
    let r = app.delete("/v1/keys/delta").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

/// The events of the audited requests [`scenario`] makes, all as `root`: 12 requests, 9 of
/// them changes that also write an intent.
const SCENARIO_EVENTS: u64 = 21;

/// A key row as the report should show it.
fn row(name: &str, algorithm: &str, owner: &str, state: &str, created: i64, latest: (u32, i64)) -> Value {
    let now = 400;
    let (latest_version, latest_created) = latest;
    json!({
        "name": name,
        "algorithm": algorithm,
        "owner": owner,
        "tags": {},
        "state": state,
        "created_at": day(created),
        "age_days": now - created,
        "version_count": latest_version,
        "latest_version": latest_version,
        "latest_version_created_at": day(latest_created),
        "latest_version_age_days": now - latest_created,
        "last_used_at": null,
        "sign_count": 0,
        "verify_count": 0,
        "rotation_due_at": day(latest_created + 365),
        "auto_rotate_period": null,
        "next_auto_rotation_at": null,
        "over_age": false,
        "due_within_30_days": false,
        "never_used": true,
    })
}

fn expected_keys() -> Value {
    let mut alpha = row("alpha", "hmac-sha256", "root", "enabled", 0, (1, 0));
    alpha["last_used_at"] = json!(day(0));
    alpha["sign_count"] = json!(1);
    alpha["verify_count"] = json!(1);
    alpha["over_age"] = json!(true);
    alpha["never_used"] = json!(false);

    let mut bravo = row("bravo", "hmac-sha512", HOSTILE_OWNER, "enabled", 0, (2, 400));
    bravo["tags"] = json!({"team": HOSTILE_TAG});
    bravo["auto_rotate_period"] = json!("30d");
    bravo["next_auto_rotation_at"] = json!(day(430));

    let mut charlie = row("charlie", "hmac-sha256", "root", "disabled", 400, (1, 400));
    charlie["auto_rotate_period"] = json!("90d");
    let delta = row("delta", "hmac-sha256", "root", "pending_deletion", 400, (1, 400));

    let mut echo = row("echo", "hmac-sha256", "root", "enabled", 50, (1, 50));
    echo["last_used_at"] = json!(day(50));
    echo["sign_count"] = json!(1);
    echo["due_within_30_days"] = json!(true);
    echo["never_used"] = json!(false);

    json!([alpha, bravo, charlie, delta, echo])
}

async fn report_json(app: &TestApp) -> Value {
    let r = app.get("/v1/reports/compliance").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

#[tokio::test]
async fn the_report_lists_every_key_with_its_findings_and_exact_counts() {
    let app = spawn_app().await;
    scenario(&app).await;

    let report = report_json(&app).await;
    let expected = json!({
        "generated_at": day(400),
        "cryptoperiod": "365d",
        "cryptoperiod_days": 365,
        "summary": {"keys": {
            "total": 5, "enabled": 3, "disabled": 1, "pending_deletion": 1,
            "over_age": 1, "never_used": 3, "due_within_30_days": 1,
        },
            "credentials": {
                "total": 0, "active": 0, "inactive": 0, "over_age": 0, "never_used": 0, "due_within_30_days": 0,
            },
            "apikeys": {
                "total": 0, "enabled": 0, "disabled": 0, "revoked": 0, "expired": 0,
                "over_age": 0, "never_used": 0, "due_within_30_days": 0,
            }},
        "keys": expected_keys(),
        "credentials": [],
        "apikeys": [],
        "principals": [{"principal": "root", "events": SCENARIO_EVENTS}],
    });
    for (i, (got, want)) in report["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .zip(expected["keys"].as_array().expect("keys"))
        .enumerate()
    {
        assert_eq!(got, want, "key {i}");
    }
    assert_eq!(report, expected);

    // `?format=json` is the default spelled out; reading the report was itself recorded.
    let again = app.get("/v1/reports/compliance?format=json").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(
        again.body["principals"],
        json!([{"principal": "root", "events": SCENARIO_EVENTS + 1}])
    );
    let events = app.get("/v1/audit/events?action=ReadComplianceReport&limit=10").await;
    assert_eq!(events.status, StatusCode::OK, "{}", events.body);
    let recorded: Vec<(&Value, &Value, &Value)> = events.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (&e["principal"], &e["resource"], &e["outcome"]))
        .collect();
    let one = (&json!("root"), &json!("report:compliance"), &json!("ok"));
    assert_eq!(recorded, vec![one, one]);
}

#[tokio::test]
async fn an_empty_vault_has_an_empty_report() {
    let app = spawn_app().await;
    let report = report_json(&app).await;
    assert_eq!(report["keys"], json!([]));
    assert_eq!(
        report["summary"]["keys"],
        json!({"total": 0, "enabled": 0, "disabled": 0, "pending_deletion": 0,
               "over_age": 0, "never_used": 0, "due_within_30_days": 0})
    );
    assert_eq!(report["principals"], json!([]));
    assert_eq!(report["apikeys"], json!([]));
    assert_eq!(report["summary"]["apikeys"]["total"], 0);
    assert_eq!(report["generated_at"], day(0));
}

// ----- API keys ----------------------------------------------------------------------------

/// `POST /v1/apikeys` as root; returns the key and its id.
async fn create_api_key(app: &TestApp, body: Value) -> (String, String) {
    let r = app.post("/v1/apikeys", body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let field = |name: &str| r.body[name].as_str().expect(name).to_owned();
    (field("key"), field("id"))
}

#[tokio::test]
async fn the_report_lists_api_keys_with_age_last_use_and_expiry_but_never_a_key() {
    let app = spawn_app().await;
    let in_an_hour = rfc3339(OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("time") + Duration::hours(1));
    let (used_key, used) = create_api_key(&app, json!({"principal": "p"})).await;
    let (expiring_key, expiring) = create_api_key(&app, json!({"principal": "p", "expires_at": in_an_hour})).await;
    let r = app.post("/v1/apikeys/verify", json!({"key": used_key})).await;
    assert_eq!(
        (r.status, &r.body["code"]),
        (StatusCode::OK, &json!("VALID")),
        "{}",
        r.body
    );
    // Not flushed: the report must still see this node's last use.
    app.clock.advance(Duration::days(400));

    let report = report_json(&app).await;
    let row = |id: &str, last_used: Value, expires: Value, expired: bool| {
        json!({
            "id": id,
            "prefix": "sk",
            "principal": "p",
            "state": "enabled",
            "created_at": day(0),
            "age_days": 400,
            "last_used_at": last_used,
            "expires_at": expires,
            "expired": expired,
            "rotation_due_at": day(365),
            "over_age": true,
            "due_within_30_days": false,
            "never_used": last_used.is_null(),
        })
    };
    let mut expected = vec![
        row(&used, json!(day(0)), Value::Null, false),
        row(&expiring, Value::Null, json!(in_an_hour), true),
    ];
    expected.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(report["apikeys"], json!(expected), "in id order");
    assert_eq!(
        report["summary"]["apikeys"],
        json!({"total": 2, "enabled": 2, "disabled": 0, "revoked": 0, "expired": 1,
               "over_age": 2, "never_used": 1, "due_within_30_days": 0})
    );
    let doc: Value = serde_json::from_str(DOCUMENT).expect("the OpenAPI document is JSON");
    check_against(&doc, "ComplianceReport", &report);

    let text = report.to_string();
    let page = report_html(&app).await;
    for key in [&used_key, &expiring_key] {
        assert!(!text.contains(key.as_str()), "the JSON report contains an API key");
        assert!(!page.contains(key.as_str()), "the HTML report contains an API key");
    }
    for id in [&used, &expiring] {
        assert!(
            page.contains(&format!("<span class=\"name\">{id}</span>")),
            "{id} not in the page"
        );
    }
    assert!(page.contains("<h2>API keys"));
}

// ----- the JSON is what the OpenAPI document describes ----------------------------------

const DOCUMENT: &str = include_str!("../../src/api/openapi.json");

/// Every required field is present and every field present is documented, recursively
/// through the report's own object schemas.
fn check_against(doc: &Value, schema_name: &str, value: &Value) {
    let schema = &doc["components"]["schemas"][schema_name];
    let properties = schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("{schema_name} has properties"));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{schema_name}: not an object: {value}"));
    for field in schema["required"].as_array().expect("required") {
        let field = field.as_str().expect("field names are strings");
        assert!(
            object.contains_key(field),
            "{schema_name}.{field} is missing in {value}"
        );
    }
    for (field, sub) in object {
        let documented = properties
            .get(field)
            .unwrap_or_else(|| panic!("{schema_name}.{field} is sent but not documented"));
        let nested = |v: &Value| {
            v["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .filter(|n| doc["components"]["schemas"][*n]["type"] == "object" && *n != "Tags")
                .map(str::to_owned)
        };
        if let Some(inner) = nested(documented) {
            check_against(doc, &inner, sub);
        } else if let Some(inner) = nested(&documented["items"]) {
            for item in sub.as_array().expect("an array") {
                check_against(doc, &inner, item);
            }
        }
    }
}

#[tokio::test]
async fn the_json_report_is_the_documented_compliance_report() {
    let app = spawn_app().await;
    scenario(&app).await;
    let doc: Value = serde_json::from_str(DOCUMENT).expect("the OpenAPI document is JSON");
    let report = report_json(&app).await;
    check_against(&doc, "ComplianceReport", &report);
    let op = &doc["paths"]["/v1/reports/compliance"]["get"];
    assert!(op["responses"]["200"]["content"].get("text/html").is_some());
    assert_eq!(op["parameters"][0]["schema"]["enum"], json!(["json", "html"]));
}

// ----- refusals ---------------------------------------------------------------------------

#[tokio::test]
async fn the_report_needs_a_token_a_known_format_and_get() {
    let app = spawn_app().await;
    let r = app.send(Method::GET, "/v1/reports/compliance", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        "{}",
        r.body
    );
    for format in ["xml", "JSON", "", "html&format=json"] {
        let r = app.get(&format!("/v1/reports/compliance?format={format}")).await;
        assert_eq!(
            (r.status, r.code()),
            (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
            "format={format}: {}",
            r.body
        );
    }
    let r = app.post("/v1/reports/compliance", json!({})).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{}", r.body);
    let r = app
        .send(
            Method::GET,
            "/v1/reports/compliance",
            Some(ROOT_TOKEN),
            Some(b"{}".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "a body is refused: {}", r.body);
}

// ----- HTML -------------------------------------------------------------------------------

/// `GET …?format=html`: checks the headers and returns the page.
pub(crate) async fn report_html(app: &TestApp) -> String {
    let resp = app
        .client
        .get(app.url("/v1/reports/compliance?format=html"))
        .bearer_auth(ROOT_TOKEN)
        .send()
        .await
        .expect("request sent");
    assert_eq!(resp.status(), StatusCode::OK);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("content-type").as_deref(), Some("text/html; charset=utf-8"));
    let csp = header("content-security-policy").expect("a Content-Security-Policy header");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert!(header("x-request-id").is_some());
    resp.text().await.expect("body")
}

#[tokio::test]
async fn the_html_report_is_self_contained_and_escapes_caller_data() {
    let app = spawn_app().await;
    scenario(&app).await;
    let page = report_html(&app).await;
    let lower = page.to_ascii_lowercase();

    assert!(lower.starts_with("<!doctype html>"));
    for forbidden in [
        "<script", "http://", "https://", "src=", "href=", "url(", "@import", "<link",
    ] {
        assert!(!lower.contains(forbidden), "the page contains `{forbidden}`");
    }
    // The hostile owner and tag appear only as text.
    assert!(
        page.contains("&lt;b&gt;x&lt;/b&gt;&amp;&#39;&quot;"),
        "owner not shown escaped"
    );
    assert!(page.contains("team=&lt;i&gt;ops&lt;/i&gt;"), "tag not shown escaped");
    assert!(!page.contains("<b>x</b>") && !page.contains("<i>ops"));

    // What a person reads: the time, the yardstick, every key, the findings, the chart.
    assert!(page.contains(&day(400)));
    assert!(page.contains("365d (365 days)"));
    for name in ["alpha", "bravo", "charlie", "delta", "echo"] {
        assert!(page.contains(&format!("<span class=\"name\">{name}</span>")), "{name}");
    }
    assert_eq!(page.matches("<tr class=\"over-age\">").count(), 1, "alpha only");
    assert_eq!(page.matches("<tr class=\"never-used\">").count(), 3);
    assert!(page.contains("<svg"));
    assert!(page.contains(&format!(">{SCENARIO_EVENTS}</td>")));
}

// ----- rendering in headless Chromium ------------------------------------------------------

fn chromium() -> PathBuf {
    let path = std::env::var_os("SIGVAULT_TEST_CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    assert!(
        path.is_file(),
        "headless Chromium is needed to render the compliance report and was not found at {}: install \
         Debian's `chromium` (`apt-get install -y --no-install-recommends chromium`; scripts/test.sh does) \
         or set SIGVAULT_TEST_CHROMIUM to a Chromium binary",
        path.display()
    );
    path
}

/// Screenshots `page` (a file) into `png` with a fresh profile; nothing is fetched.
async fn screenshot(page: &Path, png: &Path) {
    let profile = temp_dir("chromium-profile");
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,1600",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--screenshot={}", png.display()))
    .arg(format!("file://{}", page.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Its own process group, so a hung browser and its helpers can be stopped together.
    .process_group(0);
    let child = cmd.spawn().expect("start chromium");
    let pid = i32::try_from(child.id()).expect("pid");
    let waited = tokio::time::timeout(
        CHROMIUM_TIMEOUT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(joined) => joined.expect("join").expect("wait for chromium"),
        Err(_) => {
            // SAFETY: signalling the process group of the child started above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            panic!("chromium did not finish a screenshot within {CHROMIUM_TIMEOUT:?}");
        }
    };
    assert!(
        output.status.success() && png.is_file(),
        "chromium failed to screenshot {} ({}): {}",
        page.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn png_size(png: &Path) -> u64 {
    let bytes = std::fs::read(png).expect("read screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        png.display()
    );
    bytes.len() as u64
}

#[tokio::test]
async fn the_html_report_renders_in_headless_chromium() {
    chromium();
    let app = spawn_app().await;
    scenario(&app).await;
    let page = report_html(&app).await;

    let dir = temp_dir("compliance-report");
    let html = dir.join("compliance-report.html");
    let png = dir.join("compliance-report.png");
    std::fs::write(&html, &page).expect("save the page");
    let blank_html = dir.join("blank.html");
    let blank_png = dir.join("blank.png");
    std::fs::write(
        &blank_html,
        "<!DOCTYPE html><html><head><title>blank</title></head><body></body></html>",
    )
    .expect("save the blank page");

    screenshot(&blank_html, &blank_png).await;
    screenshot(&html, &png).await;
    let (blank, rendered) = (png_size(&blank_png), png_size(&png));
    println!(
        "compliance report screenshot: {} ({rendered} bytes; a blank page: {blank})",
        png.display()
    );
    // A blank 1280×1600 page compresses to a few KiB; text, tables and a chart do not.
    assert!(
        rendered > blank * 5 && rendered > 40_000,
        "the screenshot {} ({rendered} bytes) is hardly larger than a blank page ({blank} bytes)",
        png.display()
    );
}
