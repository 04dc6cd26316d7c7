//! AWS Signature Version 4 verification, pure: no I/O, no clock, no key store.
//!
//! A calling service hands over the request exactly as it received it ([`HttpRequest`]);
//! this module decides whether an `AWS4-HMAC-SHA256` signature over it is genuine. The
//! steps are separate functions so that a gateway holding only a derived [`signing_key`]
//! can run the last one itself:
//!
//! 1. [`parse`] reads the `Authorization` header form or the presigned query form into an
//!    [`Authorization`]; [`check_time`] applies the date window or the presigned expiry.
//! 2. [`strings_to_sign`] rebuilds the canonical request (see `canonical`) and the string to
//!    sign. Some requests are ambiguous — a presigned URL may have been signed over
//!    `UNSIGNED-PAYLOAD` or over the body's hash, and a session token may have been appended
//!    after signing — so it returns every string the request could have been signed with,
//!    most likely first; never more than four.
//! 3. [`signing_key`] derives the per day/region/service key; [`signature_matches`] compares
//!    in constant time against every candidate, without stopping at the first match.
//!
//! It must never look up credentials, read the clock or log: the secret, `now` and the window
//! are parameters, and a [`Refusal`] carries no secret material. Every input is bounded
//! (`MAX_*` below) and nothing here panics, so a hostile request costs at most a few
//! linear passes over its own bytes.

mod authorization;
mod canonical;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;

pub use authorization::{check_time, parse};
pub use canonical::{canonical_request, string_to_sign};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// The only algorithm accepted, in the header and in `X-Amz-Algorithm`.
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash a signer uses when it did not hash the body.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// Hex SHA-256 of the empty string: the payload hash of a request without a body.
pub(crate) const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// The longest `X-Amz-Expires` AWS accepts (seven days).
pub(crate) const MAX_PRESIGNED_EXPIRES_S: i64 = 604_800;
/// Most names allowed in `SignedHeaders`.
pub(crate) const MAX_SIGNED_HEADERS: usize = 64;
/// Most `&`-separated query parameters considered.
pub(crate) const MAX_QUERY_PARAMS: usize = 256;
/// Most request headers considered.
pub const MAX_HEADERS: usize = 256;
/// Longest raw path, and longest raw query string, in bytes.
pub(crate) const MAX_TARGET_BYTES: usize = 16 * 1024;
/// Largest sum of header name and value lengths, in bytes.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// A header as received: name and value, borrowed from the forwarded request where it could
/// be (a JSON string without escapes).
pub type Header<'a> = (Cow<'a, str>, Cow<'a, str>);

/// The request as the calling service received it.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequest<'a> {
    pub method: &'a str,
    /// Raw path as on the wire: it may hold `%XX` escapes or (in the vectors) raw spaces and UTF-8.
    pub path: &'a str,
    /// Raw query string without the leading `?`; may be empty.
    pub query: &'a str,
    /// In the order received; names in any case; repeated names allowed.
    pub headers: &'a [Header<'a>],
    /// Lowercase hex SHA-256 of the body when the caller knows the body; `None` = unknown.
    pub payload_sha256: Option<&'a str>,
}

/// Where the signature travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    Header,
    /// `X-Amz-Algorithm`, `X-Amz-Credential`, … and `X-Amz-Signature` in the query.
    Presigned,
}

/// The credential scope: the signing key is bound to one day, region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// `date/region/service/aws4_request`, as it appears in the string to sign.
    pub(crate) fn to_string_scope(&self) -> String {
        let mut out = String::with_capacity(self.date.len() + self.region.len() + self.service.len() + 15);
        self.push_to(&mut out);
        out
    }

    /// Appends [`Scope::to_string_scope`] to `out`.
    pub(crate) fn push_to(&self, out: &mut String) {
        for part in [&self.date, &self.region, &self.service] {
            out.push_str(part);
            out.push('/');
        }
        out.push_str("aws4_request");
    }
}

