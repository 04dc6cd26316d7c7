//! The canonical request and the string to sign: how a request becomes the bytes its
//! signature covers.
//!
//! Owns URI encoding (only `A-Za-z0-9-._~` pass through, everything else is `%XX`
//! uppercase), path normalisation, the sorted canonical query, the canonical headers and the
//! choice of payload hash. The known-answer vectors of `sigv4::vectors` are the judge of
//! every rule here.
//!
//! Two requests that differ in any signed part must never canonicalise to the same bytes:
//! the method and signed header names are checked to be HTTP tokens (no `\n` or `:` that
//! could shift a line), header values have their whitespace runs — newlines included —
//! folded to one space, and every path and query byte is percent-encoded.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{
    ALGORITHM, Authorization, EMPTY_SHA256, Form, HttpRequest, MAX_QUERY_PARAMS, MAX_SIGNED_HEADERS, PathRules,
};
use super::{Header, Refusal, UNSIGNED_PAYLOAD, malformed};

/// The presigned parameter that carries the signature; never part of the canonical query.
pub(super) const SIGNATURE_PARAM: &[u8] = b"X-Amz-Signature";
/// The session-token parameter, which some signers append after signing.
pub(super) const SECURITY_TOKEN_PARAM: &[u8] = b"X-Amz-Security-Token";
/// The header that declares the payload hash.
const CONTENT_SHA256_HEADER: &str = "x-amz-content-sha256";

/// The canonical request for one choice of payload hash and session-token handling.
///
/// `omit_security_token_from_query` leaves `X-Amz-Security-Token` out of the canonical
/// query (see [`super::strings_to_sign`]). Refuses a method or `SignedHeaders` that is not
/// well formed and a signed header absent from the request.
pub fn canonical_request(
    req: &HttpRequest<'_>,
    auth: &Authorization,
    rules: PathRules,
    payload_hash: &str,
    omit_security_token_from_query: bool,
) -> Result<String, Refusal> {
    if req.method.is_empty() || req.method.len() > 32 || !req.method.bytes().all(is_tchar) {
        return Err(malformed("the method is not an HTTP token"));
    }
    validate_signed_headers(&auth.signed_headers)?;
    let query = canonical_query(req.query, auth.form == Form::Presigned, omit_security_token_from_query)?;
    // One buffer for the whole request (this runs for every verification).
    let mut out = String::with_capacity(
        req.path
            .len()
            .saturating_mul(3)
            .saturating_add(query.len())
            .saturating_add(512),
    );
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path, rules));
    out.push('\n');
    out.push_str(&query);
    out.push('\n');
    push_canonical_headers(&mut out, req.headers, &auth.signed_headers)?;
    out.push('\n');
    for (i, name) in auth.signed_headers.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        out.push_str(name);
    }
    out.push('\n');
    out.push_str(payload_hash);
    Ok(out)
}

/// `AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hex(sha256(canonical request))}`.
pub fn string_to_sign(auth: &Authorization, canonical_request: &str) -> Vec<u8> {
    let scope = &auth.scope;
    let mut out = String::with_capacity(
        ALGORITHM.len() + auth.amz_date.len() + scope.date.len() + scope.region.len() + scope.service.len() + 96,
    );
    out.push_str(ALGORITHM);
    out.push('\n');
    out.push_str(&auth.amz_date);
    out.push('\n');
    scope.push_to(&mut out);
    out.push('\n');
    push_sha256_hex(&mut out, canonical_request.as_bytes());
    out.into_bytes()
}

/// Lowercase hex SHA-256 (the tests' and the vectors' payload hashes).
#[cfg(test)]
pub(super) fn sha256_hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    push_sha256_hex(&mut out, data);
    out
}

fn push_sha256_hex(out: &mut String, data: &[u8]) {
    let digest = Sha256::digest(data);
    for byte in digest.iter() {
        out.push(hex_digit(byte >> 4, false));
        out.push(hex_digit(byte & 0x0f, false));
    }
}

fn hex_digit(nibble: u8, upper: bool) -> char {
    match (nibble, upper) {
        (0..=9, _) => char::from(b'0' + nibble),
        (_, true) => char::from(b'A' + (nibble & 0x0f) - 10),
        (_, false) => char::from(b'a' + (nibble & 0x0f) - 10),
    }
}

