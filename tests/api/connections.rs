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

/// A connection from `from` that sends `request` (nothing when empty) and then neither
/// sends nor closes.
async fn idle_connection(app: &TestApp, from: IpAddr, request: &[u8]) -> Option<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind");
    let mut stream = socket.connect(app.addr).await.ok()?;
    if !request.is_empty() {
        stream.write_all(request).await.ok()?;
    }
    Some(stream)
}

/// Clients that connect and never send, or send one request and go quiet, hold their slots
/// only until `limits.idle_timeout`: with every slot held that way, another client's ping is
/// still answered (with a 10-minute idle timeout it would wait for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_holding_every_slot_are_closed_after_the_idle_timeout() {
    let app = spawn_app_in(AppHome {
        limits: Limits {
            max_connections: 16,
            max_connections_per_address: 16,
            idle_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
        ..AppHome::new()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..16 {
        let request: &[u8] = if i % 2 == 0 {
            b""
        } else {
            b"GET /v1/sys/ping HTTP/1.1\r\nHost: sigvault\r\n\r\n"
        };
        held.push(idle_connection(&app, SLOW, request).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let answered = ping_from_other(&app, Duration::from_secs(30)).await;

    assert_eq!(answered.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    drop(held);
}

/// The issue's case: 64 connections from one address that pipeline and never read, with
/// `max_connections = 64` and the per-address cap that follows it (an eighth): another
/// client's ping is answered within the write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_slow_readers_from_one_address_leave_another_client_answered_within_the_write_timeout() {
    let limits = Limits {
        max_connections: 64,
        max_connections_per_address: 8,
        write_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let app = spawn_app_in(AppHome {
        limits,
        ..AppHome::new()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(slow_reader(&app, SLOW).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let answered = ping_from_other(&app, Duration::from_secs(5)).await;

    assert_eq!(answered.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    for task in held {
        task.abort();
    }
}

/// 4 000 idle connections, from eight addresses (500 each, within the per-address cap) with
/// the default limits: the vault still answers a ping from a ninth address at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_idle_connections_leave_the_vault_answering() {
    let app = spawn_app_in(AppHome::new()).await;
    let mut held = Vec::with_capacity(4000);
    for host in 10..18u8 {
        for _ in 0..500 {
            held.push(idle_connection(&app, IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)), b"").await);
        }
    }
    assert_eq!(
        held.iter().filter(|c| c.is_some()).count(),
        4000,
        "every connection was accepted by the kernel"
    );

    let answered = ping_from_other(&app, Duration::from_secs(10)).await;

    assert_eq!(answered.map_err(|e| e.to_string()), Ok(StatusCode::OK));
    drop(held);
}

/// What a client may send ahead of the request being served is bounded by
/// `limits.max_pipelined_bytes` (it also bounds a request header): a header beyond it is
/// refused with 431 and the connection closed, one within it is served.
#[tokio::test]
async fn a_request_header_beyond_max_pipelined_bytes_is_refused() {
    let app = spawn_app_in(AppHome {
        limits: Limits {
            max_pipelined_bytes: 16 * 1024,
            ..Limits::default()
        },
        ..AppHome::new()
    })
    .await;
    let client = reqwest::Client::new();
    let ping = |filler: usize| {
        client
            .get(app.url("/v1/sys/ping"))
            .header("x-filler", "a".repeat(filler))
            .send()
    };
    assert_eq!(ping(8 * 1024).await.map(|r| r.status()).ok(), Some(StatusCode::OK));
    assert_eq!(
        ping(20 * 1024).await.map(|r| r.status()).ok(),
        Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    );
}

/// Sends `request` on `stream` and reads one response; `None` when the connection broke
/// before a whole response came back (a write or read error, or EOF).
fn exchange(stream: &mut std::net::TcpStream, request: &[u8]) -> Option<(u16, bool)> {
    use std::io::{Read, Write};
    stream.write_all(request).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((status, head.contains("connection: close")))
}

/// A request refused before its body is read (a service signing with another's key; the
/// body has not even been sent yet) is answered with `Connection: close`, so a keep-alive
/// client opens a new connection instead of writing its next request into one the server
/// drops (a broken pipe in place of an answer); a request whose body was read keeps its
/// connection.
#[tokio::test]
async fn a_refusal_before_the_body_is_read_says_connection_close() {
    let app = spawn_app_in(AppHome::new()).await;
    let r = app
        .post(
            "/v1/keys",
            serde_json::json!({"name": "billing.webhook", "algorithm": "hmac-sha256", "owner": "billing"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let r = app
        .post(
            "/v1/auth/tokens",
            serde_json::json!({"principal": "billing", "groups": ["service"]}),
        )
        .await;
    let owner = r.body["token"].as_str().expect("a token").to_owned();
    let r = app
        .post(
            "/v1/auth/tokens",
            serde_json::json!({"principal": "payments", "groups": ["service"]}),
        )
        .await;
    let intruder = r.body["token"].as_str().expect("a token").to_owned();
    let addr = app.addr;
    tokio::task::spawn_blocking(move || {
        let body = r#"{"message":"bQ=="}"#;
        let head = |token: &str| {
            format!(
                "POST /v1/keys/billing.webhook/sign HTTP/1.1\r\nHost: sigvault\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
        };
        // The refusal comes before the body is sent.
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let refused = exchange(&mut stream, head(&intruder).as_bytes());
        assert_eq!(
            refused,
            Some((403, true)),
            "refused unread: status and Connection: close"
        );
        // The owner's sign reads its body: the connection stays open for the next request.
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        let signed = format!("{}{body}", head(&owner));
        assert_eq!(exchange(&mut stream, signed.as_bytes()), Some((200, false)));
        assert_eq!(
            exchange(&mut stream, signed.as_bytes()),
            Some((200, false)),
            "the same connection"
        );
    })
    .await
    .expect("the client runs");
}
