//! The client commands (`sigvault key …`, `sign`, `verify`, `encrypt`, `decrypt`, `token …`,
//! `credential …`, `apikey …`, `audit events`, `audit verify --remote`): each one request of
//! docs/API.md, its answer printed by [`super::output`]. A verification that ran and failed
//! exits 1; the vault's refusals exit as [`super::ClientError::exit_code`] says.

use std::io::Read as _;
use std::path::PathBuf;

use base64::Engine as _;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::output::{Format, Output, columns, object, render};
use super::{Client, ClientError};

/// The largest input read from a file or standard input (the vault's default message limit
/// is far smaller; it answers 413 past its own).
pub const MAX_INPUT: u64 = 16 << 20;

/// Where a command's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The argument's bytes (UTF-8 as typed).
    Text(String),
    /// A file's bytes.
    File(PathBuf),
    /// Standard input's bytes, to its end.
    Stdin,
}

impl Input {
    /// From `--message`/`--file` style options: the text, else the file (`-` is standard
    /// input), else standard input.
    pub fn from_options(text: Option<String>, file: Option<PathBuf>) -> Self {
        match (text, file) {
            (Some(t), _) => Self::Text(t),
            (None, Some(f)) if f.as_os_str() == "-" => Self::Stdin,
            (None, Some(f)) => Self::File(f),
            (None, None) => Self::Stdin,
        }
    }

    /// The bytes, at most [`MAX_INPUT`] (zeroized when dropped: inputs may be secrets).
    pub fn read(&self) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut out = Zeroizing::new(Vec::new());
        let (what, result) = match self {
            Self::Text(t) => return Ok(Zeroizing::new(t.as_bytes().to_vec())),
            Self::File(f) => (
                f.display().to_string(),
                std::fs::File::open(f).and_then(|file| file.take(MAX_INPUT + 1).read_to_end(&mut out)),
            ),
            Self::Stdin => (
                "standard input".to_owned(),
                std::io::stdin().lock().take(MAX_INPUT + 1).read_to_end(&mut out),
            ),
        };
        result.map_err(|e| ClientError::Usage(format!("{what}: cannot read it: {e}")))?;
        if out.len() as u64 > MAX_INPUT {
            return Err(ClientError::Usage(format!("{what}: over {MAX_INPUT} bytes")));
        }
        Ok(out)
    }
}

/// A member of an answer (`null` when absent).
fn field<'a>(value: &'a Value, name: &str) -> &'a Value {
    value.get(name).unwrap_or(&Value::Null)
}

/// Sets a member of a request body (a JSON object by construction).
fn insert(body: &mut Value, name: &str, value: impl Into<Value>) {
    if let Some(map) = body.as_object_mut() {
        map.insert(name.to_owned(), value.into());
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A path segment the vault's names and ids fit in; anything else would change the route.
fn segment(what: &str, value: &str) -> Result<String, ClientError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !value.bytes().all(|b| b == b'.');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ClientError::Usage(format!(
            "{what} `{}` is not a valid name or id (A-Z a-z 0-9 . _ -)",
            value.chars().take(64).collect::<String>()
        )))
    }
}

/// A query parameter value, percent-encoded.
fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `?a=1&b=2` of the present parameters ("" when none).
fn query(params: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", query_value(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

const KEY_FIELDS: [&str; 9] = [
    "name",
    "algorithm",
    "state",
    "latest_version",
    "min_verify_version",
    "owner",
    "boundary",
    "exportable",
    "created_at",
];

/// `key create`'s options.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub algorithm: String,
    pub key_size: Option<u32>,
    pub boundary: Option<String>,
    pub exportable: bool,
    pub auto_rotate_period: Option<String>,
    pub owner: Option<String>,
    /// `KEY=VALUE` pairs.
    pub tags: Vec<String>,
}

