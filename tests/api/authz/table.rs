//! Every action for a caller in each shipped group and for one in none: the table.

use super::*;
use crate::helpers::{custodian_key, wrap_for_import};

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

/// What one cell expects: allowed, crediting the named policy in the audit trail, denied
/// (no permit), or forbidden by the named policy whatever permits it.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Allow(&'static str),
    Deny,
    Forbid(&'static str),
}

const ADMIN: Expect = Expect::Allow("admin-all");
const SERVICE: Expect = Expect::Allow("service-sign-verify-own-keys");
const CUSTODIAN: Expect = Expect::Allow("custodian-manage-keys");
const CUSTODIAN_LIST: Expect = Expect::Allow("custodian-list-keys");
const CUSTODIAN_WRAPPING: Expect = Expect::Allow("custodian-wrapping-key");
const CUSTODIAN_APPROVALS: Expect = Expect::Allow("custodian-approvals");
const CUSTODIANS_ONLY: Expect = Expect::Forbid("approvals-by-custodians-only");
const AUDITOR: Expect = Expect::Allow("auditor-read-audit-and-reports");
const ANYONE: Expect = Expect::Allow("anyone-whoami");
const CUSTODIAN_CRED: Expect = Expect::Allow("custodian-manage-credentials");
const CUSTODIAN_CRED_LIST: Expect = Expect::Allow("custodian-list-credentials");
const AUDITOR_CRED: Expect = Expect::Allow("auditor-read-credentials");
const SERVICE_SIGV4: Expect = Expect::Allow("service-verify-sigv4");
const CUSTODIAN_APIKEY: Expect = Expect::Allow("custodian-manage-apikeys");
const SERVICE_APIKEY: Expect = Expect::Allow("service-verify-apikeys");
const DENY: Expect = Expect::Deny;

