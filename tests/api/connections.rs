//! Connection limits against clients that hold connections without reading: a response
//! write that makes no progress for `limits.write_timeout` closes its connection, and one
//! source address holds at most `limits.max_connections_per_address` connections. The
//! other client connects from 127.0.0.2, another loopback address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use reqwest::StatusCode;
use sigvault::api::Limits;
use tokio::io::AsyncWriteExt;

use crate::helpers::{AppHome, TestApp, spawn_app_in};

const SLOW: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A connection from `from` that pipelines 400 requests for the 160 KB OpenAPI document
/// (64 MB of answers, past any socket buffer, reached after a few dozen answers even on a
/// loaded machine) with a 4 KiB receive window and never reads: the server's writes to it
/// stall.
async fn slow_reader(app: &TestApp, from: IpAddr) -> tokio::task::JoinHandle<()> {
    let url = reqwest::Url::parse(&app.url("/")).expect("url");
    let addr = SocketAddr::new(
        url.host_str().and_then(|h| h.parse().ok()).expect("an IP host"),
        url.port().expect("a port"),
    );
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("receive buffer");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let stream = socket.connect(addr).await;
    tokio::spawn(async move {
        let Ok(mut stream) = stream else { return };
        let burst = b"GET /v1/openapi.json HTTP/1.1\r\nHost: sigvault\r\n\r\n".repeat(400);
        // Blocks once the server stops reading; fails once the server closes.
        let _ = stream.write_all(&burst).await;
        std::future::pending::<()>().await;
    })
}

/// A ping from [`OTHER`], given `within` to be answered (a liveness bound: without the
/// limits under test it would wait forever).
async fn ping_from_other(app: &TestApp, within: Duration) -> Result<StatusCode, reqwest::Error> {
    let client = reqwest::Client::builder()
        .local_address(OTHER)
        .timeout(within)
        .build()
        .expect("client");
    Ok(client.get(app.url("/v1/sys/ping")).send().await?.status())
}

/// Starts an app with `limits`, opens `readers` connections from [`SLOW`] that never read,
/// and asks for a ping from [`OTHER`], which must be answered within 30 s (a bound for a
/// loaded CI machine: without the limits under test the stalled connections hold their
/// slots for good, as no read timeout runs while a response is being written).
async fn ping_past_slow_readers(limits: Limits, readers: usize, what: &str) {
    let app = spawn_app_in(AppHome {
        limits,
        ..AppHome::new()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..readers {
        held.push(slow_reader(&app, SLOW).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let answered = ping_from_other(&app, Duration::from_secs(30)).await;

    assert_eq!(answered.map_err(|e| e.to_string()), Ok(StatusCode::OK), "{what}");
    for task in held {
        task.abort();
    }
}

// On worker threads, as the server runs (on one thread shared with the eight writers of
// megabytes, the stalled connections' timers fire late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_lose_their_slots_after_the_write_timeout() {
    let limits = Limits {
        max_connections: 8,
        max_connections_per_address: 8,
        write_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    ping_past_slow_readers(limits, 8, "every slot was held by a client that never reads").await;
}

#[tokio::test]
async fn one_address_cannot_hold_every_slot() {
    let limits = Limits {
        max_connections: 16,
        max_connections_per_address: 4,
        write_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    ping_past_slow_readers(limits, 20, "20 connections from one address held all 16 slots").await;
}