pub async fn key_create(client: &Client, format: Format, name: &str, new: NewKey) -> Result<Output, ClientError> {
    let mut tags = serde_json::Map::new();
    for pair in &new.tags {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ClientError::Usage(format!("--tag `{pair}` must be KEY=VALUE")))?;
        tags.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let mut body = json!({"name": name, "algorithm": new.algorithm});
    let fields = [
        ("key_size", new.key_size.map(Value::from)),
        ("boundary", new.boundary.map(Value::from)),
        ("exportable", new.exportable.then_some(Value::Bool(true))),
        ("auto_rotate_period", new.auto_rotate_period.map(Value::from)),
        ("owner", new.owner.map(Value::from)),
        ("tags", (!tags.is_empty()).then_some(Value::Object(tags))),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            insert(&mut body, k, v);
        }
    }
    let answer = client.post("/v1/keys", Some(&body)).await?;
    Ok(Output::ok(render(format, &answer, |v| object(v, &KEY_FIELDS))))
}

pub async fn key_list(client: &Client, format: Format, limit: Option<u32>) -> Result<Output, ClientError> {
    let path = format!("/v1/keys{}", query(&[("limit", limit.map(|l| l.to_string()))]));
    let answer = client.get(&path).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        let items = field(v, "keys").as_array().cloned().unwrap_or_default();
        columns(&items, &["name", "algorithm", "state", "latest_version", "owner"])
    })))
}

pub async fn key_get(client: &Client, format: Format, name: &str) -> Result<Output, ClientError> {
    let answer = client.get(&format!("/v1/keys/{}", segment("key", name)?)).await?;
    Ok(Output::ok(render(format, &answer, |v| object(v, &[]))))
}

pub async fn key_rotate(client: &Client, format: Format, name: &str) -> Result<Output, ClientError> {
    let answer = client
        .post(&format!("/v1/keys/{}/rotate", segment("key", name)?), Some(&json!({})))
        .await?;
    Ok(Output::ok(render(format, &answer, |v| object(v, &KEY_FIELDS))))
}

pub async fn key_delete(
    client: &Client,
    format: Format,
    name: &str,
    pending_days: Option<u32>,
) -> Result<Output, ClientError> {
    let path = format!(
        "/v1/keys/{}{}",
        segment("key", name)?,
        query(&[("pending_days", pending_days.map(|d| d.to_string()))])
    );
    let answer = client.delete(&path).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(v, &["name", "state", "deletion_due_at"])
    })))
}

pub async fn sign(
    client: &Client,
    format: Format,
    key: &str,
    input: &Input,
    key_version: Option<u32>,
) -> Result<Output, ClientError> {
    let message = input.read()?;
    let mut body = json!({"message": b64(&message)});
    if let Some(v) = key_version {
        insert(&mut body, "key_version", v);
    }
    let answer = client
        .post(&format!("/v1/keys/{}/sign", segment("key", key)?), Some(&body))
        .await?;
    Ok(Output::ok(render(format, &answer, |v| {
        format!("{}\n", field(v, "signature").as_str().unwrap_or_default())
    })))
}

/// Exit 1 when the signature does not verify.
pub async fn verify(
    client: &Client,
    format: Format,
    key: &str,
    input: &Input,
    signature: &str,
    key_version: Option<u32>,
) -> Result<Output, ClientError> {
    let message = input.read()?;
    let mut body = json!({"message": b64(&message), "signature": signature});
    if let Some(v) = key_version {
        insert(&mut body, "key_version", v);
    }
    let answer = client
        .post(&format!("/v1/keys/{}/verify", segment("key", key)?), Some(&body))
        .await?;
    let valid = field(&answer, "valid") == true;
    let text = render(format, &answer, |v| {
        if valid {
            format!("valid (version {})\n", field(v, "key_version"))
        } else {
            format!(
                "invalid: {}\n",
                field(v, "code").as_str().unwrap_or("SIGNATURE_MISMATCH")
            )
        }
    });
    Ok(Output {
        text,
        exit: if valid { 0 } else { 1 },
    })
}

pub async fn encrypt(
    client: &Client,
    format: Format,
    key: &str,
    input: &Input,
    aad: Option<&str>,
) -> Result<Output, ClientError> {
    let plaintext = input.read()?;
    let mut body = json!({"plaintext": b64(&plaintext)});
    if let Some(aad) = aad {
        insert(&mut body, "aad", b64(aad.as_bytes()));
    }
    let answer = client
        .post(&format!("/v1/keys/{}/encrypt", segment("key", key)?), Some(&body))
        .await?;
    Ok(Output::ok(render(format, &answer, |v| {
        format!("{}\n", field(v, "ciphertext").as_str().unwrap_or_default())
    })))
}

