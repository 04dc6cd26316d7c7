//! SigV4 credentials and verification through the HTTP API, with requests signed by an
//! independent implementation: AWS's own Rust signer (`aws-sigv4`), never sigvault's code.

mod dump;
mod e2e;
mod fingerprints;
mod lifecycle;

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Value, json};

use sigvault::clock::Clock;

use crate::helpers::TestApp;

/// A request as its receiver saw it, ready to forward to `POST /v1/sigv4/verify`.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    /// Raw path as sent (percent-encoded).
    pub path: String,
    /// Raw query as sent, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Forwarded {
    /// The verify body: the request exactly as received, body included.
    pub fn verify_body(&self) -> Value {
        json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "body": crate::helpers::b64(&self.body),
        })
    }
}

/// What to sign: `path_and_query` is percent-encoded as it goes on the wire.
pub struct ToSign<'a> {
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
    /// `Some(expiry)`: a presigned URL instead of an Authorization header.
    pub presign: Option<Duration>,
}

impl<'a> ToSign<'a> {
    pub fn get(path_and_query: &'a str, time: SystemTime) -> Self {
        Self {
            method: "GET",
            path_and_query,
            headers: &[],
            body: b"",
            region: "eu-west-1",
            service: "execute-api",
            time,
            presign: None,
        }
    }
}

pub const HOST: &str = "api.example.test";

/// Signs with `aws-sigv4` and returns the request as it would arrive.
pub fn sign_with(access_key_id: &str, secret: &str, what: &ToSign<'_>) -> Forwarded {
    let identity: Identity = Credentials::new(access_key_id, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    if let Some(expires) = what.presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(what.region)
        .name(what.service)
        .time(what.time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let mut headers: Vec<(String, String)> = vec![("Host".into(), HOST.into())];
    headers.extend(what.headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())));
    let url = format!("https://{HOST}{}", what.path_and_query);
    let signable = SignableRequest::new(
        what.method,
        url,
        headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        SignableBody::Bytes(what.body),
    )
    .expect("signable request");
    let (instructions, _signature) = sign(signable, &params).expect("signs").into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_owned(), value.to_owned()));
    }
    let (path, mut query) = match what.path_and_query.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (what.path_and_query.to_owned(), String::new()),
    };
    for (name, value) in instructions.params() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&encode(name));
        query.push('=');
        query.push_str(&encode(value));
    }
    Forwarded {
        method: what.method.to_owned(),
        path,
        query,
        headers,
        body: what.body.to_vec(),
    }
}

/// Query-component encoding as an HTTP client sends it.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The test app's clock as a `SystemTime` (requests are signed "now" by default).
pub fn now(app: &TestApp) -> SystemTime {
    let now = app.clock.now();
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(now.unix_timestamp()).expect("after 1970"))
}

/// Creates a credential for `principal` as root; returns (access key id, secret).
pub async fn create_credential(app: &TestApp, principal: &str) -> (String, String) {
    let r = app.post("/v1/credentials", json!({ "principal": principal })).await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::CREATED,
        "expected a credential: {}",
        r.body
    );
    (
        r.body["access_key_id"].as_str().expect("id").to_owned(),
        r.body["secret_access_key"].as_str().expect("secret").to_owned(),
    )
}

/// Forwards `request` to `POST /v1/sigv4/verify` as root.
pub async fn verify(app: &TestApp, request: &Forwarded) -> Value {
    let r = app.post("/v1/sigv4/verify", request.verify_body()).await;
    assert_eq!(
        r.status,
        reqwest::StatusCode::OK,
        "expected the verification to run: {}",
        r.body
    );
    r.body
}
