//! A model of the trail for the listing tests: every audited request is noted with what
//! its event must say, so listings are compared with the model exactly, field by field; and
//! the mix of operations of the acceptance test that fills it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::Duration;

use super::NODE;
use crate::helpers::{Reply, TestApp};

const AGENT: &str = "sigvault-audit-tests/1.0";
pub(super) const WRONG_TOKEN: &str = "svt_not-the-root-token-000000000";

fn client(user_agent: Option<&str>) -> reqwest::Client {
    let builder = reqwest::Client::builder();
    match user_agent {
        Some(ua) => builder.user_agent(ua),
        None => builder,
    }
    .build()
    .expect("client")
}

/// What one audited request's event must say.
#[derive(Debug, Clone)]
pub(super) struct Op {
    pub(super) request_id: String,
    pub(super) minute: i64,
    pub(super) principal: &'static str,
    pub(super) action: &'static str,
    pub(super) resource: String,
    /// Checked for Sign and Verify only.
    pub(super) key_version: Option<u64>,
    pub(super) outcome: String,
    pub(super) user_agent: Option<String>,
    pub(super) secret_hmac: Option<String>,
}

/// The model: the audited requests in order, and the manual clock's minute (since start).
pub(super) struct Model {
    pub(super) ops: Vec<Op>,
    pub(super) minute: i64,
    pub(super) user_agent: Option<String>,
}

/// `time` of an event at `minute` minutes after the test clock's start (14:13:20 UTC).
fn time_at(minute: i64) -> String {
    let total = 13 + minute;
    format!("2026-09-21T{:02}:{:02}:20.000Z", 14 + total / 60, total % 60)
}

impl Model {
    pub(super) fn new() -> Self {
        Self {
            ops: Vec::new(),
            minute: 0,
            user_agent: Some(AGENT.into()),
        }
    }

    /// Moves the test clock one minute on, so every later event is later.
    pub(super) fn tick(&mut self, app: &TestApp) {
        app.clock.advance(Duration::minutes(1));
        self.minute += 1;
    }

    /// Notes the event `reply`'s request must have left, as root with outcome "ok" unless
    /// the reply is an error.
    pub(super) fn note(&mut self, r: &Reply, action: &'static str, resource: &str) -> &mut Op {
        let outcome = if r.status.is_success() {
            "ok".to_owned()
        } else {
            r.code().to_owned()
        };
        assert!(
            !outcome.is_empty(),
            "{action}: {} without an error code: {}",
            r.status,
            r.body
        );
        self.ops.push(Op {
            request_id: r.request_id.clone().expect("x-request-id"),
            minute: self.minute,
            principal: "root",
            action,
            resource: resource.to_owned(),
            key_version: None,
            outcome,
            user_agent: self.user_agent.clone(),
            secret_hmac: None,
        });
        self.ops.last_mut().expect("just pushed")
    }

    /// Notes the two events a change that reached its write-ahead leaves: its intent (outcome
    /// `intent`), then its outcome; `adjust` sets what both say beyond [`Model::note`].
    pub(super) fn note_change(&mut self, r: &Reply, action: &'static str, resource: &str, adjust: impl Fn(&mut Op)) {
        let mut outcome = self.note(r, action, resource).clone();
        adjust(&mut outcome);
        let mut intent = outcome.clone();
        intent.outcome = "intent".into();
        let last = self.ops.len() - 1;
        self.ops[last] = intent;
        self.ops.push(outcome);
    }

    /// The events the API must list for the ops `keep` selects, seq numbered from 1 over all ops.
    pub(super) fn expected(&self, keep: impl Fn(&Op) -> bool) -> Vec<Value> {
        self.ops
            .iter()
            .enumerate()
            .filter(|(_, op)| keep(op))
            .map(|(i, op)| {
                let mut e = json!({
                    "seq": i + 1,
                    "node": NODE,
                    "time": time_at(op.minute),
                    "request_id": op.request_id,
                    "principal": op.principal,
                    "action": op.action,
                    "resource": op.resource,
                    "decision": op.expected_decision(),
                    "policy": op.expected_policy(),
                    "outcome": op.outcome,
                    "source_ip": "127.0.0.1",
                    "user_agent": op.user_agent,
                    "secret_hmac": op.secret_hmac,
                });
                if matches!(op.action, "Sign" | "Verify") {
                    e["key_version"] = json!(op.key_version);
                }
                e
            })
            .collect()
    }
}

/// A listed event without its MAC (checked for form), and without `key_version` unless it
/// is a Sign or Verify event.
fn comparable(event: &Value) -> Value {
    let mut e = event.clone();
    let object = e.as_object_mut().expect("an event is an object");
    let mac = object.remove("mac").expect("a mac");
    let mac = mac.as_str().expect("mac is a string");
    assert!(
        mac.len() == 64 && mac.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "mac {mac}"
    );
    if !matches!(object["action"].as_str(), Some("Sign" | "Verify")) {
        object.remove("key_version");
    }
    e
}

#[track_caller]
pub(super) fn assert_events(actual: &[Value], expected: &[Value], what: &str) {
    let actual: Vec<Value> = actual.iter().map(comparable).collect();
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: event #{i} of the listing");
    }
    assert_eq!(actual.len(), expected.len(), "{what}: {actual:#?}");
}

