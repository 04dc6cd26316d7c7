//! The Vault Transit-compatible API against hvac, unchanged but for its URL and token: HMAC
//! keys (create, read, list, hmac, verify true and false, rotate, an old version verifying
//! until `min_decryption_version` passes it, batch HMAC), encryption keys (encrypt and
//! decrypt with a context, a wrong context refused, rewrap, data keys), Vault's error shape,
//! the same policies and the same audit trail as the native API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::run_client;
use crate::helpers::{ROOT_TOKEN, b64, spawn_app};

/// What the script does with hvac, printed as one JSON object for the test to check.
const HMAC_SCRIPT: &str = r#"
import base64, json, sys
import hvac
url, root, service = sys.argv[1:4]
root_client = hvac.Client(url=url, token=root)
admin = root_client.secrets.transit
svc = hvac.Client(url=url, token=service)
transit = svc.secrets.transit
out = {}
name = "payments.transit"
msg = base64.b64encode(b"order 42 paid").decode()
other = base64.b64encode(b"order 43 paid").decode()

# hvac's create_key checks key_type against a list older than Vault's `hmac` keys (Vault
# 1.12): the call goes through hvac's adapter, as a user of hvac does it.
def create_hmac_key(key):
    return root_client.adapter.post("/v1/transit/keys/" + key, json={"type": "hmac"})
out["create"] = create_hmac_key(name)["data"]
out["create_again"] = create_hmac_key(name)["data"]["latest_version"]
out["read"] = admin.read_key(name)
out["list"] = admin.list_keys()
h1 = transit.generate_hmac(name, msg)
out["hmac"] = h1
h1 = h1["data"]["hmac"]
out["valid"] = transit.verify_signed_data(name, msg, hmac=h1)["data"]["valid"]
out["invalid"] = transit.verify_signed_data(name, other, hmac=h1)["data"]["valid"]
out["sha512_refused"] = None
try:
    transit.generate_hmac(name, msg, algorithm="sha2-512")
except hvac.exceptions.InvalidRequest as e:
    out["sha512_refused"] = str(e)

out["rotated"] = admin.rotate_key(name)["data"]["latest_version"]
h2 = transit.generate_hmac(name, msg)["data"]["hmac"]
out["h2"] = h2
out["old_still_valid"] = transit.verify_signed_data(name, msg, hmac=h1)["data"]["valid"]
out["config"] = admin.update_key_configuration(name, min_decryption_version=2)["data"]["min_decryption_version"]
out["old_refused"] = None
try:
    transit.verify_signed_data(name, msg, hmac=h1)
except hvac.exceptions.InvalidRequest as e:
    out["old_refused"] = str(e)
out["new_valid"] = transit.verify_signed_data(name, msg, hmac=h2)["data"]["valid"]

out["batch"] = svc.adapter.post(
    "/v1/transit/hmac/" + name,
    json={"batch_input": [{"input": msg, "reference": "a"}, {"input": "not base64!", "reference": "b"}]},
)["data"]["batch_results"]

out["forbidden"] = None
create_hmac_key("billing.transit")
try:
    transit.generate_hmac("billing.transit", msg)
except hvac.exceptions.Forbidden as e:
    out["forbidden"] = str(e)
out["unauthenticated"] = None
try:
    hvac.Client(url=url, token="svt_not-a-token-at-all-0000000000").secrets.transit.generate_hmac(name, msg)
except hvac.exceptions.Forbidden as e:
    out["unauthenticated"] = str(e)
out["missing"] = None
try:
    admin.read_key("no.such.key")
except hvac.exceptions.InvalidPath as e:
    out["missing"] = str(e)
out["delete_refused"] = None
try:
    admin.delete_key(name)
except hvac.exceptions.InvalidRequest as e:
    out["delete_refused"] = str(e)
admin.update_key_configuration(name, deletion_allowed=True)
out["deleted"] = admin.delete_key(name).status_code
print(json.dumps(out))
"#;

