//! Per-request context that every handler receives: the request id (set for the whole
//! request in a task-local by the server loop in [`crate::startup`]), the caller's socket
//! address and TLS session facts, the method, the headers handlers need, the raw query and
//! the unread body.
//!
//! The body is read only after authentication, through [`Call::read_body`], which stops at
//! the route's limit whether or not a `Content-Length` was sent.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt, TryStreamExt};
use warp::Filter;
use warp::http::{HeaderMap, Method};
use zeroize::Zeroizing;

use crate::error::{ApiError, ErrorCode};
use crate::tls::TlsInfo;

/// How long a request body may take to arrive in full.
pub(crate) const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Most bytes allocated up front for a body on the strength of its `Content-Length`.
const PREALLOCATE_MAX: u64 = 64 * 1024;

/// The tracing target of the access log: one line per request at `info` (request id,
/// method, path without the query, status, principal, latency), never a secret. Filter it
/// with `SIGVAULT_LOG` (e.g. `info,sigvault::access=off`).
pub(crate) const ACCESS_LOG: &str = "sigvault::access";

/// Whether the access log is on (a cached check: nothing is cloned for it otherwise).
pub(crate) fn access_log_enabled() -> bool {
    tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO)
}

/// The caller a handler authenticated, put in the response's extensions for the access log.
#[derive(Debug, Clone)]
pub(crate) struct AccessPrincipal(pub(crate) String);

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `fut` with `id` as the current request id.
pub(crate) async fn with_request_id<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The id of the request being served ("" outside one).
pub(crate) fn request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A new request id: a random per-process prefix and a counter — unique, cheap, and
/// carrying nothing about the request.
pub(crate) fn new_request_id() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut raw = [0u8; 6];
        let _ = getrandom::fill(&mut raw);
        base16ct::lower::encode_string(&raw)
    });
    format!("{prefix}-{:010x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The peer address, put in request extensions by the server loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub SocketAddr);

pub(crate) type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// What a handler gets besides its path parameters.
pub struct Call {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: String,
    pub client: Option<SocketAddr>,
    /// Present when the request came over TLS (put in the extensions by the server loop).
    pub tls: Option<TlsInfo>,
    /// What the handler learned that the audit event must say.
    pub note: AuditNote,
    body: BodyStream,
}

/// Facts a handler collects for its audit event; the outcome is taken from its result.
#[derive(Debug, Default)]
pub struct AuditNote {
    /// The authenticated caller (absent when authentication failed or was not reached).
    pub principal: Option<String>,
    pub decision: crate::audit::event::Decision,
    /// The policy that decided (allowed by, or forbidden by), when one did.
    pub policy: Option<String>,
    pub key_version: Option<u32>,
    /// Overrides the route's resource when the handler learns a more precise one (the
    /// name of the key a create made).
    pub resource: Option<String>,
    pub secret_hmac: Option<String>,
    /// The outcome to record instead of "ok" for a request that answered 200 with a
    /// refusal inside (a SigV4 verification that failed records its code).
    pub outcome: Option<&'static str>,
    /// Key uses to count once the event is durable.
    pub usage: Vec<crate::keys::Usage>,
    /// The sequence number of the request's intent event, once [`crate::api::intend`] made
    /// it durable (a change is about to happen).
    pub intent: Option<u64>,
    /// The compatible API the request came through (`vault-transit`, `aws-kms`), for the
    /// event's `api` member; `None` for the native API.
    pub api: Option<&'static str>,
}

/// Extracts a [`Call`]; never rejects.
pub(crate) fn call() -> impl Filter<Extract = (Call,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::ext::optional::<TlsInfo>())
        .and(warp::body::stream())
        .map(|method, headers, query, client: Option<ClientAddr>, tls, body| Call {
            method,
            headers,
            query,
            client: client.map(|c| c.0),
            tls,
            note: AuditNote::default(),
            body: boxed_body(body),
        })
}

fn boxed_body<S, B>(body: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()))))
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the whole body, refusing more than `limit` bytes with 413 and a body that has
    /// not fully arrived within [`BODY_TIMEOUT`] with 408. The buffer is zeroized when
    /// dropped: bodies can carry key material.
    pub(crate) async fn read_body(&mut self, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        tokio::time::timeout(BODY_TIMEOUT, self.read_body_unbounded_in_time(limit))
            .await
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::RequestTimeout,
                    format!("the request body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
                )
            })?
    }

    async fn read_body_unbounded_in_time(&mut self, limit: u64) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let too_large = || {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is limited to {limit} bytes"),
            )
        };
        let declared = self.header("content-length").and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        // A declared length is trusted only up to a modest pre-allocation; beyond it the
        // buffer grows as bytes actually arrive.
        let capacity = usize::try_from(declared.unwrap_or(0).min(limit).min(PREALLOCATE_MAX)).unwrap_or(0);
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        while let Some(chunk) = self
            .body
            .try_next()
            .await
            .map_err(|e| ApiError::invalid(format!("cannot read the request body: {e}")))?
        {
            let needed = (out.len() as u64).saturating_add(chunk.len() as u64);
            if needed > limit {
                return Err(too_large());
            }
            if needed > out.capacity() as u64 {
                // Grow by hand so the old buffer (which may hold key material) is zeroized
                // instead of being freed with its bytes in place.
                let wanted = usize::try_from(needed).unwrap_or(usize::MAX).max(out.capacity() * 2);
                let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
                bigger.extend_from_slice(&out);
                out = bigger;
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Drains nothing; used by handlers that take no body to refuse one that was sent.
    pub(crate) async fn expect_no_body(&mut self) -> Result<(), ApiError> {
        match self.body.next().await {
            Some(Ok(chunk)) if !chunk.is_empty() => Err(ApiError::invalid("this request takes no body")),
            _ => Ok(()),
        }
    }

    /// The `limit` query parameter of a listing: `default` when absent, else 1 to `max`.
    pub(crate) fn page_limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        match self.query_param("limit")? {
            None => Ok(default),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=max).contains(l))
                .ok_or_else(|| ApiError::invalid(format!("limit must be between 1 and {max}"))),
        }
    }

    /// One query parameter, percent-decoded. Repeated parameters are an error.
    pub(crate) fn query_param(&self, name: &str) -> Result<Option<String>, ApiError> {
        let mut found = None;
        for pair in self.query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k)? == name {
                if found.is_some() {
                    return Err(ApiError::invalid(format!("query parameter `{name}` is repeated")));
                }
                found = Some(percent_decode(v)?);
            }
        }
        Ok(found)
    }
}

fn percent_decode(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::invalid("malformed percent-encoding in the query string");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes
                    .get(i + 1)
                    .and_then(|c| (*c as char).to_digit(16))
                    .ok_or_else(bad)?;
                let lo = bytes
                    .get(i + 2)
                    .and_then(|c| (*c as char).to_digit(16))
                    .ok_or_else(bad)?;
                out.push(u8::try_from(hi * 16 + lo).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_handles_escapes_plus_and_errors() {
        assert_eq!(percent_decode("a%2Fb+c").unwrap(), "a/b c");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%ff").is_err(), "not UTF-8");
    }

    #[test]
    fn request_ids_are_unique() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 12 + 1 + 10);
    }
}