/// A parsed, syntactically valid SigV4 authorization. Nothing in it is verified yet.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub form: Form,
    pub access_key_id: String,
    pub scope: Scope,
    /// Lowercase, sorted, unique, as listed by the signer.
    pub signed_headers: Vec<String>,
    pub signature: [u8; 32],
    /// From `X-Amz-Date` (header or query) or, header form only, the `Date` header.
    pub(crate) timestamp_unix_s: i64,
    /// The timestamp as it goes into the string to sign: `YYYYMMDD'T'HHMMSS'Z'`.
    pub(crate) amz_date: String,
    /// Presigned only: `X-Amz-Expires`, in `1..=604800`.
    pub(crate) expires_s: Option<i64>,
}

/// Why a request is refused. The API maps these to stable codes with [`Refusal::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request carries no SigV4 authorization")]
    MissingAuthorization,
    /// The text says what is malformed; it never holds a secret (signatures are not echoed).
    #[error("malformed authorization: {0}")]
    MalformedAuthorization(String),
    #[error("the request is outside its validity window")]
    RequestExpired,
    #[error("the request is dated in the future")]
    RequestNotYetValid,
    #[error("the signature does not match")]
    SignatureMismatch,
}

impl Refusal {
    /// The stable code of docs/API.md.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::MissingAuthorization => "MISSING_AUTHORIZATION",
            Refusal::MalformedAuthorization(_) => "MALFORMED_AUTHORIZATION",
            Refusal::RequestExpired => "REQUEST_EXPIRED",
            Refusal::RequestNotYetValid => "REQUEST_NOT_YET_VALID",
            Refusal::SignatureMismatch => "SIGNATURE_MISMATCH",
        }
    }
}

/// Shorthand for a [`Refusal::MalformedAuthorization`].
pub(crate) fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::MalformedAuthorization(why.into())
}

/// How the canonical URI is built from the raw path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Remove `.` and `..` segments and empty segments (repeated slashes).
    pub(crate) normalize: bool,
    /// Encode the raw path as it is (`%20` becomes `%2520`), rather than decoding it first.
    pub(crate) double_encode: bool,
}

impl PathRules {
    /// S3 signs the path as decoded once and re-encoded, without normalisation (object keys
    /// may contain `//` and `..`); every other service normalises and double-encodes.
    pub(crate) fn for_service(service: &str) -> Self {
        let s3 = service == "s3";
        Self {
            normalize: !s3,
            double_encode: !s3,
        }
    }

    /// The rules of `service`, with normalisation overridden when the caller says so (the
    /// `normalize_path` of a forwarded request).
    pub(crate) fn for_request(service: &str, normalize: Option<bool>) -> Self {
        let mut rules = Self::for_service(service);
        if let Some(normalize) = normalize {
            rules.normalize = normalize;
        }
        rules
    }
}

/// Refuses requests larger than this module will ever canonicalise, before any allocation
/// proportional to them. Called by [`parse`] and again by [`strings_to_sign`], which may be
/// given an [`Authorization`] built elsewhere.
pub(crate) fn check_limits(req: &HttpRequest<'_>) -> Result<(), Refusal> {
    if req.path.len() > MAX_TARGET_BYTES || req.query.len() > MAX_TARGET_BYTES {
        return Err(malformed("the request target is too long"));
    }
    if req.headers.len() > MAX_HEADERS {
        return Err(malformed("too many headers"));
    }
    let header_bytes = req.headers.iter().fold(0usize, |sum, (name, value)| {
        sum.saturating_add(name.len()).saturating_add(value.len())
    });
    if header_bytes > MAX_HEADER_BYTES {
        return Err(malformed("the headers are too large"));
    }
    Ok(())
}