/// `table` writes the plaintext's bytes as they are (no newline added); `json` the answer.
pub async fn decrypt(
    client: &Client,
    format: Format,
    key: &str,
    ciphertext: &str,
    aad: Option<&str>,
) -> Result<(Output, Zeroizing<Vec<u8>>), ClientError> {
    let mut body = json!({"ciphertext": ciphertext.trim()});
    if let Some(aad) = aad {
        insert(&mut body, "aad", b64(aad.as_bytes()));
    }
    let answer = client
        .post(&format!("/v1/keys/{}/decrypt", segment("key", key)?), Some(&body))
        .await?;
    let plaintext = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(field(&answer, "plaintext").as_str().unwrap_or_default())
            .map_err(|_| ClientError::Transport("the vault answered a plaintext that is not base64".into()))?,
    );
    match format {
        Format::Json => Ok((Output::ok(format!("{answer}\n")), Zeroizing::new(Vec::new()))),
        Format::Table => Ok((Output::ok(String::new()), plaintext)),
    }
}

pub async fn token_create(
    client: &Client,
    format: Format,
    principal: &str,
    groups: &[String],
    ttl: Option<&str>,
    description: Option<&str>,
) -> Result<Output, ClientError> {
    let mut body = json!({"principal": principal, "groups": groups});
    if let Some(ttl) = ttl {
        insert(&mut body, "ttl", ttl);
    }
    if let Some(d) = description {
        insert(&mut body, "description", d);
    }
    let answer = client.post("/v1/auth/tokens", Some(&body)).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(v, &["id", "token", "principal", "groups", "expires_at"])
    })))
}

pub async fn token_revoke(client: &Client, format: Format, id: &str) -> Result<Output, ClientError> {
    let answer = client
        .delete(&format!("/v1/auth/tokens/{}", segment("token id", id)?))
        .await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(v, &["id", "revoked_at"])
    })))
}

pub async fn credential_create(
    client: &Client,
    format: Format,
    principal: &str,
    groups: &[String],
    description: Option<&str>,
) -> Result<Output, ClientError> {
    let mut body = json!({"principal": principal});
    if !groups.is_empty() {
        insert(&mut body, "groups", groups);
    }
    if let Some(d) = description {
        insert(&mut body, "description", d);
    }
    let answer = client.post("/v1/credentials", Some(&body)).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(
            v,
            &["access_key_id", "secret_access_key", "principal", "groups", "state"],
        )
    })))
}

pub async fn credential_list(
    client: &Client,
    format: Format,
    principal: Option<&str>,
    limit: Option<u32>,
) -> Result<Output, ClientError> {
    let path = format!(
        "/v1/credentials{}",
        query(&[
            ("principal", principal.map(str::to_owned)),
            ("limit", limit.map(|l| l.to_string()))
        ])
    );
    let answer = client.get(&path).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        let items = field(v, "credentials").as_array().cloned().unwrap_or_default();
        columns(
            &items,
            &["access_key_id", "principal", "state", "groups", "last_used_at"],
        )
    })))
}

pub async fn credential_deactivate(client: &Client, format: Format, id: &str) -> Result<Output, ClientError> {
    let answer = client
        .patch(
            &format!("/v1/credentials/{}", segment("access key id", id)?),
            &json!({"state": "inactive"}),
        )
        .await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(v, &["access_key_id", "principal", "state"])
    })))
}

/// `apikey create`'s options.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    pub principal: String,
    pub prefix: Option<String>,
    pub expires_at: Option<String>,
    pub remaining: Option<u64>,
    pub permissions: Vec<String>,
}

pub async fn apikey_create(client: &Client, format: Format, new: NewApiKey) -> Result<Output, ClientError> {
    let mut body = json!({"principal": new.principal, "permissions": new.permissions});
    if let Some(p) = new.prefix {
        insert(&mut body, "prefix", p);
    }
    if let Some(e) = new.expires_at {
        insert(&mut body, "expires_at", e);
    }
    if let Some(r) = new.remaining {
        insert(&mut body, "remaining", r);
    }
    let answer = client.post("/v1/apikeys", Some(&body)).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(v, &["id", "key", "principal", "state", "permissions"])
    })))
}