/// The shape of Vault's documented example answers (API docs of the Transit engine): the
/// members every client may read, with their JSON types.
fn assert_same_shape(documented: &Value, ours: &Value, what: &str) {
    match (documented, ours) {
        (Value::Object(doc), Value::Object(got)) => {
            for (k, v) in doc {
                let theirs = got.get(k).unwrap_or_else(|| panic!("{what}: no `{k}` in {ours}"));
                assert_same_shape(v, theirs, &format!("{what}.{k}"));
            }
        }
        (Value::Array(doc), Value::Array(got)) => {
            if let (Some(d), Some(g)) = (doc.first(), got.first()) {
                assert_same_shape(d, g, &format!("{what}[0]"));
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Null, _) => {}
        _ => panic!("{what}: documented {documented}, ours {ours}"),
    }
}

async fn service_token(app: &crate::helpers::TestApp) -> String {
    let r = app
        .post(
            "/v1/auth/tokens",
            json!({"principal": "payments", "groups": ["service"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body["token"].as_str().expect("a token").to_owned()
}

#[tokio::test]
async fn hvac_drives_hmac_keys_as_it_drives_vault() {
    let app = spawn_app().await;
    let service = service_token(&app).await;
    let out: Value =
        serde_json::from_str(&run_client(HMAC_SCRIPT, vec![app.url(""), ROOT_TOKEN.into(), service.clone()]).await)
            .expect("the script prints JSON");

    // Vault's documented example answers, member for member.
    let read_example = json!({"request_id": "", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": {"type": "aes256-gcm96", "deletion_allowed": false, "derived": false, "exportable": false,
                 "allow_plaintext_backup": false, "keys": {"1": 1442851412}, "min_decryption_version": 1,
                 "min_encryption_version": 0, "name": "foo", "supports_encryption": true,
                 "supports_decryption": true, "supports_derivation": true, "supports_signing": false},
        "wrap_info": null, "warnings": null, "auth": null});
    assert_same_shape(&read_example, &out["read"], "read");
    assert_same_shape(&json!({"data": {"keys": ["foo", "bar"]}}), &out["list"], "list");
    assert_same_shape(&json!({"data": {"hmac": "vault:v1:…"}}), &out["hmac"], "hmac");

    assert_eq!(out["create"]["type"], "hmac", "{}", out["create"]);
    assert_eq!(out["create"]["deletion_allowed"], false, "Vault's default");
    assert_eq!(out["create_again"], 1, "a second create leaves the key as it is");
    assert_eq!(out["read"]["data"]["name"], "payments.transit");
    assert_eq!(out["list"]["data"]["keys"], json!(["payments.transit"]));
    let h1 = out["hmac"]["data"]["hmac"].as_str().expect("an hmac");
    assert!(h1.starts_with("vault:v1:"), "{h1}");
    assert_eq!(out["valid"], true, "its own HMAC verifies");
    assert_eq!(out["invalid"], false, "another message's does not");
    assert!(
        out["sha512_refused"].as_str().is_some_and(|m| m.contains("sha2-256")),
        "a key is bound to its hash: {}",
        out["sha512_refused"]
    );
    assert_eq!(out["rotated"], 2);
    assert!(
        out["h2"].as_str().is_some_and(|h| h.starts_with("vault:v2:")),
        "{}",
        out["h2"]
    );
    assert_eq!(out["old_still_valid"], true, "v1 verifies after the rotation");
    assert_eq!(out["config"], 2);
    assert!(
        out["old_refused"]
            .as_str()
            .is_some_and(|m| m.contains("min_verify_version")),
        "v1 is refused once min_decryption_version passes it: {}",
        out["old_refused"]
    );
    assert_eq!(out["new_valid"], true);

    let batch = out["batch"].as_array().expect("batch_results");
    assert_eq!(batch.len(), 2);
    assert!(
        batch[0]["hmac"].as_str().is_some_and(|h| h.starts_with("vault:v2:")),
        "{batch:?}"
    );
    assert_eq!(batch[0]["reference"], "a");
    assert!(
        batch[1]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("INVALID_ARGUMENT")),
        "{batch:?}"
    );
    assert_eq!(batch[1]["reference"], "b");

    assert!(
        out["forbidden"]
            .as_str()
            .is_some_and(|m| m.contains("PERMISSION_DENIED")),
        "the service policies decide Transit calls too: {}",
        out["forbidden"]
    );
    assert!(
        out["unauthenticated"]
            .as_str()
            .is_some_and(|m| m.contains("UNAUTHENTICATED")),
        "{}",
        out["unauthenticated"]
    );
    assert!(
        out["missing"].is_string(),
        "a missing key reads as 404: {}",
        out["missing"]
    );
    assert!(
        out["delete_refused"]
            .as_str()
            .is_some_and(|m| m.contains("deletion_allowed")),
        "{}",
        out["delete_refused"]
    );
    assert_eq!(out["deleted"], 204);

    // The Transit HMAC is the native one: the native API verifies it (the key now pending
    // deletion, so through its record of the usage instead).
    let r = app.get("/v1/keys/payments.transit").await;
    assert_eq!(r.body["state"], "pending_deletion", "{}", r.body);
    let signs: u64 = {
        app.flush_usage().await;
        let r = app.get("/v1/keys/payments.transit").await;
        r.body["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| v["sign_count"].as_u64().unwrap_or(0))
            .sum()
    };
    assert_eq!(signs, 3, "the two single HMACs and the batch's good item are counted");

    // The trail holds Transit's calls as the native ones, marked with the API.
    let trail = std::fs::read_to_string(app.home.audit_file()).expect("the audit file");
    let transit_signs = trail
        .lines()
        .filter(|l| l.contains(r#""action":"Sign""#) && l.contains(r#""api":"vault-transit""#))
        .count();
    assert!(transit_signs >= 3, "Sign events marked vault-transit: {transit_signs}");
    assert!(
        trail
            .lines()
            .any(|l| l.contains(r#""action":"UpdateKey""#) && l.contains(r#""api":"vault-transit""#)),
        "config is audited as UpdateKey"
    );
    assert!(
        trail
            .lines()
            .any(|l| l.contains(r#""action":"CreateKey""#) && l.contains(r#""outcome":"exists""#)),
        "a second create is recorded as finding the key, not as making it"
    );
    assert!(!trail.contains(&service), "no token in the trail");
}

/// The Transit HMAC equals the native one for the same key and version.
#[tokio::test]
async fn a_transit_hmac_verifies_through_the_native_api() {
    let app = spawn_app().await;
    let r = app
        .send(
            Method::POST,
            "/v1/transit/keys/webhooks",
            Some(ROOT_TOKEN),
            Some(br#"{"type":"hmac","algorithm":"sha2-512"}"#.to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["data"]["algorithm"], "sha2-512");
    let message = b64(b"payload");
    let body = json!({"input": message}).to_string().into_bytes();
    let r = app
        .send(
            Method::POST,
            "/v1/transit/hmac/webhooks/sha2-512",
            Some(ROOT_TOKEN),
            Some(body),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let hmac = r.body["data"]["hmac"].as_str().expect("hmac");
    let tag = hmac.strip_prefix("vault:v1:").expect("the vault prefix");
    let r = app
        .post(
            "/v1/keys/webhooks/verify",
            json!({"message": message, "signature": tag, "key_version": 1}),
        )
        .await;
    assert_eq!(r.body["valid"], true, "{}", r.body);

    // Vault's error shape: `{"errors":[…]}`.
    let r = app
        .send(Method::POST, "/v1/transit/hmac/webhooks", None, Some(body_of(&message)))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body["errors"][0]
            .as_str()
            .is_some_and(|e| e.starts_with("UNAUTHENTICATED")),
        "{}",
        r.body
    );
    let r = app
        .send(
            Method::POST,
            "/v1/transit/hmac/webhooks",
            Some(ROOT_TOKEN),
            Some(b"[1]".to_vec()),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = app
        .send(Method::POST, "/v1/transit/nothing/here", Some(ROOT_TOKEN), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert!(r.body["errors"].is_array(), "{}", r.body);
}

fn body_of(message: &str) -> Vec<u8> {
    json!({"input": message}).to_string().into_bytes()
}

const CIPHER_SCRIPT: &str = r#"
import base64, json, sys
import hvac
url, root = sys.argv[1:3]
t = hvac.Client(url=url, token=root).secrets.transit
out = {}
name = "orders.data"
t.create_key(name)
pt = base64.b64encode(b"card ending 4242").decode()
ctx = base64.b64encode(b"order-42").decode()
enc = t.encrypt_data(name, pt, context=ctx)
out["encrypt"] = enc
ct = enc["data"]["ciphertext"]
out["decrypt"] = t.decrypt_data(name, ct, context=ctx)
out["wrong_context"] = None
try:
    t.decrypt_data(name, ct, context=base64.b64encode(b"order-43").decode())
except hvac.exceptions.InvalidRequest as e:
    out["wrong_context"] = str(e)
t.rotate_key(name)
out["rewrap"] = t.rewrap_data(name, ct, context=ctx)["data"]["ciphertext"]
out["rewrapped_plaintext"] = t.decrypt_data(name, out["rewrap"], context=ctx)["data"]["plaintext"]
dk = t.generate_data_key(name, key_type="plaintext")["data"]
out["datakey"] = dk
out["datakey_opened"] = t.decrypt_data(name, dk["ciphertext"])["data"]["plaintext"]
out["wrapped_datakey"] = t.generate_data_key(name, key_type="wrapped")["data"]
out["batch"] = t.encrypt_data(name, None, batch_input=[{"plaintext": pt, "context": ctx}, {"plaintext": pt}])["data"]["batch_results"]
print(json.dumps(out))
"#;

#[tokio::test]
async fn hvac_encrypts_and_decrypts_with_a_context() {
    let app = spawn_app().await;
    let out: Value = serde_json::from_str(&run_client(CIPHER_SCRIPT, vec![app.url(""), ROOT_TOKEN.into()]).await)
        .expect("the script prints JSON");
    assert_same_shape(
        &json!({"data": {"ciphertext": "vault:v1:…", "key_version": 1}}),
        &out["encrypt"],
        "encrypt",
    );
    assert_same_shape(&json!({"data": {"plaintext": "…"}}), &out["decrypt"], "decrypt");
    let ct = out["encrypt"]["data"]["ciphertext"].as_str().expect("ciphertext");
    assert!(ct.starts_with("vault:v1:"), "{ct}");
    assert_eq!(out["decrypt"]["data"]["plaintext"], b64(b"card ending 4242"));
    assert!(
        out["wrong_context"].is_string(),
        "another context does not decrypt: {}",
        out["wrong_context"]
    );
    assert!(
        out["rewrap"].as_str().is_some_and(|c| c.starts_with("vault:v2:")),
        "{}",
        out["rewrap"]
    );
    assert_eq!(out["rewrapped_plaintext"], b64(b"card ending 4242"));
    let dk = &out["datakey"];
    assert_eq!(
        crate::helpers::unb64(dk["plaintext"].as_str().expect("plaintext")).len(),
        32
    );
    assert_eq!(
        out["datakey_opened"], dk["plaintext"],
        "the data key's ciphertext opens to it"
    );
    assert!(out["wrapped_datakey"]["plaintext"].is_null(), "wrapped: no plaintext");
    assert!(out["wrapped_datakey"]["ciphertext"].is_string());
    let batch = out["batch"].as_array().expect("batch");
    assert_eq!(batch.len(), 2);
    assert!(
        batch
            .iter()
            .all(|b| b["ciphertext"].as_str().is_some_and(|c| c.starts_with("vault:v2:")))
    );

    let trail = std::fs::read_to_string(app.home.audit_file()).expect("the audit file");
    for action in ["Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey"] {
        assert!(
            trail
                .lines()
                .any(|l| l.contains(&format!(r#""action":"{action}""#)) && l.contains(r#""api":"vault-transit""#)),
            "{action} audited with the api"
        );
    }
    assert!(!trail.contains("card ending"), "no plaintext in the trail");
}
