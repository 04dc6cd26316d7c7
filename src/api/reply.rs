//! Building responses: JSON bodies, the error envelope of docs/API.md, and parsing of JSON
//! request bodies and base64 fields into [`ApiError`]s with stable codes.

use base64::Engine as _;
use serde::Deserialize;
use serde::Serialize;
use warp::http::{StatusCode, header};
use warp::reply::Response;

use super::context::request_id;
use crate::error::ApiError;
use crate::secret::SecretBytes;

pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(bytes.into());
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => error(ApiError::internal(format!("serialising a response: {e}"))),
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: &'a str,
    request_id: &'a str,
}

/// `{"error":{"code","message","request_id"}}` with the code's status. Server-side errors
/// are logged here with their cause; the caller sees only the generic message.
pub fn error(err: ApiError) -> Response {
    let id = request_id();
    if err.code.status().is_server_error() {
        tracing::error!(request_id = %id, code = err.code.as_str(), detail = err.detail.as_deref().unwrap_or(""), "request failed");
    }
    let mut response = json(
        err.code.status(),
        &ErrorBody {
            error: ErrorDetail {
                code: err.code.as_str(),
                message: &err.message,
                request_id: &id,
            },
        },
    );
    if let Some(seconds) = err.retry_after_s {
        response
            .headers_mut()
            .insert(warp::http::header::RETRY_AFTER, warp::http::HeaderValue::from(seconds));
    }
    if let Some(methods) = err.allow {
        response
            .headers_mut()
            .insert(warp::http::header::ALLOW, warp::http::HeaderValue::from_static(methods));
    }
    response
}

/// Parses a JSON body. Error messages keep field names but drop quoted input values, so a
/// misplaced secret is never echoed back or logged.
/// For `#[serde(default, deserialize_with = "reply::present")]` on an `Option<Option<T>>`:
/// tells an explicit `null` (`Some(None)`: clear the field) from an absent field (`None`,
/// by `default`: leave it).
pub fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub(crate) fn parse_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, ApiError> {
    // Every body is a JSON object: serde would also fill a request's fields from an array,
    // by position, past the field names `deny_unknown_fields` checks.
    let first = body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::invalid("invalid JSON body: expected a JSON object"));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {}", scrub_quoted(&e.to_string()))))
}

fn scrub_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for c in text.chars() {
        if c == '"' {
            if inside {
                out.push_str("\"…\"");
            }
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// Decodes a standard, padded base64 field.
pub(crate) fn base64_field(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| ApiError::invalid(format!("`{field}` is not valid base64 (standard alphabet, padded)")))
}

/// Decodes a base64 field that carries key material straight into a secret buffer.
pub(crate) fn base64_secret(field: &str, value: &str) -> Result<SecretBytes, ApiError> {
    let mut raw = zeroize::Zeroizing::new(base64_field(field, value)?);
    let secret = SecretBytes::from_slice(&raw);
    zeroize::Zeroize::zeroize(&mut *raw);
    Ok(secret)
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn quoted_values_are_scrubbed_from_json_errors() {
        let err = parse_json::<u32>(br#""hunter2-secret""#).unwrap_err();
        assert!(!err.message.contains("hunter2"), "{}", err.message);
        assert!(err.message.starts_with("invalid JSON body"));
    }

    #[test]
    fn a_body_is_a_json_object_and_never_fills_fields_by_position() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        struct Body {
            name: String,
        }
        assert_eq!(parse_json::<Body>(b" \r\n{\"name\":\"a\"}").unwrap().name, "a");
        for positional in [&br#"["a"]"#[..], b" [\"a\"]", b"[]"] {
            let err = parse_json::<Body>(positional).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert_eq!(err.message, "invalid JSON body: expected a JSON object");
        }
    }

    #[test]
    fn base64_fields_must_be_standard_and_padded() {
        assert_eq!(base64_field("m", "aGk=").unwrap(), b"hi");
        assert!(base64_field("m", "aGk").is_err());
        assert!(base64_field("m", "a-_=").is_err());
        assert_eq!(base64_field("m", "").unwrap(), b"");
    }
}
