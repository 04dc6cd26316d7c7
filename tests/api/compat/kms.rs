//! The AWS KMS-compatible API against boto3, unchanged but for its endpoint and credential:
//! GenerateMac and VerifyMac (valid, and invalid → `KMSInvalidMacException`), DescribeKey,
//! ListKeys, ListAliases, CreateKey, Encrypt/Decrypt with an EncryptionContext (a wrong one
//! fails), GenerateDataKey, ReEncrypt; a request signed with an unknown or deactivated
//! credential refused in KMS's shape; the signer decided by the same policies, audited as the
//! native operations.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sigvault::clock::Clock;

use super::run_client;
use crate::helpers::{TestApp, b64, spawn_app};

const SCRIPT: &str = r#"
import base64, json, sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
url, svc_id, svc_secret, admin_id, admin_secret, deactivated_id, deactivated_secret = sys.argv[1:8]
def kms(key_id, secret):
    return boto3.client("kms", endpoint_url=url, region_name="eu-west-1",
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))
svc = kms(svc_id, svc_secret)
admin = kms(admin_id, admin_secret)
out = {}
def error_of(call):
    try:
        call()
        return None
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]

msg = b"order 42 paid"
mac = svc.generate_mac(KeyId="payments.mac", Message=msg, MacAlgorithm="HMAC_SHA_256")
out["mac"] = base64.b64encode(mac["Mac"]).decode()
out["mac_key_id"] = mac["KeyId"]
out["valid"] = svc.verify_mac(KeyId="alias/payments.mac", Message=msg, Mac=mac["Mac"], MacAlgorithm="HMAC_SHA_256")["MacValid"]
out["invalid"] = error_of(lambda: svc.verify_mac(KeyId="payments.mac", Message=b"order 43 paid", Mac=mac["Mac"], MacAlgorithm="HMAC_SHA_256"))
out["wrong_algorithm"] = error_of(lambda: svc.generate_mac(KeyId="payments.mac", Message=msg, MacAlgorithm="HMAC_SHA_512"))
out["forbidden"] = error_of(lambda: svc.generate_mac(KeyId="billing.mac", Message=msg, MacAlgorithm="HMAC_SHA_256"))
out["missing"] = error_of(lambda: admin.generate_mac(KeyId="no.such.key", Message=msg, MacAlgorithm="HMAC_SHA_256"))
out["disabled"] = error_of(lambda: admin.generate_mac(KeyId="payments.off", Message=msg, MacAlgorithm="HMAC_SHA_256"))

described = admin.describe_key(KeyId=mac["KeyId"])["KeyMetadata"]
out["described"] = {k: described[k] for k in ["KeyId", "Arn", "KeySpec", "KeyUsage", "KeyState", "Enabled", "MacAlgorithms"]}
out["service_may_not_describe"] = error_of(lambda: svc.describe_key(KeyId="payments.mac"))
out["keys"] = sorted(k["KeyId"] for k in admin.list_keys()["Keys"])
out["aliases"] = sorted(a["AliasName"] for a in admin.list_aliases()["Aliases"])
created = admin.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC", Description="webhooks",
                           Tags=[{"TagKey": "team", "TagValue": "payments"}])["KeyMetadata"]
out["created"] = {k: created[k] for k in ["KeyId", "KeySpec", "Description", "KeyState"]}
out["created_mac"] = len(admin.generate_mac(KeyId=created["Arn"], Message=msg, MacAlgorithm="HMAC_SHA_512")["Mac"])

ctx = {"order": "42", "tenant": "acme"}
enc = svc.encrypt(KeyId="payments.data", Plaintext=b"card ending 4242", EncryptionContext=ctx)
out["encrypted_key_id"] = enc["KeyId"]
out["decrypted"] = svc.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=dict(reversed(list(ctx.items()))))["Plaintext"].decode()
out["wrong_context"] = error_of(lambda: svc.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext={"order": "43", "tenant": "acme"}))
out["no_context"] = error_of(lambda: svc.decrypt(CiphertextBlob=enc["CiphertextBlob"]))
out["mangled"] = error_of(lambda: svc.decrypt(CiphertextBlob=b"not a blob at all"))
dk = svc.generate_data_key(KeyId="payments.data", KeySpec="AES_256", EncryptionContext=ctx)
out["data_key_len"] = len(dk["Plaintext"])
out["data_key_opens"] = svc.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
out["data_key_without"] = "Plaintext" in svc.generate_data_key_without_plaintext(KeyId="payments.data", KeySpec="AES_256")
re = svc.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext=ctx,
                    DestinationKeyId="payments.data", DestinationEncryptionContext={"moved": "yes"})
