//! The API's error model: one [`ErrorCode`] per stable code of API.md, mapped to its HTTP
//! status in one exhaustive `match`, and [`ApiError`], the error every handler returns.
//!
//! Messages of 5xx errors are generic; their cause goes to the log only (never to the
//! caller). No message may contain a secret, a token or a message body.

use warp::http::StatusCode;

/// Stable error codes. Clients match on these strings; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    NotFound,
    KeyNotFound,
    CredentialNotFound,
    MethodNotAllowed,
    RequestTimeout,
    AlreadyExists,
    FailedPrecondition,
    PayloadTooLarge,
    RateLimited,
    KekUnavailable,
    StoreUnavailable,
    AuditUnavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::KeyNotFound => "KEY_NOT_FOUND",
            ErrorCode::CredentialNotFound => "CREDENTIAL_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::AlreadyExists => "ALREADY_EXISTS",
            ErrorCode::FailedPrecondition => "FAILED_PRECONDITION",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::KekUnavailable => "KEK_UNAVAILABLE",
            ErrorCode::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorCode::AuditUnavailable => "AUDIT_UNAVAILABLE",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::KeyNotFound | ErrorCode::CredentialNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::KekUnavailable | ErrorCode::StoreUnavailable | ErrorCode::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a caller sees for server-side failures, whatever the cause.
    fn generic_message(self) -> Option<&'static str> {
        match self {
            ErrorCode::KekUnavailable => Some("the key-encryption key is unavailable"),
            ErrorCode::StoreUnavailable => Some("the store is unavailable"),
            ErrorCode::AuditUnavailable => Some("the audit trail is unavailable"),
            ErrorCode::Internal => Some("internal error"),
            ErrorCode::InvalidArgument
            | ErrorCode::Unauthenticated
            | ErrorCode::PermissionDenied
            | ErrorCode::NotFound
            | ErrorCode::KeyNotFound
            | ErrorCode::CredentialNotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::RequestTimeout
            | ErrorCode::AlreadyExists
            | ErrorCode::FailedPrecondition
            | ErrorCode::PayloadTooLarge
            | ErrorCode::RateLimited => None,
        }
    }
}

/// An error on its way to the caller.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// What the caller is told. For 5xx this is always the generic message.
    pub message: String,
    /// The cause, for the log only.
    pub detail: Option<String>,
    /// Seconds until a retry can succeed: sent as `Retry-After` (429).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        match code.generic_message() {
            Some(generic) => Self {
                code,
                message: generic.to_owned(),
                detail: Some(message.into()),
                retry_after_s: None,
            },
            None => Self {
                code,
                message: message.into(),
                detail: None,
                retry_after_s: None,
            },
        }
    }

    /// Adds a `Retry-After` of `seconds` to the answer.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, detail.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_side_errors_hide_their_cause() {
        let err = ApiError::new(ErrorCode::StoreUnavailable, "disk I/O error at /var/lib/x");
        assert_eq!(err.message, "the store is unavailable");
        assert_eq!(err.detail.as_deref(), Some("disk I/O error at /var/lib/x"));
        assert_eq!(err.code.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn client_errors_keep_their_message() {
        let err = ApiError::invalid("name is too long");
        assert_eq!(err.message, "name is too long");
        assert_eq!(err.code.as_str(), "INVALID_ARGUMENT");
        assert_eq!(ErrorCode::FailedPrecondition.status(), StatusCode::CONFLICT);
    }
}
