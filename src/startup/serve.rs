//! The HTTP server loop: accepting (plain or TLS) connections under a connection cap, one
//! request id per request, and graceful shutdown.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration as StdDuration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use warp::http::HeaderValue;

use super::chain;
use crate::api::Limits;
use crate::api::context::{
    ACCESS_LOG, AccessPrincipal, ClientAddr, access_log_enabled, new_request_id, with_request_id,
};
use crate::tls::TlsInfo;

/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: StdDuration = StdDuration::from_secs(30);

/// The accept loop: HTTP/1.1 with keep-alive (over TLS when `tls` is given), a request id
/// per request (task-local for the handlers, `x-request-id` on every response), the peer
/// address and TLS facts in the request extensions, at most `limits.max_connections` open
/// connections (further clients wait in the kernel's backlog) and
/// `limits.max_connections_per_address` from one address (a further one is closed at once),
/// a write that makes no progress for `limits.write_timeout` closing its connection, one with
/// no request in progress for `limits.idle_timeout` closed, at most
/// `limits.max_pipelined_bytes` read ahead of the request being served, and graceful
/// shutdown.
///
/// The TLS handshake runs in the connection's own task under
/// [`crate::tls::HANDSHAKE_TIMEOUT`], so a slow or failing client never holds up the
/// accept loop; a failed handshake is logged at debug and the connection dropped.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let graceful = GracefulShutdown::new();
    let service = warp::service(filter);
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let per_address = Arc::new(PerAddress::new(limits.max_connections_per_address));
    let connection = ConnectionLimits::from(limits);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(StdDuration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(address_slot) = per_address.take(peer.ip()) else {
            tracing::debug!(%peer, "connection closed: too many from its address");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    let stream = WriteTimeout::new(stream, connection.write_timeout);
                    serve_connection(stream, service, peer, None, watcher, connection).await
                }
                Some(acceptor) => match crate::tls::accept(&acceptor, stream).await {
                    Ok((stream, info)) => {
                        let stream = WriteTimeout::new(stream, connection.write_timeout);
                        serve_connection(stream, service, peer, Some(info), watcher, connection).await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %chain(&e), "connection dropped");
                        Ok(())
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(address_slot);
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period ended with requests still in flight");
    }
}

/// Serves HTTP/1.1 requests on one (plain or TLS) connection until it closes or shutdown
/// asks it to finish.
async fn serve_connection<IO, S>(
    io: IO,
    service: S,
    peer: SocketAddr,
    tls: Option<TlsInfo>,
    watcher: Watcher,
    limits: ConnectionLimits,
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<hyper::Request<TrackedBody>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let handler = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let mut service = service.clone();
        let (mut req, body_read) = track_body(req);
        req.extensions_mut().insert(ClientAddr(peer));
        if let Some(info) = &tls {
            req.extensions_mut().insert(info.clone());
        }
        let id = new_request_id();
        let access = access_log_enabled().then(|| AccessLine::start(&req, &id));
        async move {
            let header = HeaderValue::from_str(&id).ok();
            let mut response = with_request_id(id, service.call(req)).await?;
            if let Some(access) = access {
                access.finish(&response);
            }
            if let Some(value) = header {
                response.headers_mut().insert("x-request-id", value);
            }
            if !body_read.load(Ordering::Acquire) {
                // Answered without reading the body (a refusal before it): hyper cannot
                // reuse the connection, so the client is told rather than left to write its
                // next request into a connection the server drops.
                response
                    .headers_mut()
                    .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    // hyper runs its header read timer from the end of one response to the end of the next
    // request's header: that is the idle timeout. Its read buffer holds what a client
    // pipelined ahead; once full, the connection is not read until requests are served.
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
        .max_buf_size(limits.max_pipelined_bytes);
    watcher.watch(builder.serve_connection(TokioIo::new(io), handler)).await
}

/// The longest path the access log shows (the rest is cut, marked with `…`).
const ACCESS_PATH_MAX: usize = 256;

/// What the access-log line of one request needs from its start.
struct AccessLine {
    id: String,
    method: hyper::Method,
    path: String,
    started: std::time::Instant,
}

impl AccessLine {
    fn start<B>(req: &hyper::Request<B>, id: &str) -> Self {
        let path = req.uri().path();
        let path = match path.char_indices().nth(ACCESS_PATH_MAX) {
            Some((cut, _)) => format!("{}…", path.get(..cut).unwrap_or_default()),
            None => path.to_owned(),
        };
        Self {
            id: id.to_owned(),
            method: req.method().clone(),
            path,
            started: std::time::Instant::now(),
        }
    }

    /// Logs the line: never the query (a presigned URL's signature), a header or a body.
    fn finish(self, response: &warp::reply::Response) {
        let principal = response
            .extensions()
            .get::<AccessPrincipal>()
            .map_or("-", |p| p.0.as_str());
        tracing::info!(
            target: ACCESS_LOG,
            request_id = %self.id,
            method = %self.method,
            path = %self.path,
            status = response.status().as_u16(),
            principal = %principal,
            latency_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "request"
        );
    }
}

/// The request with its body wrapped to record when it has been read to its end, and that
/// record (already set for a request without a body).
fn track_body(req: hyper::Request<hyper::body::Incoming>) -> (hyper::Request<TrackedBody>, Arc<AtomicBool>) {
    let read = Arc::new(AtomicBool::new(hyper::body::Body::is_end_stream(req.body())));
    let flag = Arc::clone(&read);
    (req.map(|inner| TrackedBody { inner, read: flag }), read)
}

/// A request body that sets its flag once it has been read to its end.
struct TrackedBody {
    inner: hyper::body::Incoming,
    read: Arc<AtomicBool>,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        // The end is either the stream's `None` or the last bytes a length announced.
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// What each connection is served under (copied into its task).
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    write_timeout: StdDuration,
    idle_timeout: StdDuration,
    max_pipelined_bytes: usize,
}

impl From<&Limits> for ConnectionLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            write_timeout: limits.write_timeout,
            idle_timeout: limits.idle_timeout,
            max_pipelined_bytes: limits.max_pipelined_bytes,
        }
    }
}

/// Open connections per source address, each counted while its [`AddressSlot`] lives.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection of an address; dropping it frees the slot.
struct AddressSlot {
    owner: Arc<PerAddress>,
    ip: IpAddr,
}

impl PerAddress {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for a connection from `ip`, unless it holds the most already.
    fn take(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            owner: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.owner.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection whose writes fail with `TimedOut` once one has made no progress for
/// `limit`: the peer stopped reading (its receive window and our send buffer are full), and
/// its slot goes to someone else. Reads pass through (hyper bounds waiting for a request).
struct WriteTimeout<IO> {
    io: IO,
    limit: StdDuration,
    /// Running while a write (or flush) waits; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> WriteTimeout<IO> {
    fn new(io: IO, limit: StdDuration) -> Self {
        Self {
            io,
            limit,
            stalled: None,
        }
    }

    /// After the inner write answered `polled`: progress clears the timer; a wait starts
    /// it, and a wait past the limit is an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
