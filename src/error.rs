//! The API's error model: one [`ErrorCode`] per stable code of docs/API.md, mapped to its HTTP
//! status in one exhaustive `match` and listed in [`ErrorCode::ALL`] (complete, or the build
//! fails), and [`ApiError`], the error every handler returns.
//!
//! Messages of 5xx errors are generic; their cause goes to the log only (never to the
//! caller). No message may contain a secret, a token or a message body. [`chain`] writes an
//! error and its causes on one line, for the log and for the commands' one-line errors.

use warp::http::StatusCode;

/// An error and its sources on one line (`outer: cause: root cause`), each cause once: a
/// wrapper that repeats its source's text does not print it twice.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// Stable error codes. Clients match on these strings; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    Unauthenticated,
    PermissionDenied,
    ApprovalRequired,
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
    IntegrityError,
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order, each once. The compiler keeps it so: see
    /// [`ErrorCode::position`] and the `const _` that evaluates it. Tests and the OpenAPI check
    /// walk this list rather than reading this file as text.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::ApprovalRequired,
        ErrorCode::NotFound,
        ErrorCode::KeyNotFound,
        ErrorCode::CredentialNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::AlreadyExists,
        ErrorCode::FailedPrecondition,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::KekUnavailable,
        ErrorCode::StoreUnavailable,
        ErrorCode::AuditUnavailable,
        ErrorCode::IntegrityError,
        ErrorCode::Internal,
    ];

    /// Where `self` stands in [`ErrorCode::ALL`]. Its `match` has no `_` arm, so a new
    /// variant needs an arm here, and each arm looks its variant up in `ALL` at compile time:
    /// a variant left out of `ALL` does not compile. Evaluated
    /// at compile time for every code of `ALL` (the `const _` below).
    const fn position(self) -> usize {
        match self {
            ErrorCode::InvalidArgument => const { index_in_all(ErrorCode::InvalidArgument) },
            ErrorCode::Unauthenticated => const { index_in_all(ErrorCode::Unauthenticated) },
            ErrorCode::PermissionDenied => const { index_in_all(ErrorCode::PermissionDenied) },
            ErrorCode::ApprovalRequired => const { index_in_all(ErrorCode::ApprovalRequired) },
            ErrorCode::NotFound => const { index_in_all(ErrorCode::NotFound) },
            ErrorCode::KeyNotFound => const { index_in_all(ErrorCode::KeyNotFound) },
            ErrorCode::CredentialNotFound => const { index_in_all(ErrorCode::CredentialNotFound) },
            ErrorCode::MethodNotAllowed => const { index_in_all(ErrorCode::MethodNotAllowed) },
            ErrorCode::RequestTimeout => const { index_in_all(ErrorCode::RequestTimeout) },
            ErrorCode::AlreadyExists => const { index_in_all(ErrorCode::AlreadyExists) },
            ErrorCode::FailedPrecondition => const { index_in_all(ErrorCode::FailedPrecondition) },
            ErrorCode::PayloadTooLarge => const { index_in_all(ErrorCode::PayloadTooLarge) },
            ErrorCode::RateLimited => const { index_in_all(ErrorCode::RateLimited) },
            ErrorCode::KekUnavailable => const { index_in_all(ErrorCode::KekUnavailable) },
            ErrorCode::StoreUnavailable => const { index_in_all(ErrorCode::StoreUnavailable) },
            ErrorCode::AuditUnavailable => const { index_in_all(ErrorCode::AuditUnavailable) },
            ErrorCode::IntegrityError => const { index_in_all(ErrorCode::IntegrityError) },
            ErrorCode::Internal => const { index_in_all(ErrorCode::Internal) },
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::ApprovalRequired => "APPROVAL_REQUIRED",
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
            ErrorCode::IntegrityError => "INTEGRITY_ERROR",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied | ErrorCode::ApprovalRequired => StatusCode::FORBIDDEN,
            ErrorCode::NotFound | ErrorCode::KeyNotFound | ErrorCode::CredentialNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::AlreadyExists | ErrorCode::FailedPrecondition => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::KekUnavailable | ErrorCode::StoreUnavailable | ErrorCode::AuditUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::IntegrityError | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a caller sees for server-side failures, whatever the cause.
    fn generic_message(self) -> Option<&'static str> {
        match self {
            ErrorCode::KekUnavailable => Some("the key-encryption key is unavailable"),
            ErrorCode::StoreUnavailable => Some("the store is unavailable"),
            ErrorCode::AuditUnavailable => Some("the audit trail is unavailable"),
            ErrorCode::IntegrityError => Some("a stored record failed its integrity check"),
            ErrorCode::Internal => Some("internal error"),
            ErrorCode::InvalidArgument
            | ErrorCode::Unauthenticated
            | ErrorCode::PermissionDenied
            | ErrorCode::ApprovalRequired
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

/// Compile-time proof that [`ErrorCode::ALL`] is every code, each once: evaluating
/// `position` evaluates its per-variant lookups (a variant missing from `ALL` stops the build
/// there), and a code listed twice stands at a position other than its first.
const _: () = {
    let mut rest = ErrorCode::ALL;
    let mut index = 0;
    while let [code, tail @ ..] = rest {
        assert!(code.position() == index, "ErrorCode::ALL lists a code twice");
        rest = tail;
        index += 1;
    }
};

/// The index of `code`'s first appearance in [`ErrorCode::ALL`]. Only called in `const`
/// blocks (see [`ErrorCode::position`]), so its assertion stops the build, never a request.
const fn index_in_all(code: ErrorCode) -> usize {
    let mut rest = ErrorCode::ALL;
    let mut index = 0;
    while let [first, tail @ ..] = rest {
        // `==` is not callable in a `const fn`; the discriminants of a fieldless enum are.
        if *first as usize == code as usize {
            return index;
        }
        rest = tail;
        index += 1;
    }
    assert!(index < ErrorCode::ALL.len(), "ErrorCode::ALL leaves out a variant");
    index
}

/// An error on its way to the caller.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    /// What the caller is told. For 5xx this is always the generic message.
    pub message: String,
    /// The cause, for the log only.
    pub(crate) detail: Option<String>,
    /// Seconds until a retry can succeed: sent as `Retry-After` (429).
    pub(crate) retry_after_s: Option<u64>,
    /// The methods the route takes: sent as `Allow` (405, RFC 9110 §15.5.6).
    pub(crate) allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        match code.generic_message() {
            Some(generic) => Self {
                code,
                message: generic.to_owned(),
                detail: Some(message.into()),
                retry_after_s: None,
                allow: None,
            },
            None => Self {
                code,
                message: message.into(),
                detail: None,
                retry_after_s: None,
                allow: None,
            },
        }
    }

    /// Adds a `Retry-After` of `seconds` to the answer.
    pub(crate) fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// Adds an `Allow` of `methods` to the answer.
    pub(crate) fn allow(mut self, methods: &'static str) -> Self {
        self.allow = Some(methods);
        self
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub(crate) fn internal(detail: impl std::fmt::Display) -> Self {
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
    fn the_codes_strings_are_unique_upper_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} names two codes");
            assert!(
                !text.is_empty() && text.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{text} is not UPPER_SNAKE_CASE"
            );
        }
    }

    #[test]
    fn only_server_side_codes_hide_their_message_and_they_answer_5xx() {
        for code in ErrorCode::ALL {
            assert_eq!(
                code.generic_message().is_some(),
                code.status().is_server_error(),
                "{code:?}: a generic message goes with a 5xx status, and only with one"
            );
        }
    }

    #[test]
    fn client_errors_keep_their_message() {
        let err = ApiError::invalid("name is too long");
        assert_eq!(err.message, "name is too long");
        assert_eq!(err.code.as_str(), "INVALID_ARGUMENT");
        assert_eq!(ErrorCode::FailedPrecondition.status(), StatusCode::CONFLICT);
    }
}
