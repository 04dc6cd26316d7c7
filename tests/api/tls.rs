//! TLS on the server and callers named by their client certificates: a CA, a server
//! certificate, client certificates (URI SAN, DNS SAN) and an untrusted CA's client
//! certificate are made here with rcgen; clients are reqwest over rustls trusting only the
//! test CA.
//!
//! `required` refuses a client without a trusted certificate at the handshake; `optional`
//! refuses an untrusted one at the handshake and answers 401 to a client that sent neither
//! certificate nor token; a verified certificate's SAN is the caller, and a bearer token,
//! when sent, still wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sigvault::auth::certificate::{CertificateGroups, DEFAULT_CLIENT_GROUPS};
use sigvault::tls::TlsSettings;
use sigvault::tls::{ClientAuth, TlsFiles};

use crate::helpers::{AppHome, ROOT_TOKEN, Reply, Run, TestApp, run_binary, spawn_app_in, spawn_dev, temp_dir};

const PAYMENTS: &str = "spiffe://example.org/payments";
const DNS_CLIENT: &str = "client.example.org";
const TRUSTED_CA: &str = "sigvault test clients CA";

/// PEM text of a certificate and its key.
struct Leaf {
    cert: String,
    key: String,
}

/// Everything a test needs, written once per test into its own directory.
struct Pki {
    dir: PathBuf,
    ca: String,
    /// URI SAN `spiffe://example.org/payments`, issued by the trusted CA.
    payments: Leaf,
    /// DNS SAN `client.example.org`, issued by the trusted CA.
    dns_client: Leaf,
    /// URI SAN `spiffe://example.org/payments` too, but issued by a CA the server does not trust.
    untrusted: Leaf,
    /// The same, issued by a CA that bears the trusted CA's name but not its key.
    forged: Leaf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA")
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, san: SanType, usage: ExtendedKeyUsagePurpose) -> Leaf {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![san];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("leaf");
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().expect("IA5 string"))
}

impl Pki {
    fn new() -> Self {
        let dir = temp_dir("tls");
        let trusted = ca(TRUSTED_CA);
        let server = {
            let mut params =
                CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("SANs");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &trusted).expect("server cert");
            Leaf {
                cert: cert.pem(),
                key: key.serialize_pem(),
            }
        };
        std::fs::write(dir.join("server.pem"), &server.cert).expect("write");
        std::fs::write(dir.join("server.key"), &server.key).expect("write");
        std::fs::write(dir.join("clients-ca.pem"), trusted.pem()).expect("write");
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        Self {
            payments: leaf(&trusted, uri(PAYMENTS), client.clone()),
            dns_client: leaf(
                &trusted,
                SanType::DnsName(DNS_CLIENT.try_into().expect("IA5 string")),
                client.clone(),
            ),
            untrusted: leaf(&ca("some other CA"), uri(PAYMENTS), client.clone()),
            forged: leaf(&ca(TRUSTED_CA), uri(PAYMENTS), client),
            ca: trusted.pem(),
            dir,
        }
    }

    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert_file: self.dir.join("server.pem"),
            key_file: self.dir.join("server.key"),
            client_ca_file: Some(self.dir.join("clients-ca.pem")),
        }
    }

    /// TLS settings for `client_auth` (no CA bundle with `none`).
    fn settings(&self, client_auth: ClientAuth) -> TlsSettings {
        let mut files = self.files();
        if client_auth == ClientAuth::None {
            files.client_ca_file = None;
        }
        // The payments certificate is an administrator here (it creates keys); other
        // certificate callers get the default group, `service`.
        let groups = CertificateGroups::new(
            BTreeMap::from([(PAYMENTS.to_owned(), vec!["admin".to_owned()])]),
            DEFAULT_CLIENT_GROUPS.iter().map(|g| (*g).to_owned()).collect(),
        );
        TlsSettings::load(&files, client_auth, groups).expect("TLS settings")
    }

    /// A client trusting only the test CA (the server's issuer), presenting `identity`.
    fn client(&self, identity: Option<&Leaf>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca.as_bytes()).expect("CA"));
        if let Some(leaf) = identity {
            let pem = format!("{}{}", leaf.cert, leaf.key);
            builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
        }
        builder.build().expect("client")
    }
}

/// A vault speaking TLS; its own `client` (used by `app.get` and friends, with the root
/// token) trusts the test CA and presents the payments certificate.
async fn spawn_tls_app(pki: &Pki, client_auth: ClientAuth) -> TestApp {
    let mut home = AppHome::new();
    home.tls = Some(pki.settings(client_auth));
    let mut app = spawn_app_in(home).await;
    app.client = pki.client(Some(&pki.payments));
    app
}

