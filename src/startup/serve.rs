//! The HTTP server loop: accepting (plain or TLS) connections under a connection cap, one
//! request id per request, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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
use crate::api::context::{ClientAddr, new_request_id, with_request_id};
use crate::tls::TlsInfo;

/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: StdDuration = StdDuration::from_secs(30);
/// A client that sends no complete request header within this time is disconnected.
const HEADER_READ_TIMEOUT: StdDuration = StdDuration::from_secs(30);

/// The accept loop: HTTP/1.1 with keep-alive (over TLS when `tls` is given), a request id
/// per request (task-local for the handlers, `x-request-id` on every response), the peer
/// address and TLS facts in the request extensions, at most `max_connections` open
/// connections (further clients wait in the kernel's backlog), and graceful shutdown.
///
/// The TLS handshake runs in the connection's own task under
/// [`crate::tls::HANDSHAKE_TIMEOUT`], so a slow or failing client never holds up the
/// accept loop; a failed handshake is logged at debug and the connection dropped.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send,
) where
    F: warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    F::Future: Send,
{
    let graceful = GracefulShutdown::new();
    let service = warp::service(filter);
    let mut shutdown = std::pin::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
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
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => serve_connection(stream, service, peer, None, watcher).await,
                Some(acceptor) => match crate::tls::accept(&acceptor, stream).await {
                    Ok((stream, info)) => serve_connection(stream, service, peer, Some(info), watcher).await,
                    Err(e) => {
                        tracing::debug!(%peer, error = %chain(&e), "connection dropped");
                        Ok(())
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(error = %e, "connection ended with an error");
            }
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
) -> Result<(), hyper::Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<hyper::Request<hyper::body::Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let handler = service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        let mut service = service.clone();
        req.extensions_mut().insert(ClientAddr(peer));
        if let Some(info) = &tls {
            req.extensions_mut().insert(info.clone());
        }
        let id = new_request_id();
        async move {
            let header = HeaderValue::from_str(&id).ok();
            let mut response = with_request_id(id, service.call(req)).await?;
            if let Some(value) = header {
                response.headers_mut().insert("x-request-id", value);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    watcher.watch(builder.serve_connection(TokioIo::new(io), handler)).await
}