/// The value of one hex digit of either case.
pub(super) fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// RFC 7230 `tchar`: what a header name or method may be made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn push_encoded(out: &mut String, byte: u8) {
    if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
        out.push(char::from(byte));
    } else {
        out.push('%');
        out.push(hex_digit(byte >> 4, true));
        out.push(hex_digit(byte & 0x0f, true));
    }
}

/// URI-encodes every byte outside the unreserved set, `/` included.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        push_encoded(&mut out, byte);
    }
    out
}

/// Decodes valid `%XX` escapes; an invalid escape keeps its `%` literally and `+` stays `+`.
pub(super) fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%'
            && let [high, low, after @ ..] = tail
            && let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low))
        {
            out.push((high << 4) | low);
            rest = after;
            continue;
        }
        out.push(byte);
        rest = tail;
    }
    out
}

/// The canonical URI of a raw path. An empty path is `/`.
pub(super) fn canonical_uri(path: &str, rules: PathRules) -> String {
    let path = if path.is_empty() { "/" } else { path };
    let path = if rules.normalize {
        Cow::Owned(normalize_path(path))
    } else {
        Cow::Borrowed(path)
    };
    let mut out = String::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte == b'/' {
            out.push('/');
            continue;
        }
        // Single encoding (S3): a valid escape is decoded and encoded again, so `%7e` and
        // `~` sign alike, and a decoded `/` (from `%2F`) stays `%2F`, never a separator.
        if !rules.double_encode
            && byte == b'%'
            && let [high, low, after @ ..] = tail
            && let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low))
        {
            push_encoded(&mut out, (high << 4) | low);
            rest = after;
            continue;
        }
        push_encoded(&mut out, byte);
    }
    out
}

/// RFC 3986 dot-segment removal plus collapsing of repeated slashes (the vectors
/// `get-slashes-normalized` and `get-slash-normalized` expect both). A trailing slash, or a
/// final `.`/`..` segment, leaves a trailing slash unless the result is the root.
fn normalize_path(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or("");
    let trailing_slash = matches!(last, "" | "." | "..");
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len().saturating_add(1));
    out.push('/');
    out.push_str(&segments.join("/"));
    if trailing_slash && !segments.is_empty() {
        out.push('/');
    }
    out
}

/// A query parameter's name and value, percent-decoded (bytes: they need not be UTF-8).
pub(super) type QueryPair = (Vec<u8>, Vec<u8>);

/// The `&`-separated parameters of a raw query, each split at its first `=` (no `=` means an
/// empty value) and percent-decoded. Empty pieces (`a=1&&b=2`) are skipped.
pub(super) fn query_pairs(query: &str) -> Result<Vec<QueryPair>, Refusal> {
    let mut pairs = Vec::new();
    for piece in query.split('&').filter(|piece| !piece.is_empty()) {
        if pairs.len() >= MAX_QUERY_PARAMS {
            return Err(malformed("too many query parameters"));
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        pairs.push((percent_decode(name.as_bytes()), percent_decode(value.as_bytes())));
    }
    Ok(pairs)
}

/// Whether the query holds a parameter whose decoded name is `name`.
pub(super) fn query_has_param(query: &str, name: &[u8]) -> Result<bool, Refusal> {
    Ok(query_pairs(query)?.iter().any(|(n, _)| n == name))
}

/// Encoded `name=value` pairs sorted by name then value, joined with `&`. The presigned form
/// leaves out `X-Amz-Signature`.
fn canonical_query(query: &str, presigned: bool, omit_security_token: bool) -> Result<String, Refusal> {
    let mut pairs: Vec<(String, String)> = query_pairs(query)?
        .into_iter()
        .filter(|(name, _)| !(presigned && name == SIGNATURE_PARAM))
        .filter(|(name, _)| !(omit_security_token && name == SECURITY_TOKEN_PARAM))
        .map(|(name, value)| (encode(&name), encode(&value)))
        .collect();
    // Sorting the pairs, not the joined strings: `Param=…` sorts before `Param-3=…`.
    pairs.sort_unstable();
    let joined: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    Ok(joined.join("&"))
}

/// `SignedHeaders` must be non-empty, bounded, lowercase HTTP tokens, strictly ascending
/// (sorted and unique) and include `host`.
pub(super) fn validate_signed_headers(names: &[String]) -> Result<(), Refusal> {
    if names.is_empty() {
        return Err(malformed("SignedHeaders is empty"));
    }
    if names.len() > MAX_SIGNED_HEADERS {
        return Err(malformed("SignedHeaders lists too many headers"));
    }
    for name in names {
        if name.is_empty() || !name.bytes().all(|b| is_tchar(b) && !b.is_ascii_uppercase()) {
            return Err(malformed(
                "SignedHeaders holds a name that is not a lowercase header name",
            ));
        }
    }
    if !names.windows(2).all(|pair| matches!(pair, [a, b] if a < b)) {
        return Err(malformed("SignedHeaders is not sorted and unique"));
    }
    if !names.iter().any(|name| name == "host") {
        return Err(malformed("the host header is not signed"));
    }
    Ok(())
}

/// Appends `value` trimmed, with every run of spaces, tabs, CRs and LFs folded to one space
/// (the vector `get-header-value-multiline` folds continuation lines this way).
fn push_canonical_value(out: &mut String, value: &str) {
    let mut first = true;
    for word in value.split([' ', '\t', '\r', '\n']).filter(|word| !word.is_empty()) {
        if !first {
            out.push(' ');
        }
        first = false;
        out.push_str(word);
    }
}

/// The values of every header named `name` (any case), in the order received.
pub(super) fn header_values<'r>(headers: &'r [Header<'_>], name: &'r str) -> impl Iterator<Item = &'r str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_ref())
}

