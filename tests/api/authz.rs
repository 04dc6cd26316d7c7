//! Who may do what, black-box: every action for a caller in each shipped group (`policies/`)
//! and for one in none; a service confined to the keys it owns and to its namespace; key
//! tags deciding under a policy directory of the test's own; revoked and expired tokens.
//!
//! An allowed request must succeed and take effect; a denied one must answer 403
//! `PERMISSION_DENIED` and leave everything as it was. Either way the audit trail must
//! name the decision and the policy that made it (none for a deny no `forbid` matched).

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::audit::action::Action;
use time::Duration;

use crate::helpers::{AppHome, Reply, TestApp, b64, spawn_app, spawn_app_in, temp_dir};

// ----- the table: every action x every role ---------------------------------------------

/// The callers of the table, one per column, in column order.
#[derive(Debug, Clone, Copy)]
enum Role {
    Admin,
    Service,
    Custodian,
    Auditor,
    NoGroup,
}

impl Role {
    fn principal(self) -> &'static str {
        match self {
            Role::Admin => "ops-admin",
            Role::Service => "payments",
            Role::Custodian => "keeper",
            Role::Auditor => "inspector",
            Role::NoGroup => "stranger",
        }
    }

    fn groups(self) -> &'static [&'static str] {
        match self {
            Role::Admin => &["admin"],
            Role::Service => &["service"],
            Role::Custodian => &["custodian"],
            Role::Auditor => &["auditor"],
            Role::NoGroup => &[],
        }
    }
}

/// What one cell expects: allowed, crediting the named policy in the audit trail, or denied.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Allow(&'static str),
    Deny,
}

const ADMIN: Expect = Expect::Allow("admin-all");
const SERVICE: Expect = Expect::Allow("service-sign-verify-own-keys");
const CUSTODIAN: Expect = Expect::Allow("custodian-manage-keys");
const CUSTODIAN_LIST: Expect = Expect::Allow("custodian-list-keys");
const AUDITOR: Expect = Expect::Allow("auditor-read-audit-and-reports");
const ANYONE: Expect = Expect::Allow("anyone-whoami");
const DENY: Expect = Expect::Deny;