/// Lists one page for `query` as root and notes the listing's own event.
pub(super) async fn list(app: &TestApp, model: &mut Model, query: &str) -> Reply {
    let r = app.get(&format!("/v1/audit/events?{query}")).await;
    model.note(&r, "ReadAudit", "audit");
    r
}

/// The mix of operations of acceptance item 1, each at its own minute. Returns the model.
pub(super) async fn mixed_operations(app: &mut TestApp) -> Model {
    app.client = client(Some(AGENT));
    let mut model = Model::new();
    // Not audited: no handler with an audit event (health, ping, unknown route, 405).
    assert_eq!(app.get("/v1/sys/ping").await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/sys/health").await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/keys/alpha/frobnicate").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/v1/nowhere").await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete("/v1/keys").await.status, StatusCode::METHOD_NOT_ALLOWED);

    model.tick(app);
    let r = app
        .post("/v1/keys", json!({"name": "alpha", "algorithm": "hmac-sha256"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    model.note_change(&r, "CreateKey", "key:alpha", |_| {});

    model.tick(app);
    let material = [0x5au8; 32];
    let r = app
        .post(
            "/v1/keys/beta/import",
            json!({"key_material": crate::helpers::b64(&material), "algorithm": "hmac-sha256"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let fingerprint = app.state.audit.secret_hmac(&material);
    model.note_change(&r, "ImportKeyPlaintext", "key:beta", |op| {
        op.secret_hmac = Some(fingerprint.clone())
    });

    model.tick(app);
    let r = app.post("/v1/keys/alpha/sign", json!({"message": "aGVsbG8="})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note(&r, "Sign", "key:alpha").key_version = Some(1);

    model.tick(app);
    let r = app.post("/v1/keys/beta/sign", json!({"message": "aGVsbG8="})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note(&r, "Sign", "key:beta").key_version = Some(1);
    let signature = r.body["signature"].as_str().expect("signature").to_owned();

    model.tick(app);
    let r = app
        .post(
            "/v1/keys/beta/verify",
            json!({"message": "aGVsbG8=", "signature": signature}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["valid"]),
        (StatusCode::OK, &json!(true)),
        "{}",
        r.body
    );
    model.note(&r, "Verify", "key:beta").key_version = Some(1);

    model.tick(app);
    let r = app
        .post(
            "/v1/keys/beta/verify",
            json!({"message": "aGVsbG8h", "signature": signature}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["valid"]),
        (StatusCode::OK, &json!(false)),
        "{}",
        r.body
    );
    model.note(&r, "Verify", "key:beta").key_version = None;

    model.tick(app);
    app.client = client(Some("curl/8.5.0"));
    model.user_agent = Some("curl/8.5.0".into());
    let r = app.send(Method::GET, "/v1/keys", Some(WRONG_TOKEN), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    model.note(&r, "ListKeys", "keys").principal = "-";
    app.client = client(Some(AGENT));
    model.user_agent = Some(AGENT.into());

    model.tick(app);
    let r = app.post("/v1/keys/ghost/sign", json!({"message": "aGVsbG8="})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(model.note(&r, "Sign", "key:ghost").outcome, "KEY_NOT_FOUND");

    model.tick(app);
    let r = app.patch("/v1/keys/alpha", json!({"auto_rotate_period": "30d"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note_change(&r, "UpdateKey", "key:alpha", |_| {});

    model.tick(app);
    let r = app.post("/v1/keys/alpha/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note_change(&r, "RotateKey", "key:alpha", |_| {});

    model.tick(app);
    app.client = client(None);
    model.user_agent = None;
    let r = app.post("/v1/keys/alpha/sign", json!({"message": "aGVsbG8="})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note(&r, "Sign", "key:alpha").key_version = Some(2);

    model.tick(app);
    let long_agent = format!("long/{}", "x".repeat(300));
    app.client = client(Some(&long_agent));
    model.user_agent = Some(long_agent[..256].to_owned());
    let r = app
        .post("/v1/keys/alpha/sign", json!({"message": "aGVsbG8=", "key_version": 1}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note(&r, "Sign", "key:alpha").key_version = Some(1);
    app.client = client(Some(AGENT));
    model.user_agent = Some(AGENT.into());

    model.tick(app);
    let r = app.get("/v1/keys/alpha").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    model.note(&r, "GetKey", "key:alpha");

    model.tick(app);
    let r = app.post_raw("/v1/keys", b"{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    model.note(&r, "CreateKey", "keys");
    model
}

impl Op {
    /// A create or import whose body was refused never reached the policies (they decide
    /// on the body's owner and tags).
    fn refused_before_policy(&self) -> bool {
        matches!(self.action, "CreateKey" | "ImportKeyPlaintext")
            && matches!(self.outcome.as_str(), "INVALID_ARGUMENT" | "PAYLOAD_TOO_LARGE")
    }

    /// A failed authentication is a deny; a request refused before the policies were asked
    /// has no decision; everything else the model's caller, root (admin), sends is allowed.
    fn expected_decision(&self) -> &'static str {
        if self.principal == "-" {
            "deny"
        } else if self.refused_before_policy() {
            "none"
        } else {
            "allow"
        }
    }

    /// Allowed requests name the shipped `admin-all` policy; the others name none.
    fn expected_policy(&self) -> Value {
        if self.expected_decision() == "allow" {
            json!("admin-all")
        } else {
            Value::Null
        }
    }
}
