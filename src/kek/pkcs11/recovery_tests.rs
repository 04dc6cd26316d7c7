//! The provider through HSM failures on a real SoftHSM2 token: it reopens its sessions and
//! logs in again after a token reset, refuses to offer a refused PIN twice, and gives up on a
//! call the module does not answer within `call_timeout` without losing its pool. (Faults
//! SoftHSM2 cannot make in-process — a removed device, a hang inside the module — are
//! injected by `testing/pkcs11-fault` in the black-box tests, `tests/api/hsm_faults.rs`.)

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::testing::{fresh_token, log_the_token_out, take_the_token_away};
use super::{Pkcs11Error, Pkcs11Kek};
use crate::envelope::Dek;
use crate::kek::contract_tests::IDENTITY;
use crate::kek::{KekError, KekProvider};

/// The provider's own error inside an unavailable [`KekError`].
fn cause(err: &KekError) -> &Pkcs11Error {
    match err {
        KekError::Unavailable(source) => source.downcast_ref::<Pkcs11Error>().unwrap(),
        other => panic!("not unavailable: {other:?}"),
    }
}

/// Liveness bound of the waits below: far above anything they should take.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_provider_logs_in_again_by_itself_after_the_token_was_logged_out() {
    let settings = fresh_token("relogin");
    let kek = Pkcs11Kek::open(settings.clone()).await.unwrap();
    let dek = Dek::generate().unwrap();
    let wrapped = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();

    log_the_token_out(&settings);
    let err = kek
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, KekError::Unavailable(_)),
        "the call that meets the reset: {err:?}"
    );

    // The very next call reopens a session and logs in again: no restart, no waiting.
    let back = kek
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
    // Every pooled session was replaced, not only the one that failed.
    for _ in 0..4 {
        kek.self_test().await.unwrap();
    }
}

#[tokio::test]
async fn a_pin_the_token_refuses_when_logging_in_again_is_never_offered_again() {
    let settings = fresh_token("refused");
    let kek = Pkcs11Kek::open(settings.clone()).await.unwrap();
    take_the_token_away(&settings);

    let first = kek.self_test().await.err().unwrap();
    assert!(first.is_unavailable(), "{first:?}");
    let err = kek.self_test().await.err().unwrap();
    match cause(&err) {
        Pkcs11Error::Reopen { source, .. } => {
            assert!(matches!(**source, Pkcs11Error::PinIncorrect { .. }), "{source:?}")
        }
        other => panic!("the login after the reset is refused: {other:?}"),
    }
    let err = kek.self_test().await.err().unwrap();
    assert!(
        matches!(cause(&err), Pkcs11Error::LoginRefused { .. }),
        "not offered again: {err:?}"
    );
}

#[tokio::test]
async fn a_call_the_module_does_not_answer_in_time_is_unavailable_and_the_pool_serves_on() {
    let mut settings = fresh_token("timeout");
    settings.sessions = 1;
    settings.call_timeout = Duration::from_millis(300);
    let kek = Pkcs11Kek::open(settings).await.unwrap();

    // Two calls that stay inside the "module" until released, as a hung C call does.
    let (release_first, first_waits) = mpsc::channel::<()>();
    let started = Instant::now();
    let err = kek
        .with_session(move |_| {
            let _ = first_waits.recv();
            Ok(())
        })
        .await
        .err()
        .unwrap();
    assert!(matches!(cause(&err), Pkcs11Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < PATIENCE, "given up on after the timeout");

    // The hung call gave its session permit back: a fresh session serves the next call.
    kek.self_test().await.unwrap();

    let (release_second, second_waits) = mpsc::channel::<()>();
    let err = kek
        .with_session(move |_| {
            let _ = second_waits.recv();
            Ok(())
        })
        .await
        .err()
        .unwrap();
    assert!(matches!(cause(&err), Pkcs11Error::Timeout { .. }), "{err:?}");
    // Two calls now hang on a pool of one: the second kept its permit (no more threads are
    // left waiting on the module than twice the pool), so this call finds no session.
    let err = kek.self_test().await.err().unwrap();
    assert!(
        matches!(cause(&err), Pkcs11Error::Timeout { .. } | Pkcs11Error::Down { .. }),
        "{err:?}"
    );

    release_first.send(()).unwrap();
    release_second.send(()).unwrap();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match kek.self_test().await {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_unavailable(), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the pool did not serve again once the hung calls returned: {e:?}"),
        }
    }
}
