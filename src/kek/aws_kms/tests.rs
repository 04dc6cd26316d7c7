//! The AWS KMS provider against moto's KMS server: the provider contract, the
//! EncryptionContext binding, alias resolution, a KMS that stops answering and comes back,
//! and retries of throttled calls only (through a stand-in that answers KMS errors first).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::AwsKmsKek;
use super::testing::{MotoServer, credentials, provider, settings};
use crate::envelope::{Dek, RecordIdentity};
use crate::kek::contract_tests::{IDENTITY, KekFixture, kek_contract_tests};
use crate::kek::{KekError, KekProvider, Keyring};

async fn fixture() -> KekFixture {
    let server = MotoServer::start();
    let (ours, theirs) = (server.create_key().await, server.create_key().await);
    server
        .client()
        .await
        .create_alias()
        .alias_name("alias/contract")
        .target_key_id(&ours)
        .send()
        .await
        .unwrap();
    // By alias: a rotation moves the alias to a new key.
    let ours: Arc<dyn KekProvider> = Arc::new(provider(&server, "alias/contract").await);
    let twin: Arc<dyn KekProvider> = Arc::new(provider(&server, "alias/contract").await);
    let theirs: Arc<dyn KekProvider> = Arc::new(provider(&server, &theirs).await);
    KekFixture {
        provider: ours,
        twin,
        other: theirs,
        make_unavailable: Box::new(move || drop(server)),
    }
}

kek_contract_tests!(aws_kms_contract, fixture);

#[tokio::test]
async fn a_wrap_bound_to_one_record_does_not_unwrap_for_another() {
    let server = MotoServer::start();
    let kek = provider(&server, &server.create_key().await).await;
    let dek = Dek::generate().unwrap();
    let wrapped = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();
    let back = kek
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
    for other in [
        RecordIdentity {
            kind: "pepper",
            ..IDENTITY
        },
        RecordIdentity {
            tenant: "other",
            ..IDENTITY
        },
        RecordIdentity {
            id: "record-2",
            ..IDENTITY
        },
        RecordIdentity { version: 4, ..IDENTITY },
    ] {
        let err = kek
            .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &other)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, KekError::Rejected), "{other:?}: {err:?}");
    }
    // The same through the keyring: a sealed record moved to another identity is refused by
    // KMS before the envelope is even tried.
    let keyring = Keyring::new(Arc::new(kek));
    let sealed = keyring.seal(&IDENTITY, b"webhook secret").await.unwrap();
    let moved = RecordIdentity {
        id: "record-9",
        ..IDENTITY
    };
    assert!(matches!(keyring.open(&moved, &sealed).await, Err(KekError::Rejected)));
    assert_eq!(
        keyring.open(&IDENTITY, &sealed).await.unwrap().expose_secret(),
        b"webhook secret"
    );
}

#[tokio::test]
async fn an_alias_is_resolved_to_its_key_and_the_kek_id_names_the_arn() {
    let server = MotoServer::start();
    let arn = server.create_key().await;
    let client = server.client().await;
    client
        .create_alias()
        .alias_name("alias/sigvault-test")
        .target_key_id(&arn)
        .send()
        .await
        .unwrap();
    let by_alias = provider(&server, "alias/sigvault-test").await;
    let by_arn = provider(&server, &arn).await;
    assert_eq!(by_alias.arn(), arn);
    assert_eq!(by_alias.current_kek_id(), format!("aws-kms:{arn}"));
    assert_eq!(by_alias.kek_ids(), vec![by_alias.current_kek_id()]);
    let wrapped = by_alias.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    by_arn
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();

    // Pointing the alias at another key does not move a provider already open: its records
    // name the ARN they were wrapped under.
    let next = server.create_key().await;
    client
        .update_alias()
        .alias_name("alias/sigvault-test")
        .target_key_id(&next)
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_alias
            .wrap_dek(&Dek::generate().unwrap(), &IDENTITY)
            .await
            .unwrap()
            .kek_id,
        wrapped.kek_id
    );
    let reopened = provider(&server, "alias/sigvault-test").await;
    assert_eq!(reopened.current_kek_id(), format!("aws-kms:{next}"));
}

#[tokio::test]
async fn a_key_that_cannot_wrap_is_refused_when_the_provider_opens() {
    let server = MotoServer::start();
    let client = server.client().await;
    let disabled = server.create_key().await;
    // moto's DisableKey takes the key id, not the ARN.
    let key_id = disabled.rsplit('/').next().unwrap();
    client.disable_key().key_id(key_id).send().await.unwrap();
    let signing = client
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .send()
        .await
        .unwrap();
    let signing = signing.key_metadata().unwrap().arn().unwrap().to_owned();
    for (key, expect) in [
        (disabled.as_str(), "Disabled"),
        (signing.as_str(), "ENCRYPT_DECRYPT"),
        ("alias/none", "NotFoundException"),
    ] {
        let err = AwsKmsKek::open_with(settings(&server.url(), key), Some(credentials()))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("KEK") || err.is_unavailable(), "{err}");
        let text = format!("{:?}", err);
        assert!(text.contains(expect), "{key}: {text}");
    }
}