async fn get(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    token: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    app.send_with(client, Method::GET, path, token, None).await
}

/// The refusal a rustls client sees when the server rejects its certificate (or its lack
/// of one) during the handshake: a fatal alert, never an HTTP answer.
fn assert_refused_at_handshake(result: Result<Reply, reqwest::Error>, alert: &str) {
    let err = match result {
        Ok(reply) => panic!("expected a refused handshake, got {} {}", reply.status, reply.body),
        Err(e) => e,
    };
    let mut chain = format!("{err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    assert!(chain.contains(alert), "expected alert {alert}: {chain}");
}

/// The audit events naming `principal` (read with the root token).
async fn events_of(app: &TestApp, principal: &str) -> Vec<Value> {
    app.audit_events(&format!("principal={}", url_encode(principal))).await
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn required_mode_admits_a_trusted_certificate_as_its_uri_san_principal() {
    let pki = Pki::new();
    let app = spawn_tls_app(&pki, ClientAuth::Required).await;
    let payments = pki.client(Some(&pki.payments));

    let r = get(&app, &payments, "/v1/keys", None).await.expect("served");
    assert_eq!(r.status, StatusCode::OK, "no bearer token needed: {}", r.body);
    let r = app
        .send_with(
            &payments,
            Method::POST,
            "/v1/keys",
            None,
            Some(
                json!({"name": "by-cert", "algorithm": "hmac-sha256"})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await
        .expect("served");
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["owner"], PAYMENTS,
        "the key's owner defaults to the certificate's caller"
    );

    // A bearer token, when sent, still decides who is calling.
    let r = get(&app, &payments, "/v1/keys/by-cert", Some(ROOT_TOKEN))
        .await
        .expect("served");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get(
        &app,
        &payments,
        "/v1/keys/by-cert",
        Some("svt_not-a-valid-token-at-all"),
    )
    .await
    .expect("served");
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "a bad token is not rescued by the certificate"
    );

    let events = events_of(&app, PAYMENTS).await;
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["ListKeys", "CreateKey", "CreateKey"],
        "the create's intent, then its outcome: {events:?}"
    );
    for event in &events {
        assert_eq!(event["principal"], PAYMENTS);
        assert_eq!(event["decision"], "allow");
        assert_eq!(event["source_ip"], "127.0.0.1");
    }
    let root_reads = events_of(&app, "root").await;
    assert!(
        root_reads
            .iter()
            .any(|e| e["action"] == "GetKey" && e["outcome"] == "ok"),
        "the token-authenticated read is root's: {root_reads:?}"
    );
}

#[tokio::test]
async fn required_mode_refuses_a_client_without_a_certificate_at_the_handshake() {
    let pki = Pki::new();
    let app = spawn_tls_app(&pki, ClientAuth::Required).await;
    let anonymous = pki.client(None);
    assert_refused_at_handshake(
        get(&app, &anonymous, "/v1/keys", Some(ROOT_TOKEN)).await,
        "CertificateRequired",
    );
    // The server goes on serving the clients it trusts.
    let r = get(&app, &pki.client(Some(&pki.payments)), "/v1/sys/ping", None)
        .await
        .expect("served");
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_at_the_handshake_in_both_modes() {
    let pki = Pki::new();
    for mode in [ClientAuth::Required, ClientAuth::Optional] {
        let app = spawn_tls_app(&pki, mode).await;
        let impostor = pki.client(Some(&pki.untrusted));
        assert_refused_at_handshake(get(&app, &impostor, "/v1/keys", None).await, "UnknownCA");
        // A CA that copies the trusted CA's name fails on the signature.
        let forger = pki.client(Some(&pki.forged));
        assert_refused_at_handshake(get(&app, &forger, "/v1/keys", None).await, "DecryptError");
        let events = events_of(&app, PAYMENTS).await;
        assert_eq!(events, Vec::<Value>::new(), "{mode:?}: nothing reached a handler");
    }
}

#[tokio::test]
async fn optional_mode_answers_401_to_a_caller_with_neither_certificate_nor_token() {
    let pki = Pki::new();
    let app = spawn_tls_app(&pki, ClientAuth::Optional).await;
    let anonymous = pki.client(None);

    let r = get(&app, &anonymous, "/v1/keys", None).await.expect("served");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.code(), "UNAUTHENTICATED");
    let r = get(&app, &anonymous, "/v1/keys", Some(ROOT_TOKEN))
        .await
        .expect("served");
    assert_eq!(
        r.status,
        StatusCode::OK,
        "a token over TLS without a certificate: {}",
        r.body
    );
    let r = get(&app, &anonymous, "/v1/sys/ping", None).await.expect("served");
    assert_eq!(r.status, StatusCode::OK, "unauthenticated routes stay open");

    let r = get(&app, &pki.client(Some(&pki.payments)), "/v1/keys", None)
        .await
        .expect("served");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = get(&app, &pki.client(Some(&pki.dns_client)), "/v1/auth/whoami", None)
        .await
        .expect("served");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"principal": DNS_CLIENT, "groups": ["service"], "via": "mtls"}),
        "a DNS SAN names the caller when there is no URI SAN; unlisted callers are services"
    );
    let r = get(&app, &pki.client(Some(&pki.dns_client)), "/v1/keys", None)
        .await
        .expect("served");
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "a service may not list keys: {}",
        r.body
    );
    assert_eq!(events_of(&app, PAYMENTS).await.len(), 1);
    let by_dns = events_of(&app, DNS_CLIENT).await;
    assert_eq!(by_dns.len(), 2);
    assert_eq!(by_dns[0]["action"], "WhoAmI");
    assert_eq!(by_dns[1]["action"], "ListKeys");
    assert_eq!(by_dns[1]["decision"], "deny");
}