/// The value of a header that may appear at most once; a repeat is malformed.
pub(super) fn single_header<'r>(headers: &'r [Header<'_>], name: &'r str) -> Result<Option<&'r str>, Refusal> {
    let mut values = header_values(headers, name);
    let first = values.next();
    if values.next().is_some() {
        return Err(malformed(format!("the {name} header is repeated")));
    }
    Ok(first)
}

/// Appends one `name:value\n` line per signed header, in `SignedHeaders` order; repeated
/// headers are joined with `,` in the order received.
fn push_canonical_headers(out: &mut String, headers: &[Header<'_>], signed: &[String]) -> Result<(), Refusal> {
    for name in signed {
        out.push_str(name);
        out.push(':');
        let mut values = header_values(headers, name);
        let Some(first) = values.next() else {
            return Err(malformed(format!("the signed header {name} is not in the request")));
        };
        push_canonical_value(out, first);
        for value in values {
            out.push(',');
            push_canonical_value(out, value);
        }
        out.push('\n');
    }
    Ok(())
}

fn is_lower_hex_sha256(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The payload hashes the signer may have used, most likely first.
///
/// A declared `x-amz-content-sha256` is used verbatim (a lowercase hex hash,
/// `UNSIGNED-PAYLOAD`, or a `STREAMING-…` mode); a hex one that contradicts the body's known
/// hash is a [`Refusal::SignatureMismatch`]: the body is not the one signed. Without it the
/// header form signs the body's hash (or the empty hash), while a presigned URL usually
/// signs `UNSIGNED-PAYLOAD` (S3, botocore) and sometimes the body's hash (aws-c-auth).
pub(super) fn payload_hashes(req: &HttpRequest<'_>, form: Form) -> Result<Vec<String>, Refusal> {
    let known = req
        .payload_sha256
        .map_or_else(|| EMPTY_SHA256.to_owned(), str::to_ascii_lowercase);
    let Some(declared) = single_header(req.headers, CONTENT_SHA256_HEADER)? else {
        return Ok(match form {
            Form::Header => vec![known],
            Form::Presigned => vec![UNSIGNED_PAYLOAD.to_owned(), known],
        });
    };
    let declared = declared.trim();
    if is_lower_hex_sha256(declared) {
        if req.payload_sha256.is_some() && declared != known {
            return Err(Refusal::SignatureMismatch);
        }
    } else if declared != UNSIGNED_PAYLOAD && !is_streaming_mode(declared) {
        return Err(malformed(
            "x-amz-content-sha256 is not a hash, UNSIGNED-PAYLOAD or STREAMING-…",
        ));
    }
    Ok(vec![declared.to_owned()])
}

/// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, …
fn is_streaming_mode(value: &str) -> bool {
    value.len() <= 64
        && value.strip_prefix("STREAMING-").is_some_and(|mode| {
            !mode.is_empty()
                && mode
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        })
}