#[tokio::test]
async fn a_paused_kms_is_cut_off_at_the_call_timeout_and_recovers_without_a_reopen() {
    let server = MotoServer::start();
    let mut s = settings(&server.url(), &server.create_key().await);
    s.call_timeout = Duration::from_millis(500);
    let kek = AwsKmsKek::open_with(s, Some(credentials())).await.unwrap();
    let wrapped = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();

    server.pause();
    let started = Instant::now();
    let err = kek
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    let waited = started.elapsed();
    assert!(matches!(err, KekError::Unavailable(_)), "{err:?}");
    // The bound is the call timeout (500 ms); the slack is for a loaded test machine, and is
    // far below the SDK's own defaults, which would leave the call hanging.
    assert!(
        waited < Duration::from_secs(5),
        "a paused KMS held the call for {waited:?}"
    );
    let err = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.err().unwrap();
    assert!(matches!(err, KekError::Unavailable(_)), "{err:?}");

    server.resume();
    let back = kek.unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY).await;
    assert!(
        back.is_ok(),
        "the same provider works again once KMS answers: {:?}",
        back.err()
    );
}

/// A KMS stand-in in front of `upstream`: answers the first `refusals` requests with the KMS
/// error `code` (HTTP 400, as KMS does), and forwards the rest. Counts every request.
async fn refusing_proxy(
    upstream: std::net::SocketAddr,
    code: &'static str,
    refusals: usize,
) -> (String, Arc<AtomicUsize>) {
    refusing_proxy_from(upstream, code, 0, refusals).await
}

/// [`refusing_proxy`] that forwards the first `skip` requests before it refuses.
async fn refusing_proxy_from(
    upstream: std::net::SocketAddr,
    code: &'static str,
    skip: usize,
    refusals: usize,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // Read one whole request: headers, then Content-Length bytes of body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body_start = loop {
                    let n = client.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < body_start + length {
                    let n = client.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let index = counter.fetch_add(1, Ordering::SeqCst);
                if index >= skip && index - skip < refusals {
                    let body = format!(r#"{{"__type":"{code}","message":"refused by the test stand-in"}}"#);
                    let reply = format!(
                        "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {code}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = client.write_all(reply.as_bytes()).await;
                    return;
                }
                let mut server = TcpStream::connect(upstream).await.unwrap();
                server.write_all(&buf).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn a_throttled_call_is_retried_and_no_other_failure_is() {
    let server = MotoServer::start();
    let key = server.create_key().await;
    let kek = provider(&server, &key).await;
    let wrapped = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    // Two throttled answers, then KMS: the call succeeds on its third attempt.
    let (url, seen) = refusing_proxy(server.addr, "ThrottlingException", 0).await;
    let kek = AwsKmsKek::open_with(settings(&url, &key), Some(credentials()))
        .await
        .unwrap();
    let before = seen.load(Ordering::SeqCst);
    let (url2, seen2) = refusing_proxy(server.addr, "ThrottlingException", 2).await;
    let throttled = AwsKmsKek::open_with(settings(&url2, &key), Some(credentials())).await;
    // DescribeKey at open was throttled twice and then answered; ListResourceTags (the
    // keys before it) followed.
    let throttled = throttled.unwrap();
    assert_eq!(seen2.load(Ordering::SeqCst), 4, "two refusals, the answer, the tags");
    throttled
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();
    assert_eq!(seen2.load(Ordering::SeqCst), 5);
    kek.unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), before + 1);

    // Throttled for good: given up after five attempts, as unavailable.
    let (url_always, seen_always) = refusing_proxy(server.addr, "ThrottlingException", usize::MAX).await;
    let err = AwsKmsKek::open_with(settings(&url_always, &key), Some(credentials()))
        .await
        .err()
        .unwrap();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(seen_always.load(Ordering::SeqCst), 5, "five attempts, then given up");

    // Any other failure is reported at once: one attempt.
    for code in [
        "KMSInternalException",
        "DependencyTimeoutException",
        "KMSInvalidStateException",
    ] {
        let (url, seen) = refusing_proxy(server.addr, code, usize::MAX).await;
        let err = AwsKmsKek::open_with(settings(&url, &key), Some(credentials()))
            .await
            .err()
            .unwrap();
        assert!(err.is_unavailable(), "{code}: {err:?}");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "{code} is not retried");
    }
}

#[tokio::test]
async fn a_decrypt_iam_denies_is_unavailable_and_one_of_a_key_out_of_reach_is_rejected() {
    let server = MotoServer::start();
    let key = server.create_key().await;
    let wrapped = provider(&server, &key)
        .await
        .wrap_dek(&Dek::generate().unwrap(), &IDENTITY)
        .await
        .unwrap();
    // IAM lets the open through (DescribeKey, ListResourceTags) and denies everything after:
    // the code KMS also gives for a ciphertext of a key out of reach, but the provider's own
    // key fails too, so the record is not condemned.
    let (url, _) = refusing_proxy_from(server.addr, "AccessDeniedException", 2, usize::MAX).await;
    let denied = AwsKmsKek::open_with(settings(&url, &key), Some(credentials()))
        .await
        .unwrap();
    let err = denied
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, KekError::Unavailable(_)), "{err:?}");

    // A ciphertext of a key this caller cannot use, named as ours: denied while our own key
    // works, so rejected.
    let elsewhere = MotoServer::start();
    let foreign = provider(&elsewhere, &elsewhere.create_key().await)
        .await
        .wrap_dek(&Dek::generate().unwrap(), &IDENTITY)
        .await
        .unwrap();
    let ours = provider(&server, &key).await;
    let err = ours
        .unwrap_dek(&wrapped.kek_id, &foreign.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, KekError::Rejected), "{err:?}");
}
