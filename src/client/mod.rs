//! The HTTP client of the `sigvault` commands that talk to a running vault (`sigvault kek
//! status|rotate|retire`): where the vault is (`SIGVAULT_ADDR`), who calls (`SIGVAULT_TOKEN`
//! or a token file), which CA to trust for `https://` (`--ca-cert`), and the vault's error
//! body turned into one line with its stable code and an exit code scripts can use.
//!
//! The token is sent only in the `Authorization` header and never printed.

pub mod commands;
pub mod output;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// The address used when `SIGVAULT_ADDR` and `--addr` are both absent (`sigvault dev`'s).
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:8200";
/// The longest a request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (every answer of the routes the commands call is far smaller).
const MAX_ANSWER: usize = 1 << 20;
/// The largest token file read.
const MAX_TOKEN_FILE: u64 = 4096;

/// Where the vault is and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    /// `http://HOST:PORT` or `https://HOST:PORT`; [`DEFAULT_ADDR`] when `None`.
    pub addr: Option<String>,
    /// The caller's token.
    pub token: Option<SecretString>,
    /// A file holding the token (used when `token` is `None`).
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the vault's certificate (`https://` only).
    pub ca_cert: Option<PathBuf>,
    /// PEM files of a client certificate and its private key, for a vault that asks for one
    /// (mTLS); both or neither.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Why a call failed; [`ClientError::exit_code`] says how the command exits.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad settings or arguments (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The vault could not be reached or answered something that is not its API (exit 5).
    #[error("{0}")]
    Transport(String),
    /// The vault answered an error.
    #[error("{code} ({status}): {message}")]
    Api { status: u16, code: String, message: String },
}

impl ClientError {
    /// 2 usage or invalid argument, 3 denied, 4 not found, 5 server or unreachable, 1 any
    /// other refusal (e.g. `FAILED_PRECONDITION`: a KEK still in use).
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Usage(_) => 2,
            ClientError::Transport(_) => 5,
            ClientError::Api { status, .. } => match status {
                400 | 413 | 422 => 2,
                401 | 403 => 3,
                404 => 4,
                500.. => 5,
                _ => 1,
            },
        }
    }
}

/// A client of one vault.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<SecretString>,
}

impl Client {
    pub fn new(settings: ClientSettings) -> Result<Self, ClientError> {
        let base = settings.addr.unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let base = base.trim_end_matches('/').to_owned();
        // No user information (`user@host`): it would make the host another than the one read
        // here (`http://localhost@vault.example` goes to vault.example).
        let authority = base
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or_default());
        if authority.contains('@') {
            return Err(ClientError::Usage(format!(
                "SIGVAULT_ADDR `{base}` must not hold user information (user@host)"
            )));
        }
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.len() > 2048 {
            return Err(ClientError::Usage(format!(
                "SIGVAULT_ADDR `{base}` must be an http:// or https:// address, e.g. {DEFAULT_ADDR}"
            )));
        }
        // The token travels in every request: in clear only to this machine (as the server
        // itself serves plain HTTP only on loopback unless told otherwise).
        if let Some(rest) = base.strip_prefix("http://")
            && !is_loopback(rest)
        {
            return Err(ClientError::Usage(format!(
                "SIGVAULT_ADDR `{base}`: plain http:// only to a loopback address (127.0.0.1, [::1], localhost); use https:// (with --ca-cert) so the token is not sent in clear"
            )));
        }
        let token = match (settings.token, settings.token_file) {
            (Some(token), _) => Some(token),
            (None, Some(file)) => Some(read_token_file(&file)?),
            (None, None) => None,
        };
        // No proxy from the environment: the token goes to the vault and nowhere else.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sigvault-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &settings.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| ClientError::Usage(format!("--ca-cert {}: cannot read it: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ClientError::Usage(format!("--ca-cert {}: not a PEM certificate: {e}", ca.display())))?;
            if certs.is_empty() {
                return Err(ClientError::Usage(format!(
                    "--ca-cert {}: holds no certificate",
                    ca.display()
                )));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &settings.client_cert {
            let mut pem = std::fs::read(cert)
                .map_err(|e| ClientError::Usage(format!("--client-cert {}: cannot read it: {e}", cert.display())))?;
            let key_pem = zeroize::Zeroizing::new(
                std::fs::read(key)
                    .map_err(|e| ClientError::Usage(format!("--client-key {}: cannot read it: {e}", key.display())))?,
            );
            pem.push(b'\n');
            pem.extend_from_slice(&key_pem);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                ClientError::Usage(format!(
                    "--client-cert/--client-key: not a PEM certificate and key: {e}"
                ))
            });
            zeroize::Zeroize::zeroize(&mut pem);
            builder = builder.identity(identity?);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self { http, base, token })
    }

    /// `GET path`: the answer's JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON (no body when `None`): the answer's JSON.
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// `PATCH path` with `body` as JSON: the answer's JSON.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }

    /// `DELETE path`: the answer's JSON.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose_secret());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| ClientError::Transport(format!("cannot reach the vault at {}: {}", self.base, cause(&e))))?;
        let status = response.status().as_u16();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ClientError::Transport(format!("the vault's answer was cut off: {}", cause(&e))))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(ClientError::Transport("the vault's answer is over 1 MiB".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            return json.ok_or_else(|| ClientError::Transport(format!("the vault answered {status} without JSON")));
        }
        let error = json.as_ref().and_then(|j| j.get("error"));
        let text = |field: &str| {
            error
                .and_then(|e| e.get(field))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Err(ClientError::Api {
            status,
            code: text("code").unwrap_or_else(|| "UNKNOWN".into()),
            message: text("message").unwrap_or_else(|| format!("HTTP {status} without an error body")),
        })
    }
}

