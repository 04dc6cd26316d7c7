//! The entry points of the fuzz targets (`fuzz/`), behind the cargo feature `fuzzing`.
//!
//! Every parser that sees untrusted bytes is reachable from here: request bodies, the
//! forwarded SigV4 request, the config text, audit lines and anchors, the DER SAN reader,
//! sealed-record opening and the Cedar request built from a request's values. Each function
//! only calls the real code (the targets must exercise what the server runs); nothing here
//! re-implements a rule. What is already public (`sigv4::parse`, `apikeys::format::check`,
//! `envelope::open`, `PolicyEngine::decide`, …) the targets call directly.
//!
//! Never enabled in a build that serves: the feature exists for `fuzz/Cargo.toml` alone.

use crate::api::apikeys as api_apikeys;
use crate::api::auth as api_auth;
use crate::api::credentials as api_credentials;
use crate::api::keys::{lifecycle, sign};
use crate::api::reply::parse_json;
use crate::api::sigv4 as api_sigv4;
use crate::audit::action::Action;
use crate::audit::chain::Head;
use crate::audit::event::AuditEvent;
use crate::auth::Principal;
use crate::config::{ConfigError, Overrides, RawConfig};
use crate::envelope::{Dek, EnvelopeError, NONCE_LEN, RecordIdentity};
use crate::error::ApiError;
use crate::policy::{Decision, PolicyEngine, RequestFacts, Resource};
use crate::sigv4::{Authorization, HttpRequest, PathRules, Refusal};

/// Every JSON request body the API parses, one per handler that reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    CreateToken,
    CreateApiKey,
    PatchApiKey,
    RerollApiKey,
    VerifyApiKey,
    CreateCredential,
    ImportCredential,
    PatchCredential,
    CreateKey,
    ImportKey,
    PatchKey,
    NoOptions,
    Sign,
    Verify,
    VerifySigV4,
    SigningKey,
}

impl Body {
    pub const ALL: [Body; 16] = [
        Body::CreateToken,
        Body::CreateApiKey,
        Body::PatchApiKey,
        Body::RerollApiKey,
        Body::VerifyApiKey,
        Body::CreateCredential,
        Body::ImportCredential,
        Body::PatchCredential,
        Body::CreateKey,
        Body::ImportKey,
        Body::PatchKey,
        Body::NoOptions,
        Body::Sign,
        Body::Verify,
        Body::VerifySigV4,
        Body::SigningKey,
    ];
}

/// Parses `body` as the handler of `kind` does (`reply::parse_json` into its request type).
pub fn parse_body(kind: Body, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        Body::CreateToken => parse_json::<api_auth::CreateTokenRequest>(body).map(drop),
        Body::CreateApiKey => parse_json::<api_apikeys::CreateRequest>(body).map(drop),
        Body::PatchApiKey => parse_json::<api_apikeys::PatchRequest>(body).map(drop),
        Body::RerollApiKey => parse_json::<api_apikeys::RerollRequest>(body).map(drop),
        Body::VerifyApiKey => parse_json::<api_apikeys::VerifyRequest>(body).map(drop),
        Body::CreateCredential => parse_json::<api_credentials::CreateRequest>(body).map(drop),
        Body::ImportCredential => parse_json::<api_credentials::ImportRequest>(body).map(drop),
        Body::PatchCredential => parse_json::<api_credentials::PatchRequest>(body).map(drop),
        Body::CreateKey => parse_json::<lifecycle::CreateKeyRequest>(body).map(drop),
        Body::ImportKey => parse_json::<lifecycle::ImportRequest>(body).map(drop),
        Body::PatchKey => parse_json::<lifecycle::PatchRequest>(body).map(drop),
        Body::NoOptions => parse_json::<lifecycle::EmptyRequest>(body).map(drop),
        Body::Sign => parse_json::<sign::SignRequest<'_>>(body).map(drop),
        Body::Verify => parse_json::<sign::VerifyRequest<'_>>(body).map(drop),
        Body::VerifySigV4 => parse_json::<api_sigv4::forwarded::VerifyRequest<'_>>(body).map(drop),
        Body::SigningKey => parse_json::<api_sigv4::SigningKeyRequest>(body).map(drop),
    }
}

/// What `POST /v1/sigv4/verify` makes of a body before it looks up a credential.
pub struct Forwarded {
    /// The SigV4 parse of the forwarded request.
    pub parsed: Result<Authorization, Refusal>,
    /// The strings to sign of a parsed request, under its path rules.
    pub strings_to_sign: Option<Result<Vec<Vec<u8>>, Refusal>>,
}