/// Read off `policies/*.cedar`. Every key a cell uses is owned by the caller, so the service
/// column tests the role, not ownership (the namespace has its own tests below). Plaintext
/// import is allowed because the tests call over loopback (`plaintext-import-needs-tls`).
/// An admin's WhoAmI matches two permits; the trail credits the first by id.
/// A new [`Action`] fails to compile in [`prepare`]: give it a row here too.
#[rustfmt::skip]
const TABLE: [(Action, [Expect; 5]); 18] = [
    //                              admin  service  custodian       auditor  no group
    (Action::CreateKey,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ListKeys,             [ADMIN, DENY,    CUSTODIAN_LIST, DENY,    DENY  ]),
    (Action::GetKey,               [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::UpdateKey,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ScheduleKeyDeletion,  [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::CancelKeyDeletion,    [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::RotateKey,            [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::ImportKeyPlaintext,   [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::Sign,                 [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::Verify,               [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::ReadAudit,            [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::VerifyAudit,          [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::ReadComplianceReport, [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::CreateToken,          [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ReadToken,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::RevokeToken,          [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::WhoAmI,               [ADMIN, ANYONE,  ANYONE,         ANYONE,  ANYONE]),
    (Action::ReloadPolicies,       [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
];

#[test]
fn the_table_has_one_row_per_action() {
    for (i, (action, _)) in TABLE.iter().enumerate() {
        assert!(
            !TABLE[..i].iter().any(|(earlier, _)| earlier == action),
            "expected {} to have one row only",
            action.as_str()
        );
    }
}

#[tokio::test]
async fn admins_may_do_every_action() {
    check_column(Role::Admin).await;
}

#[tokio::test]
async fn services_may_only_sign_and_verify_with_their_own_keys_and_ask_who_they_are() {
    check_column(Role::Service).await;
}

#[tokio::test]
async fn custodians_may_only_import_rotate_read_and_list_keys_and_ask_who_they_are() {
    check_column(Role::Custodian).await;
}

#[tokio::test]
async fn auditors_may_only_read_and_verify_the_trail_read_the_report_and_ask_who_they_are() {
    check_column(Role::Auditor).await;
}

#[tokio::test]
async fn a_caller_in_no_group_may_only_ask_who_it_is() {
    check_column(Role::NoGroup).await;
}

/// Runs every row of `role`'s column against one app, each request on a fresh target.
async fn check_column(role: Role) {
    let app = spawn_app().await;
    let principal = role.principal();
    let (_, token) = token_for(&app, principal, role.groups()).await;
    for (action, row) in TABLE {
        let what = format!("{role:?} {}", action.as_str());
        let cell = prepare(&app, action, principal).await;
        let before = observe(&app, &cell.probe).await;
        let body = cell.body.as_ref().map(|b| b.to_string().into_bytes());
        let r = app.send(cell.method.clone(), &cell.path, Some(&token), body).await;
        let mut resource = cell.resource.clone();
        let (decision, policy, outcome) = match row[role as usize] {
            Expect::Allow(policy) => {
                assert_status(&r, cell.success, &format!("{what}: expected success"));
                if let Some((pointer, value)) = &cell.effect {
                    assert_eq!(
                        r.body.pointer(pointer),
                        Some(value),
                        "{what}: expected {pointer} = {value} in {}",
                        r.body
                    );
                }
                if action == Action::CreateToken {
                    // An allowed creation names the token it made.
                    resource = format!("token:{}", r.body["id"].as_str().unwrap_or_default());
                }
                ("allow", json!(policy), "ok")
            }
            Expect::Deny => {
                assert_denied(&r, &what);
                let after = observe(&app, &cell.probe).await;
                assert_eq!(after, before, "{what}: expected a denied request to change nothing");
                ("deny", Value::Null, "PERMISSION_DENIED")
            }
        };
        let event = event_of(&app, principal, action, &r).await;
        let expected = json!({
            "principal": principal, "action": action.as_str(), "resource": resource,
            "decision": decision, "policy": policy, "outcome": outcome,
        });
        assert_eq!(summary(&event), expected, "{what}: expected this audit event");
    }
}

/// One request of the table and how to tell whether it did anything.
struct Cell {
    method: Method,
    path: String,
    body: Option<Value>,
    /// The status a success answers.
    success: StatusCode,
    /// A field of a successful answer and its value: the operation took effect.
    effect: Option<(&'static str, Value)>,
    /// The resource the audit event names.
    resource: String,
    /// What a denied request must leave as it was (besides the key list).
    probe: Probe,
}

impl Cell {
    fn new(method: Method, path: impl Into<String>, success: StatusCode, resource: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            body: None,
            success,
            effect: None,
            resource: resource.into(),
            probe: Probe::Nothing,
        }
    }

    fn body(self, body: Value) -> Self {
        Self {
            body: Some(body),
            ..self
        }
    }

    fn effect(self, pointer: &'static str, value: Value) -> Self {
        Self {
            effect: Some((pointer, value)),
            ..self
        }
    }

    fn probe(self, probe: Probe) -> Self {
        Self { probe, ..self }
    }
}

/// State a request could change, read as root.
enum Probe {
    /// Only the key list (read-only actions).
    Nothing,
    /// The key of this name, or its absence.
    Key(String),
    /// Whether this caller token still authenticates.
    Token(String),
    /// How many caller tokens were created.
    TokensCreated,
}

/// Sets up a fresh target for `action` (as root) and returns the request to send.
async fn prepare(app: &TestApp, action: Action, owner: &str) -> Cell {
    let key = format!("cell-{}", action.as_str().to_lowercase());
    let path = format!("/v1/keys/{key}");
    let on_key = |method, verb: &str, success| {
        Cell::new(method, format!("{path}{verb}"), success, format!("key:{key}")).probe(Probe::Key(key.clone()))
    };
    match action {
        Action::CreateKey => Cell::new(Method::POST, "/v1/keys", StatusCode::CREATED, format!("key:{key}"))
            .body(json!({"name": key, "algorithm": "hmac-sha256", "owner": owner}))
            .effect("/owner", json!(owner))
            .probe(Probe::Key(key.clone())),
        Action::ImportKeyPlaintext => on_key(Method::POST, "/import", StatusCode::CREATED)
            .body(json!({"key_material": b64(&[0x5a; 32]), "owner": owner}))
            .effect("/owner", json!(owner)),
        Action::ListKeys => Cell::new(Method::GET, "/v1/keys", StatusCode::OK, "keys"),
        Action::GetKey => {
            create_key(app, &key, owner, json!({})).await;
            on_key(Method::GET, "", StatusCode::OK).effect("/name", json!(key))
        }
        Action::UpdateKey => {
            create_key(app, &key, owner, json!({})).await;
            on_key(Method::PATCH, "", StatusCode::OK)
                .body(json!({"state": "disabled"}))
                .effect("/state", json!("disabled"))
        }
        Action::ScheduleKeyDeletion => {
            create_key(app, &key, owner, json!({})).await;
            on_key(Method::DELETE, "", StatusCode::ACCEPTED).effect("/state", json!("pending_deletion"))
        }
        Action::CancelKeyDeletion => {
            create_key(app, &key, owner, json!({})).await;
            let r = app.delete(&path).await;
            assert_status(&r, StatusCode::ACCEPTED, &format!("expected root to schedule {key}"));
            on_key(Method::POST, "/restore", StatusCode::OK)
                .body(json!({}))
                .effect("/state", json!("enabled"))
        }
        Action::RotateKey => {
            create_key(app, &key, owner, json!({})).await;
            on_key(Method::POST, "/rotate", StatusCode::OK)
                .body(json!({}))
                .effect("/latest_version", json!(2))
        }
        Action::Sign => {
            create_key(app, &key, owner, json!({})).await;
            on_key(Method::POST, "/sign", StatusCode::OK)
                .body(json!({"message": b64(b"m")}))
                .effect("/key_version", json!(1))
        }
        Action::Verify => {
            create_key(app, &key, owner, json!({})).await;
            let (signature, _) = app.sign(&key, b"m").await;
            on_key(Method::POST, "/verify", StatusCode::OK)
                .body(json!({"message": b64(b"m"), "signature": b64(&signature)}))
                .effect("/valid", json!(true))
        }
        Action::ReadAudit => Cell::new(Method::GET, "/v1/audit/events?limit=1", StatusCode::OK, "audit"),
        Action::VerifyAudit => {
            Cell::new(Method::GET, "/v1/audit/verify", StatusCode::OK, "audit").effect("/ok", json!(true))
        }
        Action::ReadComplianceReport => Cell::new(
            Method::GET,
            "/v1/reports/compliance",
            StatusCode::OK,
            "report:compliance",
        ),
        Action::CreateToken => {
            let minted = format!("minted-by-{owner}");
            Cell::new(Method::POST, "/v1/auth/tokens", StatusCode::CREATED, "tokens")
                .body(json!({"principal": minted, "groups": ["service"]}))
                .effect("/principal", json!(minted))
                .probe(Probe::TokensCreated)
        }
        Action::ReadToken | Action::RevokeToken => {
            let (id, victim) = token_for(app, "victim", &["service"]).await;
            let method = if action == Action::ReadToken {
                Method::GET
            } else {
                Method::DELETE
            };
            Cell::new(
                method,
                format!("/v1/auth/tokens/{id}"),
                StatusCode::OK,
                format!("token:{id}"),
            )
            .effect("/id", json!(id))
            .probe(Probe::Token(victim))
        }
        Action::WhoAmI => {
            Cell::new(Method::GET, "/v1/auth/whoami", StatusCode::OK, "self").effect("/principal", json!(owner))
        }
        Action::ReloadPolicies => Cell::new(Method::POST, "/v1/sys/policies/reload", StatusCode::OK, "policies")
            // The shipped set holds seven policies.
            .effect("/policies", json!(7)),
    }
}

/// Everything `probe` watches, plus every key (metadata and usage counters), as root.
async fn observe(app: &TestApp, probe: &Probe) -> Value {
    let keys = app.get("/v1/keys?limit=1000").await;
    let watched = match probe {
        Probe::Nothing => Value::Null,
        Probe::Key(name) => without_request_id(app.get(&format!("/v1/keys/{name}")).await),
        Probe::Token(token) => without_request_id(app.send(Method::GET, "/v1/auth/whoami", Some(token), None).await),
        Probe::TokensCreated => {
            let r = app.get("/v1/audit/events?action=CreateToken&limit=1000").await;
            let events = r.body["events"].as_array().cloned().unwrap_or_default();
            json!(events.iter().filter(|e| e["outcome"] == "ok").count())
        }
    };
    json!({"keys": without_request_id(keys), "watched": watched})
}

/// Status and body, without the request id an error body carries.
fn without_request_id(r: Reply) -> Value {
    let mut body = r.body;
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.remove("request_id");
    }
    json!({"status": r.status.as_u16(), "body": body})
}

// ----- services: their own keys and their namespace -------------------------------------

#[tokio::test]
async fn a_service_may_not_sign_with_another_services_key_and_the_trail_records_the_refusal() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    create_key(&app, "billing-signing", "billing", json!({})).await;

    let r = sign_as(&app, &payments, "billing-signing").await;
    assert_denied(&r, "payments signing with billing's key");
    let event = event_of(&app, "payments", Action::Sign, &r).await;
    let expected = json!({
        "principal": "payments", "action": "Sign", "resource": "key:billing-signing",
        "decision": "deny", "policy": null, "outcome": "PERMISSION_DENIED",
    });
    assert_eq!(summary(&event), expected, "expected the refusal in the trail");

    let r = verify_as(&app, &payments, "billing-signing").await;
    assert_denied(&r, "payments verifying with billing's key");
}

#[tokio::test]
async fn a_service_may_use_the_keys_of_its_namespace_whoever_owns_them() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    // The namespace is the name up to the first "." (the whole name without one).
    let cases = [
        ("payments.webhook", true),
        ("payments.eu.webhook", true),
        ("payments", true),
        ("paymentsx.webhook", false),
        ("payments-webhook", false),
        ("billing.payments", false),
    ];
    for (name, allowed) in cases {
        create_key(&app, name, "root", json!({})).await;
        let r = sign_as(&app, &payments, name).await;
        let event = event_of(&app, "payments", Action::Sign, &r).await;
        if allowed {
            assert_status(&r, StatusCode::OK, &format!("expected payments to sign with {name}"));
            let expected = json!({
                "principal": "payments", "action": "Sign", "resource": format!("key:{name}"),
                "decision": "allow", "policy": "service-sign-verify-own-keys", "outcome": "ok",
            });
            assert_eq!(
                summary(&event),
                expected,
                "expected the namespace policy credited for {name}"
            );
        } else {
            assert_denied(&r, &format!("payments signing with root's {name}"));
            assert_eq!(
                (&event["decision"], &event["policy"]),
                (&json!("deny"), &Value::Null),
                "expected a deny no policy made for {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_missing_key_is_denied_to_a_service_outside_its_namespace_and_not_found_inside_it() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    create_key(&app, "billing.webhook", "billing", json!({})).await;

    // Outside its namespace a missing key is decided on its name alone (owner ""): the
    // same refusal as for a key that exists, so the service learns nothing of either.
    let existing = sign_as(&app, &payments, "billing.webhook").await;
    assert_denied(&existing, "payments signing with billing.webhook");
    for missing in ["billing.ghost", "ghost"] {
        let r = sign_as(&app, &payments, missing).await;
        assert_denied(&r, &format!("payments signing with missing {missing}"));
        assert_eq!(
            r.body["error"]["message"].as_str().map(|m| m.replace(missing, "<key>")),
            existing.body["error"]["message"]
                .as_str()
                .map(|m| m.replace("billing.webhook", "<key>")),
            "expected the refusal of a missing key to read like that of an existing one"
        );
    }

    let r = sign_as(&app, &payments, "payments.ghost").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "KEY_NOT_FOUND"),
        "expected a missing key in the service's namespace to be 404 KEY_NOT_FOUND: {}",
        r.body
    );
    let event = event_of(&app, "payments", Action::Sign, &r).await;
    let expected = json!({
        "principal": "payments", "action": "Sign", "resource": "key:payments.ghost",
        "decision": "allow", "policy": "service-sign-verify-own-keys", "outcome": "KEY_NOT_FOUND",
    });
    assert_eq!(
        summary(&event),
        expected,
        "expected an allowed request that found no key"
    );
}

// ----- tags, under a policy directory of the test's own ---------------------------------

const TEAM_A_POLICY: &str = r#"// Team a signs with the keys tagged team=a, whoever owns them.
@id("team-a-signs-team-a-keys")
permit (
  principal in Sigvault::Group::"team-a",
  action == Sigvault::Action::"Sign",
  resource is Sigvault::Key
)
when { resource.hasTag("team") && resource.getTag("team") == "a" };
"#;

#[tokio::test]
async fn a_key_tag_decides_under_a_policy_that_matches_on_it() {
    let dir = temp_dir("authz-tags");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for file in ["schema.cedarschema", "admin.cedar"] {
        // admin.cedar: root still sets up the keys and reads the trail.
        std::fs::copy(shipped.join(file), dir.join(file)).expect("copy a shipped policy file");
    }
    std::fs::write(dir.join("team-a.cedar"), TEAM_A_POLICY).expect("write the team-a policy");
    let app = spawn_app_in(AppHome {
        policies_dir: Some(dir),
        ..AppHome::new()
    })
    .await;
    create_key(&app, "ledger", "root", json!({"team": "a"})).await;
    create_key(&app, "invoices", "root", json!({"team": "b"})).await;
    create_key(&app, "untagged", "root", json!({})).await;
    let (_, alice) = token_for(&app, "alice", &["team-a"]).await;
    let (_, bob) = token_for(&app, "bob", &["team-b"]).await;

    let cases = [
        ("alice", &alice, "ledger", true),
        ("alice", &alice, "invoices", false),
        ("alice", &alice, "untagged", false),
        ("bob", &bob, "ledger", false),
    ];
    for (who, token, key, allowed) in cases {
        let what = format!("{who} signing with {key}");
        let r = sign_as(&app, token, key).await;
        let event = event_of(&app, who, Action::Sign, &r).await;
        if allowed {
            assert_status(&r, StatusCode::OK, &format!("{what}: expected success"));
            assert_eq!(
                (&event["decision"], &event["policy"]),
                (&json!("allow"), &json!("team-a-signs-team-a-keys")),
                "{what}: expected the tag policy credited"
            );
        } else {
            assert_denied(&r, &what);
            assert_eq!(event["decision"], "deny", "{what}: expected a deny in the trail");
        }
    }
    let r = verify_as(&app, &alice, "ledger").await;
    assert_denied(&r, "alice verifying with ledger (the policy grants Sign only)");
}

// ----- tokens that no longer authenticate -----------------------------------------------

#[tokio::test]
async fn a_revoked_token_is_refused_with_401_even_right_after_it_was_used() {
    let app = spawn_app().await;
    create_key(&app, "payments.webhook", "payments", json!({})).await;
    let (id, token) = token_for(&app, "payments", &["service"]).await;
    let r = sign_as(&app, &token, "payments.webhook").await;
    assert_status(&r, StatusCode::OK, "expected the token to work before revocation");

    let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
    assert_status(&r, StatusCode::OK, "expected root to revoke the token");
    assert!(r.body["revoked_at"].is_string(), "expected revoked_at in {}", r.body);

    let r = sign_as(&app, &token, "payments.webhook").await;
    assert_unauthenticated(&r, "signing with a revoked token");
    let r = whoami(&app, &token).await;
    assert_unauthenticated(&r, "whoami with a revoked token");
    let event = event_of(&app, "-", Action::WhoAmI, &r).await;
    let expected = json!({
        "principal": "-", "action": "WhoAmI", "resource": "self",
        "decision": "deny", "policy": null, "outcome": "UNAUTHENTICATED",
    });
    assert_eq!(summary(&event), expected, "expected the refused token in the trail");
}

#[tokio::test]
async fn a_token_with_a_ttl_is_refused_with_401_from_the_moment_it_expires() {
    let app = spawn_app().await;
    let body = json!({"principal": "payments", "groups": ["service"], "ttl": "1h"});
    let r = app.post("/v1/auth/tokens", body.clone()).await;
    assert_status(&r, StatusCode::CREATED, "expected a token with a ttl");
    assert_eq!(
        r.body["expires_at"], "2026-09-21T15:13:20Z",
        "expected expiry one hour after the start"
    );
    let used = r.body["token"].as_str().expect("token").to_owned();
    // Never presented before it expires: it is checked against the store, not a memory of it.
    let r = app.post("/v1/auth/tokens", body).await;
    let unused = r.body["token"].as_str().expect("token").to_owned();

    let r = whoami(&app, &used).await;
    assert_status(&r, StatusCode::OK, "expected a fresh token to work");
    app.clock.advance(Duration::hours(1) - Duration::seconds(1));
    let r = whoami(&app, &used).await;
    assert_status(
        &r,
        StatusCode::OK,
        "expected the token to work one second before expiry",
    );

    app.clock.advance(Duration::seconds(1));
    assert_unauthenticated(&whoami(&app, &used).await, "whoami with a token used before expiry");
    assert_unauthenticated(&whoami(&app, &unused).await, "whoami with a token never used");
}

// ----- helpers --------------------------------------------------------------------------

/// A caller token made by root; returns (id, token).
async fn token_for(app: &TestApp, principal: &str, groups: &[&str]) -> (String, String) {
    let r = app
        .post("/v1/auth/tokens", json!({"principal": principal, "groups": groups}))
        .await;
    assert_status(&r, StatusCode::CREATED, "expected root to create a token");
    let field = |name: &str| r.body[name].as_str().expect("id and token").to_owned();
    (field("id"), field("token"))
}

/// An HMAC-SHA256 key created by root for `owner`, with `tags`.
async fn create_key(app: &TestApp, name: &str, owner: &str, tags: Value) {
    let body = json!({"name": name, "algorithm": "hmac-sha256", "owner": owner, "tags": tags});
    let r = app.post("/v1/keys", body).await;
    assert_status(&r, StatusCode::CREATED, &format!("expected root to create {name}"));
}

async fn sign_as(app: &TestApp, token: &str, key: &str) -> Reply {
    let body = json!({"message": b64(b"m")}).to_string().into_bytes();
    app.send(Method::POST, &format!("/v1/keys/{key}/sign"), Some(token), Some(body))
        .await
}

/// Verifies a made-up signature: allowed, it answers 200 `"valid": false`.
async fn verify_as(app: &TestApp, token: &str, key: &str) -> Reply {
    let body = json!({"message": b64(b"m"), "signature": b64(&[0; 32])});
    let body = body.to_string().into_bytes();
    app.send(Method::POST, &format!("/v1/keys/{key}/verify"), Some(token), Some(body))
        .await
}

async fn whoami(app: &TestApp, token: &str) -> Reply {
    app.send(Method::GET, "/v1/auth/whoami", Some(token), None).await
}

/// `r` answered `status`; `what` says what was expected, the body is shown on failure.
#[track_caller]
fn assert_status(r: &Reply, status: StatusCode, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.body);
}

#[track_caller]
fn assert_denied(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        "{what}: expected 403 PERMISSION_DENIED: {}",
        r.body
    );
}

#[track_caller]
fn assert_unauthenticated(r: &Reply, what: &str) {
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        "{what}: expected 401 UNAUTHENTICATED: {}",
        r.body
    );
}

/// The audit event of request `r`, found by its request id among `principal`'s `action`s.
async fn event_of(app: &TestApp, principal: &str, action: Action, r: &Reply) -> Value {
    let id = r.request_id.as_deref().expect("every response has an x-request-id");
    let query = format!(
        "/v1/audit/events?principal={principal}&action={}&limit=1000",
        action.as_str()
    );
    let listed = app.get(&query).await;
    assert_status(&listed, StatusCode::OK, "expected root to read the trail");
    listed.body["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["request_id"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("expected an event for request {id} in {}", listed.body))
}

/// The fields of an event that say who did what to what, and how it was decided.
fn summary(event: &Value) -> Value {
    let fields = ["principal", "action", "resource", "decision", "policy", "outcome"];
    fields.iter().map(|f| ((*f).to_owned(), event[*f].clone())).collect()
}