/// The string(s) to sign this request could have been signed with, most likely first.
///
/// Candidates: one per payload hash the signer may have used (header form: exactly one;
/// presigned without `x-amz-content-sha256`: `UNSIGNED-PAYLOAD`, then the body's hash or the
/// empty hash), each repeated without `X-Amz-Security-Token` in the canonical query when a
/// presigned URL carries one (the token was appended after signing, as in the vector
/// `post-sts-header-after`). A token left out this way is not authenticated by the signature.
pub(crate) fn strings_to_sign(
    req: &HttpRequest<'_>,
    auth: &Authorization,
    rules: PathRules,
) -> Result<Vec<Vec<u8>>, Refusal> {
    check_limits(req)?;
    let hashes = canonical::payload_hashes(req, auth.form)?;
    let omit_token_variants: &[bool] =
        if auth.form == Form::Presigned && canonical::query_has_param(req.query, canonical::SECURITY_TOKEN_PARAM)? {
            &[false, true]
        } else {
            &[false]
        };
    let mut candidates = Vec::with_capacity(hashes.len().saturating_mul(omit_token_variants.len()));
    for &omit_token in omit_token_variants {
        for hash in &hashes {
            let request = canonical_request(req, auth, rules, hash, omit_token)?;
            candidates.push(string_to_sign(auth, &request));
        }
    }
    Ok(candidates)
}

/// `HMAC-SHA256(key, data)` into a buffer wiped on drop.
fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // HMAC takes keys of any length, so this cannot fail; an all-zero result would simply
    // never match a signature.
    if let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// kDate = HMAC("AWS4"+secret, date); kRegion; kService; kSigning = HMAC(kService,
/// "aws4_request"). The prefixed secret and every intermediate key are zeroized on drop.
pub fn signing_key(secret: &[u8], scope: &Scope) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new(Vec::with_capacity(secret.len().saturating_add(4)));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret);
    let k_date = hmac_sha256(&seed, scope.date.as_bytes());
    signing_key_from_k_date(k_date.as_slice(), scope)
}

/// The chain after its first link: kRegion, kService, kSigning from kDate (an hsm-boundary
/// credential's kDate comes from the HSM, which holds `"AWS4" ‖ secret`).
pub fn signing_key_from_k_date(k_date: &[u8], scope: &Scope) -> Zeroizing<[u8; 32]> {
    let k_region = hmac_sha256(k_date, scope.region.as_bytes());
    let k_service = hmac_sha256(k_region.as_slice(), scope.service.as_bytes());
    hmac_sha256(k_service.as_slice(), b"aws4_request")
}

/// True when HMAC-SHA256(signing_key, one of `candidates`) equals `signature`. Every
/// candidate is computed and compared in constant time, so the timing tells nothing about
/// which candidate (if any) matched.
pub(crate) fn signature_matches(signing_key: &[u8; 32], candidates: &[Vec<u8>], signature: &[u8; 32]) -> bool {
    let mut matched = Choice::from(0);
    for candidate in candidates {
        let expected = hmac_sha256(signing_key, candidate);
        matched |= expected.as_slice().ct_eq(signature.as_slice());
    }
    matched.into()
}

/// parse → check_time → derive → compare. `rules: None` uses [`PathRules::for_service`] of
/// the credential scope's service. Returns the [`Authorization`] of a genuine request.
pub fn verify(
    req: &HttpRequest<'_>,
    secret: &[u8],
    now_unix_s: i64,
    window_s: i64,
    rules: Option<PathRules>,
) -> Result<Authorization, Refusal> {
    let auth = parse(req)?;
    check_time(&auth, now_unix_s, window_s)?;
    let rules = rules.unwrap_or_else(|| PathRules::for_service(&auth.scope.service));
    let candidates = strings_to_sign(req, &auth, rules)?;
    let key = signing_key(secret, &auth.scope);
    if signature_matches(&key, &candidates, &auth.signature) {
        Ok(auth)
    } else {
        Err(Refusal::SignatureMismatch)
    }
}