out["reencrypted"] = svc.decrypt(CiphertextBlob=re["CiphertextBlob"], EncryptionContext={"moved": "yes"})["Plaintext"].decode()

out["unknown_credential"] = error_of(lambda: kms("SVAKUNKNOWNUNKNOWNUN", "x" * 40).list_keys())
out["deactivated_credential"] = error_of(lambda: kms(deactivated_id, deactivated_secret).generate_mac(KeyId="payments.mac", Message=msg, MacAlgorithm="HMAC_SHA_256"))
out["bad_secret"] = error_of(lambda: kms(svc_id, "y" * 40).generate_mac(KeyId="payments.mac", Message=msg, MacAlgorithm="HMAC_SHA_256"))
print(json.dumps(out))
"#;

/// A credential made by root: its id and secret.
async fn credential(app: &TestApp, principal: &str, groups: Value) -> (String, String) {
    let r = app
        .post("/v1/credentials", json!({"principal": principal, "groups": groups}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["groups"], groups, "the credential shows its groups");
    let field = |k: &str| r.body[k].as_str().expect("id and secret").to_owned();
    (field("access_key_id"), field("secret_access_key"))
}

/// The app's clock set to now: botocore signs with the real time, which the vault checks.
fn clock_to_now(app: &TestApp) {
    let delta = time::OffsetDateTime::now_utc() - app.clock.now();
    app.clock.advance(delta);
}

#[tokio::test]
async fn boto3_drives_macs_keys_and_encryption_as_it_drives_aws_kms() {
    let app = spawn_app().await;
    clock_to_now(&app);
    for (name, algorithm) in [
        ("payments.mac", "hmac-sha256"),
        ("billing.mac", "hmac-sha256"),
        ("payments.off", "hmac-sha256"),
        ("payments.data", "aes256-gcm"),
    ] {
        let r = app
            .post("/v1/keys", json!({"name": name, "algorithm": algorithm}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let r = app.patch("/v1/keys/payments.off", json!({"state": "disabled"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (svc_id, svc_secret) = credential(&app, "payments", json!(["service"])).await;
    let (admin_id, admin_secret) = credential(&app, "kms-admin", json!(["admin"])).await;
    let (off_id, off_secret) = credential(&app, "payments", json!(["service"])).await;
    let r = app
        .patch(&format!("/v1/credentials/{off_id}"), json!({"state": "inactive"}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let out: Value = serde_json::from_str(
        &run_client(
            SCRIPT,
            vec![
                app.url("/"),
                svc_id.clone(),
                svc_secret.clone(),
                admin_id,
                admin_secret,
                off_id,
                off_secret,
            ],
        )
        .await,
    )
    .expect("the script prints JSON");

    // GenerateMac is the native HMAC of the key's latest version.
    let r = app
        .post("/v1/keys/payments.mac/sign", json!({"message": b64(b"order 42 paid")}))
        .await;
    assert_eq!(out["mac"], r.body["signature"], "the KMS MAC is the native one");
    assert_eq!(out["mac_key_id"], "arn:aws:kms:eu-west-1:000000000000:key/payments.mac");
    assert_eq!(out["valid"], true);
    assert_eq!(out["invalid"], json!(["KMSInvalidMacException", 400]));
    assert_eq!(out["wrong_algorithm"], json!(["InvalidKeyUsageException", 400]));
    assert_eq!(
        out["forbidden"],
        json!(["AccessDeniedException", 400]),
        "the service policies decide"
    );
    assert_eq!(out["missing"], json!(["NotFoundException", 400]));
    assert_eq!(out["disabled"], json!(["DisabledException", 400]));

    assert_eq!(
        out["described"],
        json!({"KeyId": "payments.mac", "Arn": "arn:aws:kms:eu-west-1:000000000000:key/payments.mac",
               "KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC", "KeyState": "Enabled",
               "Enabled": true, "MacAlgorithms": ["HMAC_SHA_256"]})
    );
    assert_eq!(out["service_may_not_describe"], json!(["AccessDeniedException", 400]));
    let created = out["created"]["KeyId"].as_str().expect("a key id");
    assert!(created.starts_with("kms-"), "{created}");
    assert_eq!(out["created"]["KeySpec"], "HMAC_512");
    assert_eq!(out["created"]["Description"], "webhooks");
    assert_eq!(out["created_mac"], 64);
    let keys = out["keys"].as_array().expect("keys");
    for name in ["payments.mac", "billing.mac", "payments.data"] {
        assert!(keys.contains(&json!(name)), "{name} listed: {keys:?}");
        assert!(
            out["aliases"]
                .as_array()
                .expect("aliases")
                .contains(&json!(format!("alias/{name}"))),
            "{name} has its alias"
        );
    }
    let r = app.get(&format!("/v1/keys/{created}")).await;
    assert_eq!(
        r.body["owner"], "kms-admin",
        "CreateKey's key is the signer's: {}",
        r.body
    );
    assert_eq!(r.body["tags"]["team"], "payments");

    assert_eq!(
        out["encrypted_key_id"],
        "arn:aws:kms:eu-west-1:000000000000:key/payments.data"
    );
    assert_eq!(
        out["decrypted"], "card ending 4242",
        "the context's order does not matter"
    );
    assert_eq!(out["wrong_context"], json!(["InvalidCiphertextException", 400]));
    assert_eq!(out["no_context"], json!(["InvalidCiphertextException", 400]));
    assert_eq!(out["mangled"], json!(["InvalidCiphertextException", 400]));
    assert_eq!(out["data_key_len"], 32);
    assert_eq!(out["data_key_opens"], true);
    assert_eq!(out["data_key_without"], false);
    assert_eq!(out["reencrypted"], "card ending 4242");

    assert_eq!(out["unknown_credential"], json!(["UnrecognizedClientException", 400]));
    assert_eq!(
        out["deactivated_credential"],
        json!(["UnrecognizedClientException", 400])
    );
    assert_eq!(out["bad_secret"], json!(["InvalidSignatureException", 400]));

    // Audited as the native operations, marked with the API; never a secret or plaintext.
    let trail = std::fs::read_to_string(app.home.audit_file()).expect("the audit file");
    for action in [
        "Sign",
        "Verify",
        "GetKey",
        "ListKeys",
        "CreateKey",
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "ReEncrypt",
    ] {
        assert!(
            trail
                .lines()
                .any(|l| l.contains(&format!(r#""action":"{action}""#)) && l.contains(r#""api":"aws-kms""#)),
            "{action} audited with the api"
        );
    }
    assert!(
        trail
            .lines()
            .any(|l| l.contains(r#""api":"aws-kms""#) && l.contains(r#""outcome":"UNAUTHENTICATED""#)),
        "refused signatures are audited"
    );
    assert!(!trail.contains(&svc_secret), "no secret in the trail");
    assert!(!trail.contains("card ending"), "no plaintext in the trail");
}

/// A credential's groups are the creator's to give only within its own (admin aside).
#[tokio::test]
async fn a_custodian_gives_a_credential_only_its_own_groups() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/v1/auth/tokens",
            json!({"principal": "carol", "groups": ["custodian"]}),
        )
        .await;
    let token = r.body["token"].as_str().expect("a token").to_owned();
    let create = |groups: Value| {
        let body = json!({"principal": "ci", "groups": groups}).to_string().into_bytes();
        app.send(reqwest::Method::POST, "/v1/credentials", Some(&token), Some(body))
    };
    let r = create(json!(["admin"])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "PERMISSION_DENIED");
    // Not even `service`: a custodian does not sign, so neither may its credentials.
    let r = create(json!(["service"])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = create(json!(["custodian"])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["groups"], json!(["custodian"]));
    // Without groups: none (an admin's default would be service).
    let body = json!({"principal": "ci"}).to_string().into_bytes();
    let r = app
        .send(reqwest::Method::POST, "/v1/credentials", Some(&token), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["groups"], json!([]));
    let r = app.post("/v1/credentials", json!({"principal": "ci2"})).await;
    assert_eq!(r.body["groups"], json!(["service"]), "an admin's default");
}

/// Only a KMS client's request is the KMS API's: without `X-Amz-Target` the path is the
/// native API's 404; an operation sigvault does not serve is KMS's `UnknownOperationException`,
/// audited by nobody (no key was touched).
#[tokio::test]
async fn requests_without_a_kms_target_fall_through_and_unknown_operations_are_kms_errors() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    let r = client.post(app.url("/")).body("{}").send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .post(app.url("/"))
        .header("x-amz-target", "TrentService.Sign")
        .header("content-type", "application/x-amz-json-1.1")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap_or_default(),
        "application/x-amz-json-1.1"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["__type"], "UnknownOperationException", "{body}");
    let r = client
        .post(app.url("/"))
        .header("x-amz-target", "TrentService.ListKeys")
        .body("{}")
        .send()
        .await
        .expect("sent");
    let body: Value = r.json().await.expect("json");
    assert_eq!(
        body["__type"], "MissingAuthenticationTokenException",
        "an unsigned request: {body}"
    );
}

/// A KMS request's signature must cover its body and its operation, in the header form: a
/// declared unsigned payload, a presigned URL or an unsigned `X-Amz-Target` is refused, so a
/// seen signature cannot carry another body or operation.
const LOOSE_SIGNATURES: &str = r#"
import json, sys, urllib.request
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, key_id, secret = sys.argv[1:4]
creds = Credentials(key_id, secret)
body = json.dumps({"KeyId": "payments.mac", "Message": "aGk=", "MacAlgorithm": "HMAC_SHA_256"})
def send(req, body):
    r = urllib.request.Request(req.url, data=body.encode(), method="POST", headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r) as resp:
            return [resp.status, json.loads(resp.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read()).get("__type")]
headers = {"X-Amz-Target": "TrentService.GenerateMac", "Content-Type": "application/x-amz-json-1.1"}
out = {}
ok = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
SigV4Auth(creds, "kms", "eu-west-1").add_auth(ok)
out["signed"] = send(ok, body)[0]
unsigned = AWSRequest(method="POST", url=url, data=body, headers=dict(headers, **{"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}))
SigV4Auth(creds, "kms", "eu-west-1").add_auth(unsigned)
out["unsigned_payload"] = send(unsigned, body.replace("aGk=", "aG8="))
presigned = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
SigV4QueryAuth(creds, "kms", "eu-west-1", expires=3600).add_auth(presigned)
out["presigned"] = send(presigned, body)
no_target = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/x-amz-json-1.1"})
SigV4Auth(creds, "kms", "eu-west-1").add_auth(no_target)
no_target.headers["X-Amz-Target"] = "TrentService.GenerateMac"
out["unsigned_target"] = send(no_target, body)
print(json.dumps(out))
"#;

#[tokio::test]
async fn a_kms_signature_must_cover_the_body_and_the_operation_in_the_header_form() {
    let app = spawn_app().await;
    clock_to_now(&app);
    let r = app
        .post("/v1/keys", json!({"name": "payments.mac", "algorithm": "hmac-sha256"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let (id, secret) = credential(&app, "payments", json!(["service"])).await;
    let out: Value = serde_json::from_str(&run_client(LOOSE_SIGNATURES, vec![app.url("/"), id.clone(), secret]).await)
        .expect("the script prints JSON");
    assert_eq!(out["signed"], 200, "the control: a proper signature passes");
    for case in ["unsigned_payload", "unsigned_target"] {
        assert_eq!(out[case], json!([400, "IncompleteSignatureException"]), "{case}: {out}");
    }
    // A presigned request is refused, whichever check stops it first.
    assert_eq!(out["presigned"][0], 400, "{out}");
    assert!(
        ["IncompleteSignatureException", "InvalidSignatureException"]
            .contains(&out["presigned"][1].as_str().unwrap_or_default()),
        "{out}"
    );

    // Nobody derives a signing key for service kms (it would sign requests to this vault).
    let r = app
        .post(
            "/v1/sigv4/signing-key",
            json!({"access_key_id": id, "date": time::OffsetDateTime::now_utc().date().to_string().replace('-', ""),
                   "region": "eu-west-1", "service": "kms"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(r.code(), "PERMISSION_DENIED");
}

/// Failed signatures count against the address and the access key id, as failed tokens do:
/// past `auth.max_failures` the address gets `ThrottlingException` (with `Retry-After`)
/// without its signature being checked.
#[tokio::test]
async fn failed_signatures_are_limited_as_failed_tokens_are() {
    let app = crate::helpers::spawn_app_in(crate::helpers::AppHome {
        auth: sigvault::auth::AuthSettings {
            max_failures: 3,
            failure_window: time::Duration::minutes(1),
            max_token_ttl: time::Duration::days(365),
        },
        ..crate::helpers::AppHome::new()
    })
    .await;
    clock_to_now(&app);
    let now = time::OffsetDateTime::now_utc();
    let date = format!("{:04}{:02}{:02}", now.year(), u8::from(now.month()), now.day());
    let amz_date = format!("{date}T{:02}{:02}{:02}Z", now.hour(), now.minute(), now.second());
    let forged = |i: usize| {
        reqwest::Client::new()
            .post(app.url("/"))
            .header("x-amz-target", "TrentService.ListKeys")
            .header("x-amz-date", &amz_date)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential=SVAKGUESSGUESSGUESS1/{date}/eu-west-1/kms/aws4_request, \
                     SignedHeaders=host;x-amz-date;x-amz-target, Signature={}",
                    format!("{i:x}").repeat(64).chars().take(64).collect::<String>()
                ),
            )
            .body("{}")
            .send()
    };
    for i in 0..3 {
        let r = forged(i).await.expect("sent");
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["__type"], "UnrecognizedClientException", "guess {i}: {body}");
    }
    let r = forged(3).await.expect("sent");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.headers().get("retry-after").is_some(),
        "a throttled answer says when to retry"
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["__type"], "ThrottlingException", "{body}");
}