#[tokio::test]
async fn none_mode_serves_tls_to_bearer_token_callers_and_nothing_in_plain_http() {
    let pki = Pki::new();
    let app = spawn_tls_app(&pki, ClientAuth::None).await;
    let client = pki.client(None);

    let r = get(&app, &client, "/v1/keys", Some(ROOT_TOKEN)).await.expect("served");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.request_id.is_some(), "x-request-id over TLS too");
    let r = get(&app, &client, "/v1/keys", None).await.expect("served");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // A certificate is neither asked for nor used.
    let r = get(&app, &pki.client(Some(&pki.payments)), "/v1/keys", None)
        .await
        .expect("served");
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);

    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1/sys/ping", app.addr))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP on the TLS port: {plain:?}");
}

#[tokio::test]
async fn a_bad_tls_cert_file_stops_the_start_with_one_error_line() {
    let pki = Pki::new();
    let data_dir = temp_dir("tls-bad").join("data");
    std::fs::write(pki.dir.join("not-a-cert.pem"), "hello\n").expect("write");
    let files = pki.files();
    let path = |p: &Path| p.display().to_string();
    let cases = [
        (pki.dir.join("missing.pem"), "tls.cert_file: cannot read"),
        (pki.dir.join("not-a-cert.pem"), "tls.cert_file:"),
    ];
    for (cert_file, expected) in cases {
        let Run { code, stdout, stderr } = run_binary(
            &["dev", "--listen", "127.0.0.1:0", "--data-dir", &path(&data_dir)],
            &[
                ("SIGVAULT_TLS__CERT_FILE", &path(&cert_file)),
                ("SIGVAULT_TLS__KEY_FILE", &path(&files.key_file)),
            ],
        );
        assert_ne!(code, Some(0), "started: {stdout}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {stderr}");
        assert!(
            lines[0].starts_with(&format!("sigvault: error: {expected}")),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!data_dir.exists(), "a bad config leaves no data dir behind");
    }
}

#[tokio::test]
async fn sigvault_dev_with_tls_says_https_and_serves_only_over_tls() {
    let pki = Pki::new();
    let data_dir = temp_dir("tls-dev").join("data");
    let files = pki.files();
    let path = |p: &Path| p.display().to_string();
    let ca_file = path(files.client_ca_file.as_deref().expect("CA file"));
    let dev = spawn_dev(
        &data_dir,
        &[
            ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN),
            ("SIGVAULT_TLS__CERT_FILE", &path(&files.cert_file)),
            ("SIGVAULT_TLS__KEY_FILE", &path(&files.key_file)),
            ("SIGVAULT_TLS__CLIENT_CA_FILE", &ca_file),
            ("SIGVAULT_TLS__CLIENT_AUTH", "optional"),
        ],
    );
    assert_eq!(dev.scheme, "https", "{:?}", dev.stdout_lines);
    let who = Reply::of(pki.client(Some(&pki.payments)).get(dev.url("/v1/auth/whoami"))).await;
    assert_eq!(who.status, StatusCode::OK, "served over TLS: {}", who.body);
    assert_eq!(who.body["principal"], PAYMENTS);
    assert_eq!(who.body["via"], "mtls");
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1/sys/ping", dev.addr))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP on the TLS port: {plain:?}");
    dev.stop();
}