/// Read off `policies/*.cedar`. Every key a cell uses is owned by the caller, so the service
/// column tests the role, not ownership (the namespace has its own tests below). Plaintext
/// import is allowed because the tests call over loopback (`plaintext-import-needs-tls`).
/// An admin's WhoAmI matches two permits; the trail credits the first by id.
/// A new [`Action`] fails to compile in [`prepare`]: give it a row here too.
#[rustfmt::skip]
const TABLE: [(Action, [Expect; 5]); 53] = [
    //                              admin  service  custodian       auditor  no group
    (Action::CreateKey,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ListKeys,             [ADMIN, DENY,    CUSTODIAN_LIST, DENY,    DENY  ]),
    (Action::GetKey,               [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::UpdateKey,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ScheduleKeyDeletion,  [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::CancelKeyDeletion,    [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::RotateKey,            [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::ImportKeyPlaintext,   [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::ImportKeyWrapped,     [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::ExportKey,            [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::BackupKey,            [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::RestoreKey,           [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::Sign,                 [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::Verify,               [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::Encrypt,              [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::Decrypt,              [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::ReEncrypt,            [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::GenerateDataKey,      [ADMIN, SERVICE, DENY,           DENY,    DENY  ]),
    (Action::WrapKey,              [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::UnwrapKey,            [ADMIN, DENY,    CUSTODIAN,      DENY,    DENY  ]),
    (Action::ReadAudit,            [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::VerifyAudit,          [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::ReadComplianceReport, [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::ReadMetrics,          [ADMIN, DENY,    DENY,           AUDITOR, DENY  ]),
    (Action::CreateToken,          [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ReadToken,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::RevokeToken,          [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::WhoAmI,               [ADMIN, ANYONE,  ANYONE,         ANYONE,  ANYONE]),
    (Action::ReloadPolicies,       [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::ReadKek,              [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::RotateKek,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::RetireKek,            [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::CreateCredential,     [ADMIN, DENY,    CUSTODIAN_CRED, DENY,    DENY  ]),
    (Action::ImportCredential,     [ADMIN, DENY,    CUSTODIAN_CRED, DENY,    DENY  ]),
    (Action::ListCredentials,      [ADMIN, DENY,    CUSTODIAN_CRED_LIST, AUDITOR_CRED, DENY]),
    (Action::GetCredential,        [ADMIN, DENY,    CUSTODIAN_CRED, AUDITOR_CRED, DENY]),
    (Action::UpdateCredential,     [ADMIN, DENY,    CUSTODIAN_CRED, DENY,    DENY  ]),
    (Action::DeleteCredential,     [ADMIN, DENY,    CUSTODIAN_CRED, DENY,    DENY  ]),
    (Action::ReadCredentialActivity, [ADMIN, DENY,  CUSTODIAN_CRED, AUDITOR_CRED, DENY]),
    (Action::VerifySigV4,          [ADMIN, SERVICE_SIGV4, DENY,     DENY,    DENY  ]),
    (Action::DeriveSigningKey,     [ADMIN, DENY,    DENY,           DENY,    DENY  ]),
    (Action::CreateApiKey,         [ADMIN, DENY,    CUSTODIAN_APIKEY, DENY,  DENY  ]),
    (Action::GetApiKey,            [ADMIN, DENY,    CUSTODIAN_APIKEY, AUDITOR_CRED, DENY]),
    (Action::UpdateApiKey,         [ADMIN, DENY,    CUSTODIAN_APIKEY, DENY,  DENY  ]),
    (Action::RevokeApiKey,         [ADMIN, DENY,    CUSTODIAN_APIKEY, DENY,  DENY  ]),
    (Action::RerollApiKey,         [ADMIN, DENY,    CUSTODIAN_APIKEY, DENY,  DENY  ]),
    (Action::ReadApiKeyActivity,   [ADMIN, DENY,    CUSTODIAN_APIKEY, AUDITOR_CRED, DENY]),
    (Action::VerifyApiKey,         [ADMIN, SERVICE_APIKEY, DENY,    DENY,    DENY  ]),
    (Action::ReadWrappingKey,      [ADMIN, DENY,    CUSTODIAN_WRAPPING, DENY, DENY ]),
    (Action::RotateWrappingKey,    [ADMIN, DENY,    CUSTODIAN_WRAPPING, DENY, DENY ]),
    (Action::RequestApproval,      [ADMIN, DENY,    CUSTODIAN_APPROVALS, DENY, DENY]),
    (Action::ApproveRequest,       [CUSTODIANS_ONLY, CUSTODIANS_ONLY, CUSTODIAN_APPROVALS, CUSTODIANS_ONLY, CUSTODIANS_ONLY]),
    (Action::ReadApprovals,        [ADMIN, DENY,    CUSTODIAN_APPROVALS, DENY, DENY]),
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
                if action == Action::CreateCredential {
                    resource = format!("credential:{}", r.body["access_key_id"].as_str().unwrap_or_default());
                }
                if action == Action::VerifySigV4 {
                    // An allowed verification names the credential the request was signed with.
                    resource = format!("credential:{}", cell_credential(action));
                }
                if action == Action::RequestApproval {
                    resource = format!("approval:{}", r.body["id"].as_str().unwrap_or_default());
                }
                if action == Action::CreateApiKey {
                    resource = format!("apikey:{}", r.body["id"].as_str().unwrap_or_default());
                }
                if let Some(named) = &cell.resource_if_allowed {
                    // An allowed API-key verification names the key presented (a denied one
                    // never looked it up).
                    resource = named.clone();
                }
                ("allow", json!(policy), "ok")
            }
            Expect::Deny => {
                assert_denied(&r, &what);
                let after = observe(&app, &cell.probe).await;
                assert_eq!(after, before, "{what}: expected a denied request to change nothing");
                ("deny", Value::Null, "PERMISSION_DENIED")
            }
            Expect::Forbid(policy) => {
                assert_denied(&r, &what);
                let after = observe(&app, &cell.probe).await;
                assert_eq!(after, before, "{what}: expected a forbidden request to change nothing");
                ("deny", json!(policy), "PERMISSION_DENIED")
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
    /// The resource an allowed request's event names instead, when it differs.
    resource_if_allowed: Option<String>,
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
            resource_if_allowed: None,
            probe: Probe::Nothing,
        }
    }

    fn resource_if_allowed(self, resource: String) -> Self {
        Self {
            resource_if_allowed: Some(resource),
            ..self
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
    /// The credential of this access key id, or its absence.
    Credential(String),
    /// Every credential.
    Credentials,
    /// The API key of this id, and what verifying this key (as root) answers.
    ApiKey { id: String, key: String },
    /// Every API key in the store.
    ApiKeys,
    /// The KEKs: which is current and which the vault holds.
    Keks,
    /// The wrapping key custodians wrap imports to.
    WrappingKey,
    /// Every approval request.
    Approvals,
}

const CELL_SECRET: &str = "cellsecretcellsecretcellsecretcellsecret";

/// The access key id of the credential `action`'s cell works on (one per cell: the cells of
/// a column share one app).
fn cell_credential(action: Action) -> String {
    format!("AKIDCELL{}", action.as_str().to_uppercase())
}

/// Imports `action`'s cell credential as root, for principal `cell`; returns its id.
async fn import_cell_credential(app: &TestApp, action: Action) -> String {
    let id = cell_credential(action);
    let r = app
        .post(
            "/v1/credentials/import",
            json!({"access_key_id": id, "secret_access_key": CELL_SECRET, "principal": format!("cell-{}", action.as_str())}),
        )
        .await;
    assert_status(&r, StatusCode::CREATED, "expected root to import the cell credential");
    id
}

/// Creates an API key as root for `action`'s cell (its own principal, `cell-<action>`);
/// returns (id, key).
async fn create_cell_api_key(app: &TestApp, action: Action) -> (String, String) {
    let r = app
        .post("/v1/apikeys", json!({"principal": format!("cell-{}", action.as_str())}))
        .await;
    assert_status(&r, StatusCode::CREATED, "expected root to create the cell API key");
    let field = |name: &str| r.body[name].as_str().expect("id and key").to_owned();
    (field("id"), field("key"))
}

/// An `aes256-gcm` key created by root for `owner`.
async fn create_encryption_key(app: &TestApp, name: &str, owner: &str) {
    let r = app
        .post(
            "/v1/keys",
            json!({"name": name, "algorithm": "aes256-gcm", "owner": owner}),
        )
        .await;
    assert_status(&r, StatusCode::CREATED, &format!("expected root to create {name}"));
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
        Action::ImportKeyWrapped => {
            let r = app.get("/v1/wrapping-key").await;
            assert_status(&r, StatusCode::OK, "expected root to read the wrapping key");
            let pem = r.body["public_key_pem"].as_str().expect("public_key_pem");
            let wrapped = wrap_for_import(pem, &[0x5b; 32]);
            on_key(Method::POST, "/import-wrapped", StatusCode::CREATED)
                .body(json!({"wrapped_key": b64(&wrapped), "owner": owner}))
                .effect("/owner", json!(owner))
        }
        Action::ExportKey => {
            let body = json!({"name": key, "algorithm": "hmac-sha256", "owner": owner, "exportable": true});
            let r = app.post("/v1/keys", body).await;
            assert_status(&r, StatusCode::CREATED, &format!("expected root to create {key}"));
            on_key(Method::POST, "/export", StatusCode::OK)
                .body(json!({"public_key_pem": custodian_key().1}))
                .effect("/key_version", json!(1))
        }
        Action::BackupKey => {
            create_key(app, &key, owner, json!({})).await;
            on_key(Method::POST, "/backup", StatusCode::OK).effect("/latest_version", json!(1))
        }
        Action::RestoreKey => {
            // A key backed up, then deleted and destroyed (as root).
            create_key(app, &key, owner, json!({})).await;
            let r = app.post_raw(&format!("{path}/backup"), b"").await;
            assert_status(&r, StatusCode::OK, &format!("expected root to back up {key}"));
            let backup = r.body["backup"].clone();
            let r = app.delete(&format!("{path}?pending_days=7")).await;
            assert_status(&r, StatusCode::ACCEPTED, &format!("expected root to delete {key}"));
            app.clock.advance(time::Duration::days(8));
            app.state.keys.purge_due().await.expect("purge");
            on_key(Method::POST, "/restore-backup", StatusCode::CREATED)
                .body(json!({"backup": backup}))
                .effect("/owner", json!(owner))
        }
        Action::ReadWrappingKey => Cell::new(Method::GET, "/v1/wrapping-key", StatusCode::OK, "wrapping-key")
            .effect("/algorithm", json!("RSA-4096")),
        Action::RotateWrappingKey => {
            Cell::new(Method::POST, "/v1/wrapping-key/rotate", StatusCode::OK, "wrapping-key").probe(Probe::WrappingKey)
        }
        Action::RequestApproval => Cell::new(Method::POST, "/v1/approvals", StatusCode::CREATED, "approvals")
            .body(json!({"action": "RotateWrappingKey", "resource": "wrapping-key", "reason": "cell"}))
            .effect("/requested_by", json!(owner))
            .probe(Probe::Approvals),
        Action::ReadApprovals => Cell::new(Method::GET, "/v1/approvals", StatusCode::OK, "approvals"),
        Action::ApproveRequest => {
            // Root (no custodian) asks; the cell's caller approves.
            let r = app
                .post(
                    "/v1/approvals",
                    json!({"action": "ExportKey", "resource": format!("key:{key}"), "reason": "cell"}),
                )
                .await;
            assert_status(&r, StatusCode::CREATED, "expected root to ask for an approval");
            let id = r.body["id"].as_str().expect("id").to_owned();
            Cell::new(
                Method::POST,
                format!("/v1/approvals/{id}/approve"),
                StatusCode::OK,
                format!("approval:{id}"),
            )
            .effect("/approvals", json!(1))
            .probe(Probe::Approvals)
        }
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
        Action::Encrypt => {
            create_encryption_key(app, &key, owner).await;
            on_key(Method::POST, "/encrypt", StatusCode::OK)
                .body(json!({"plaintext": b64(b"m")}))
                .effect("/key_version", json!(1))
        }
        Action::Decrypt | Action::ReEncrypt => {
            create_encryption_key(app, &key, owner).await;
            let r = app
                .post(&format!("{path}/encrypt"), json!({"plaintext": b64(b"m")}))
                .await;
            assert_status(&r, StatusCode::OK, &format!("expected root to encrypt with {key}"));
            let ciphertext = r.body["ciphertext"].clone();
            if action == Action::Decrypt {
                on_key(Method::POST, "/decrypt", StatusCode::OK)
                    .body(json!({"ciphertext": ciphertext}))
                    .effect("/plaintext", json!(b64(b"m")))
            } else {
                on_key(Method::POST, "/rewrap", StatusCode::OK)
                    .body(json!({"ciphertext": ciphertext}))
                    .effect("/key_version", json!(1))
            }
        }
        Action::GenerateDataKey => {
            create_encryption_key(app, &key, owner).await;
            on_key(Method::POST, "/datakey", StatusCode::OK)
                .body(json!({"return_plaintext": false}))
                .effect("/key_version", json!(1))
        }
        Action::WrapKey | Action::UnwrapKey => {
            let r = app
                .post(
                    "/v1/keys",
                    json!({"name": key, "algorithm": "aes256-kwp", "owner": owner}),
                )
                .await;
            assert_status(&r, StatusCode::CREATED, &format!("expected root to create {key}"));
            if action == Action::WrapKey {
                on_key(Method::POST, "/wrap", StatusCode::OK)
                    .body(json!({"key_material": b64(&[3; 32])}))
                    .effect("/key_version", json!(1))
            } else {
                let r = app
                    .post(&format!("{path}/wrap"), json!({"key_material": b64(&[3; 32])}))
                    .await;
                assert_status(&r, StatusCode::OK, &format!("expected root to wrap with {key}"));
                on_key(Method::POST, "/unwrap", StatusCode::OK)
                    .body(json!({"wrapped_key": r.body["wrapped_key"], "key_version": 1}))
                    .effect("/key_material", json!(b64(&[3; 32])))
            }
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
        Action::ReadMetrics => Cell::new(Method::GET, "/metrics", StatusCode::OK, "metrics"),
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
        Action::ReadKek => Cell::new(Method::GET, "/v1/sys/kek", StatusCode::OK, "kek").probe(Probe::Keks),
        Action::RotateKek => Cell::new(Method::POST, "/v1/sys/kek/rotate", StatusCode::OK, "kek").probe(Probe::Keks),
        Action::RetireKek => {
            // A KEK no record uses: rotate as root, and wait until the rewrap job moved every
            // record under the new one. (Not merely "none under the old one": a pass still
            // running for an earlier rotation may yet move records under the old one.)
            let r = app.post_raw("/v1/sys/kek/rotate", b"").await;
            assert_status(&r, StatusCode::OK, "expected root to rotate the KEK");
            let old = r.body["previous_kek_id"].as_str().expect("previous_kek_id").to_owned();
            let new = r.body["current_kek_id"].as_str().expect("current_kek_id").to_owned();
            crate::helpers::eventually("the rewrap job moves every record under the new KEK", 30, || async {
                let r = app.get("/v1/sys/kek").await;
                let records = r.body["records"].as_array().cloned().unwrap_or_default();
                records.iter().all(|row| row["kek_id"] == new.as_str())
            })
            .await;
            Cell::new(Method::POST, "/v1/sys/kek/retire", StatusCode::OK, "kek")
                .body(json!({"kek_id": old}))
                .effect("/retired_kek_id", json!(old))
                .probe(Probe::Keks)
        }
        Action::ReloadPolicies => Cell::new(Method::POST, "/v1/sys/policies/reload", StatusCode::OK, "policies")
            // The shipped set holds sixteen policies (the `@id`s of `policies/*.cedar`).
            .effect("/policies", json!(16)),
        Action::CreateCredential => {
            let principal = format!("cell-{owner}");
            Cell::new(Method::POST, "/v1/credentials", StatusCode::CREATED, "credentials")
                .body(json!({"principal": principal}))
                .effect("/principal", json!(principal))
                .probe(Probe::Credentials)
        }
        Action::ImportCredential => {
            let id = cell_credential(action);
            Cell::new(
                Method::POST,
                "/v1/credentials/import",
                StatusCode::CREATED,
                format!("credential:{id}"),
            )
            .body(json!({"access_key_id": id, "secret_access_key": CELL_SECRET, "principal": "cell"}))
            .effect("/access_key_id", json!(id))
            .probe(Probe::Credential(id))
        }
        Action::ListCredentials => {
            let id = import_cell_credential(app, action).await;
            Cell::new(
                Method::GET,
                "/v1/credentials?principal=cell-ListCredentials",
                StatusCode::OK,
                "credentials",
            )
            .effect("/credentials/0/access_key_id", json!(id))
        }
        Action::GetCredential
        | Action::UpdateCredential
        | Action::DeleteCredential
        | Action::ReadCredentialActivity => {
            let id = import_cell_credential(app, action).await;
            let one = format!("/v1/credentials/{id}");
            let resource = format!("credential:{id}");
            let cell = match action {
                Action::GetCredential => {
                    Cell::new(Method::GET, one, StatusCode::OK, resource).effect("/access_key_id", json!(id))
                }
                Action::UpdateCredential => Cell::new(Method::PATCH, one, StatusCode::OK, resource)
                    .body(json!({"state": "inactive"}))
                    .effect("/state", json!("inactive")),
                Action::DeleteCredential => {
                    Cell::new(Method::DELETE, one, StatusCode::OK, resource).effect("/deleted", json!(true))
                }
                _ => Cell::new(Method::GET, format!("{one}/activity"), StatusCode::OK, resource)
                    .effect("/access_key_id", json!(id)),
            };
            cell.probe(Probe::Credential(id))
        }
        Action::VerifySigV4 => {
            let id = import_cell_credential(app, action).await;
            let signed = crate::sigv4::sign_with(
                &id,
                CELL_SECRET,
                &crate::sigv4::ToSign::get("/orders?limit=1", crate::sigv4::now(app)),
            );
            Cell::new(Method::POST, "/v1/sigv4/verify", StatusCode::OK, "sigv4")
                .body(signed.verify_body())
                .effect("/principal", json!("cell-VerifySigV4"))
                .probe(Probe::Credential(id))
        }
        Action::DeriveSigningKey => {
            let id = import_cell_credential(app, action).await;
            let today = sigvault::clock::Clock::now(app.clock.as_ref()).date();
            let date = format!("{:04}{:02}{:02}", today.year(), u8::from(today.month()), today.day());
            Cell::new(
                Method::POST,
                "/v1/sigv4/signing-key",
                StatusCode::OK,
                format!("credential:{id}"),
            )
            .body(json!({"access_key_id": id, "date": date, "region": "eu-west-1", "service": "s3"}))
            .effect("/scope", json!(format!("{date}/eu-west-1/s3/aws4_request")))
        }
        Action::CreateApiKey => {
            let principal = format!("cell-{}-{owner}", action.as_str());
            Cell::new(Method::POST, "/v1/apikeys", StatusCode::CREATED, "apikeys")
                .body(json!({"principal": principal}))
                .effect("/principal", json!(principal))
                .probe(Probe::ApiKeys)
        }
        Action::GetApiKey
        | Action::UpdateApiKey
        | Action::RevokeApiKey
        | Action::RerollApiKey
        | Action::ReadApiKeyActivity => {
            let (id, key) = create_cell_api_key(app, action).await;
            let one = format!("/v1/apikeys/{id}");
            let resource = format!("apikey:{id}");
            let cell = match action {
                Action::GetApiKey => Cell::new(Method::GET, one, StatusCode::OK, resource).effect("/id", json!(id)),
                Action::UpdateApiKey => Cell::new(Method::PATCH, one, StatusCode::OK, resource)
                    .body(json!({"state": "disabled"}))
                    .effect("/state", json!("disabled")),
                Action::RevokeApiKey => {
                    Cell::new(Method::DELETE, one, StatusCode::OK, resource).effect("/state", json!("revoked"))
                }
                Action::ReadApiKeyActivity => {
                    Cell::new(Method::GET, format!("{one}/activity"), StatusCode::OK, resource).effect("/id", json!(id))
                }
                // No grace: an allowed reroll stops the old key at once, which the probe sees.
                _ => Cell::new(Method::POST, format!("{one}/reroll"), StatusCode::OK, resource)
                    .body(json!({"grace_seconds": 0}))
                    .effect("/id", json!(id)),
            };
            cell.probe(Probe::ApiKey { id, key })
        }
        Action::VerifyApiKey => {
            let (id, key) = create_cell_api_key(app, action).await;
            Cell::new(Method::POST, "/v1/apikeys/verify", StatusCode::OK, "apikeys")
                .body(json!({"key": key}))
                .effect("/principal", json!(format!("cell-{}", action.as_str())))
                .resource_if_allowed(format!("apikey:{id}"))
                .probe(Probe::ApiKey { id, key })
        }
    }
}

/// Everything `probe` watches, plus every key (metadata and usage counters), as root.
async fn observe(app: &TestApp, probe: &Probe) -> Value {
    let keys = app.get("/v1/keys?limit=1000").await;
    let watched = match probe {
        Probe::Nothing => Value::Null,
        Probe::Key(name) => without_request_id(app.get(&format!("/v1/keys/{name}")).await),
        Probe::Token(token) => without_request_id(app.send(Method::GET, "/v1/auth/whoami", Some(token), None).await),
        Probe::Credential(id) => without_request_id(app.get(&format!("/v1/credentials/{id}")).await),
        Probe::Credentials => without_request_id(app.get("/v1/credentials?limit=1000").await),
        Probe::ApiKey { id, key } => {
            // Verify first: a verification notes a last use, which the read then shows
            // (the clock stands still, so the next observation sees the same time).
            let verified = app.post("/v1/apikeys/verify", json!({"key": key})).await;
            let read = without_request_id(app.get(&format!("/v1/apikeys/{id}")).await);
            json!({"verified": verified.body, "read": read})
        }
        Probe::ApiKeys => {
            let keys = app.state.apikeys.list(None, 1000).await.expect("list API keys");
            json!(keys.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>())
        }
        Probe::Keks => {
            let r = app.get("/v1/sys/kek").await;
            json!({"current": r.body["current_kek_id"], "all": r.body["kek_ids"]})
        }
        Probe::Approvals => without_request_id(app.get("/v1/approvals?limit=1000").await),
        Probe::WrappingKey => {
            let r = app.get("/v1/wrapping-key").await;
            json!({"version": r.body["version"], "fingerprint": r.body["fingerprint"]})
        }
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