/// Exit 1 when the key does not verify.
pub async fn apikey_verify(
    client: &Client,
    format: Format,
    key: &Input,
    permissions: &[String],
) -> Result<Output, ClientError> {
    let raw = key.read()?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| ClientError::Usage("the API key is not UTF-8 text".into()))?
        .trim();
    let body = json!({"key": text, "permissions": permissions});
    let answer = client.post("/v1/apikeys/verify", Some(&body)).await?;
    let valid = field(&answer, "valid") == true;
    let text = render(format, &answer, |v| {
        if valid {
            format!(
                "valid: {} ({})\n",
                field(v, "id").as_str().unwrap_or("?"),
                field(v, "principal").as_str().unwrap_or("?")
            )
        } else {
            format!("invalid: {}\n", field(v, "code").as_str().unwrap_or("?"))
        }
    });
    Ok(Output {
        text,
        exit: if valid { 0 } else { 1 },
    })
}

pub async fn apikey_reroll(
    client: &Client,
    format: Format,
    id: &str,
    grace_seconds: u64,
) -> Result<Output, ClientError> {
    let answer = client
        .post(
            &format!("/v1/apikeys/{}/reroll", segment("API key id", id)?),
            Some(&json!({"grace_seconds": grace_seconds})),
        )
        .await?;
    Ok(Output::ok(render(format, &answer, |v| {
        object(v, &["id", "key", "principal", "state"])
    })))
}

/// `audit events`' filters.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub since: Option<String>,
    pub until: Option<String>,
    pub principal: Option<String>,
    pub action: Option<String>,
    pub resource: Option<String>,
    pub limit: Option<u32>,
}

pub async fn audit_events(client: &Client, format: Format, filter: EventFilter) -> Result<Output, ClientError> {
    let path = format!(
        "/v1/audit/events{}",
        query(&[
            ("since", filter.since),
            ("until", filter.until),
            ("principal", filter.principal),
            ("action", filter.action),
            ("resource", filter.resource),
            ("limit", filter.limit.map(|l| l.to_string())),
        ])
    );
    let answer = client.get(&path).await?;
    Ok(Output::ok(render(format, &answer, |v| {
        let items = field(v, "events").as_array().cloned().unwrap_or_default();
        columns(&items, &["seq", "time", "principal", "action", "resource", "outcome"])
    })))
}

/// Exit 1 when the trail does not verify.
pub async fn audit_verify(client: &Client, format: Format) -> Result<Output, ClientError> {
    let answer = client.get("/v1/audit/verify").await?;
    let ok = field(&answer, "ok") == true;
    Ok(Output {
        text: render(format, &answer, |v| object(v, &[])),
        exit: if ok { 0 } else { 1 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_and_queries_cannot_change_the_route() {
        assert_eq!(
            segment("key", "payments.webhook").ok(),
            Some("payments.webhook".to_owned())
        );
        for bad in ["", "..", "a/b", "a?b", "a b", "%2e"] {
            assert!(segment("key", bad).is_err(), "{bad}");
        }
        assert_eq!(
            query(&[
                ("principal", Some("a b&c".into())),
                ("limit", None),
                ("x", Some("1".into()))
            ]),
            "?principal=a%20b%26c&x=1"
        );
        assert_eq!(query(&[("limit", None)]), "");
    }

    #[test]
    fn inputs_come_from_the_argument_a_file_or_standard_input() {
        assert_eq!(Input::from_options(Some("m".into()), None), Input::Text("m".into()));
        assert_eq!(Input::from_options(None, Some("-".into())), Input::Stdin);
        assert_eq!(Input::from_options(None, None), Input::Stdin);
        let dir = std::env::temp_dir().join(format!("sigvault-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let file = dir.join("m");
        std::fs::write(&file, b"\x00binary\xff").ok();
        let read = Input::from_options(None, Some(file.clone()))
            .read()
            .ok()
            .map(|b| b.to_vec());
        assert_eq!(read, Some(b"\x00binary\xff".to_vec()));
        assert!(Input::File(dir.join("absent")).read().is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