/// The body of `POST /v1/sigv4/verify` through the handler's steps: parse, the forwarded
/// request's checks, then the SigV4 parse and canonicalisation of the request it names.
pub fn sigv4_forwarded(body: &[u8]) -> Result<Forwarded, ApiError> {
    let req: api_sigv4::forwarded::VerifyRequest<'_> = parse_json(body)?;
    let (payload, _who) = api_sigv4::forwarded::check(&req)?;
    let request = HttpRequest {
        method: &req.method,
        path: &req.path,
        query: &req.query,
        headers: &req.headers,
        payload_sha256: payload.as_deref(),
    };
    let parsed = crate::sigv4::parse(&request);
    let strings_to_sign = parsed.as_ref().ok().map(|auth| {
        let rules = PathRules::for_request(&auth.scope.service, req.normalize_path);
        crate::sigv4::strings_to_sign(&request, auth, rules)
    });
    Ok(Forwarded {
        parsed,
        strings_to_sign,
    })
}

/// Every string to sign a request could have been signed with (see `sigv4::strings_to_sign`),
/// under the path rules of its service (or `normalize` when given).
pub fn sigv4_strings_to_sign(
    req: &HttpRequest<'_>,
    auth: &Authorization,
    normalize: Option<bool>,
) -> Result<Vec<Vec<u8>>, Refusal> {
    crate::sigv4::strings_to_sign(req, auth, PathRules::for_request(&auth.scope.service, normalize))
}

/// The path rules `sigv4::verify` is given for this service and override.
pub fn sigv4_path_rules(service: &str, normalize: Option<bool>) -> PathRules {
    PathRules::for_request(service, normalize)
}

/// When the parsed request says it was signed, in Unix seconds.
pub fn sigv4_timestamp(auth: &Authorization) -> i64 {
    auth.timestamp_unix_s
}

/// Presigned only: `X-Amz-Expires`, in seconds.
pub fn sigv4_expires(auth: &Authorization) -> Option<i64> {
    auth.expires_s
}

/// The text of a config file merged with `env` as `config::merge` merges a file it read.
pub fn config_merge(text: &str, env: &[(String, String)]) -> Result<RawConfig, ConfigError> {
    let table = crate::config::layers::parse_file(text, "fuzz.toml")?;
    crate::config::layers::merge_layers(table, env, &Overrides::default())
}

/// One line of the event file (without its newline), as the readers parse it.
pub fn audit_parse_line(line: &str) -> Result<(AuditEvent, Vec<u8>), String> {
    AuditEvent::parse_line(line)
}

/// The sequence number the store reads from a line's first bytes without parsing it.
pub fn audit_line_seq(line: &[u8]) -> Option<u64> {
    crate::model::audit_line::line_seq(line)
}

/// The bytes the store's row filter looks for: `,"name":"value"` as the writer escapes it.
pub fn audit_string_member(name: &str, value: &str) -> Vec<u8> {
    crate::model::audit_line::string_member(name, value)
}

/// One line of the anchor file, as the readers parse it.
pub fn audit_parse_anchor(line: &str) -> Option<(String, Head)> {
    crate::audit::sink::parse_anchor(line)
}

/// The caller name of a client certificate (DER), as the TLS layer reads it.
pub fn san_principal_name(cert_der: &[u8]) -> Option<String> {
    crate::tls::san::principal_name(cert_der)
}

/// The caller name among a DER `GeneralNames` (a subjectAltName extension's value).
pub fn san_principal_of_general_names(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let names = x509_cert::ext::pkix::SubjectAltName::from_der(der).ok()?;
    crate::tls::san::principal_of(&names.0)
}

/// The additional authenticated data a record of `identity` is sealed with.
pub fn envelope_aad(identity: &RecordIdentity<'_>) -> Vec<u8> {
    identity.aad()
}

/// Seals `plaintext` for `identity` with a chosen nonce (`envelope::seal` draws one).
pub fn envelope_seal(
    dek: &Dek,
    identity: &RecordIdentity<'_>,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    crate::envelope::seal_with_nonce(dek, nonce, &identity.aad(), plaintext)
}

/// The facts of a request as the API gathers them.
pub fn policy_facts(source_ip: Option<std::net::IpAddr>, tls: bool, mtls: bool, now_unix_s: i64) -> RequestFacts {
    RequestFacts {
        source_ip,
        tls,
        mtls,
        now_unix_s,
    }
}

/// A decision made afresh (the engine's memory of decisions neither read nor filled), so a
/// target can compare it with [`PolicyEngine::decide`]. `Err` when the Cedar request could
/// not be built from these values.
pub fn policy_evaluate(
    engine: &PolicyEngine,
    principal: &Principal,
    action: Action,
    resource: &Resource<'_>,
    facts: RequestFacts,
) -> Result<Decision, String> {
    engine.evaluate(&engine.snapshot(), principal, action, resource, facts)
}