/// Whether the authority of an `http://` address (`host[:port][/…]`) is a loopback host.
fn is_loopback(authority_and_path: &str) -> bool {
    let authority = authority_and_path.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The token in `file`: its first line, at most [`MAX_TOKEN_FILE`] bytes.
fn read_token_file(file: &std::path::Path) -> Result<SecretString, ClientError> {
    use std::io::Read;
    let shown = file.display();
    let mut text = zeroize::Zeroizing::new(String::new());
    std::fs::File::open(file)
        .and_then(|f| f.take(MAX_TOKEN_FILE + 1).read_to_string(&mut text))
        .map_err(|e| ClientError::Usage(format!("token file {shown}: cannot read it: {e}")))?;
    if text.len() as u64 > MAX_TOKEN_FILE {
        return Err(ClientError::Usage(format!(
            "token file {shown}: over {MAX_TOKEN_FILE} bytes"
        )));
    }
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(ClientError::Usage(format!("token file {shown}: empty")));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// The innermost cause of a transport error (reqwest's own message is only "error sending
/// request").
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    source.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> ClientError {
        ClientError::Api {
            status,
            code: "X".into(),
            message: "y".into(),
        }
    }

    #[test]
    fn exit_codes_follow_the_answer() {
        assert_eq!(api(400).exit_code(), 2);
        assert_eq!(api(401).exit_code(), 3);
        assert_eq!(api(403).exit_code(), 3);
        assert_eq!(api(404).exit_code(), 4);
        assert_eq!(api(409).exit_code(), 1);
        assert_eq!(api(503).exit_code(), 5);
        assert_eq!(ClientError::Transport("down".into()).exit_code(), 5);
        assert_eq!(ClientError::Usage("bad".into()).exit_code(), 2);
    }

    #[test]
    fn an_address_that_is_not_http_is_a_usage_error() {
        let err = Client::new(ClientSettings {
            addr: Some("127.0.0.1:8200".into()),
            ..ClientSettings::default()
        })
        .err()
        .map(|e| e.exit_code());
        assert_eq!(err, Some(2));
    }

    #[test]
    fn plain_http_goes_only_to_loopback_addresses() {
        for addr in [
            "http://127.0.0.1:8200",
            "http://localhost:8200",
            "http://[::1]:8200/",
            "http://127.0.0.2",
        ] {
            let client = Client::new(ClientSettings {
                addr: Some(addr.into()),
                ..ClientSettings::default()
            });
            assert!(client.is_ok(), "{addr}");
        }
        for addr in [
            "http://10.0.0.5:8200",
            "http://vault.example.com",
            "http://[2001:db8::1]:8200",
            "http://127.0.0.1.nip.io",
            "http://localhost:8200@vault.example.com",
            "http://[::1]@vault.example.com",
        ] {
            let err = Client::new(ClientSettings {
                addr: Some(addr.into()),
                ..ClientSettings::default()
            })
            .err()
            .map(|e| e.exit_code());
            assert_eq!(err, Some(2), "{addr}");
        }
        assert!(
            Client::new(ClientSettings {
                addr: Some("https://vault.example.com:8200".into()),
                ..ClientSettings::default()
            })
            .is_ok()
        );
    }

    #[test]
    fn a_token_file_gives_its_first_line_and_an_empty_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("sigvault-client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "svt_abc\nsecond line\n").unwrap();
        assert_eq!(read_token_file(&file).unwrap().expose_secret(), "svt_abc");
        std::fs::write(&file, "\n").unwrap();
        assert!(read_token_file(&file).is_err());
        std::fs::write(&file, "x".repeat(5000)).unwrap();
        assert!(read_token_file(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
