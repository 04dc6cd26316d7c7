//! The one test body every [`KekProvider`] must pass, run by each provider's own tests with
//! [`kek_contract_tests!`] and a fixture of its kind.
//!
//! What it pins, so every provider agrees on it above the `kek` module: a DEK comes back from
//! wrap and unwrap unchanged and is not in the wrap; any change to a wrap is
//! [`KekError::Rejected`], never a different DEK; a wrap made by another KEK of the same kind
//! does not open, whether named by its own `kek_id` (unknown) or relabelled (rejected); a
//! `kek_id` the provider does not hold is [`KekError::UnknownKek`]; and a provider whose HSM
//! or KMS stops answering reports [`KekError::Unavailable`] — not a panic, and never a
//! rejection, which would condemn good records. Witness records read back as last written,
//! one per name, and a provider that stops answering never reads one as missing (that is
//! what a removed record looks like).

use std::sync::Arc;

use super::{KekError, KekProvider};
use crate::envelope::{Dek, RecordIdentity};

/// The record every contract check wraps for.
pub(crate) const IDENTITY: RecordIdentity<'static> = RecordIdentity {
    kind: "contract-test",
    tenant: "default",
    id: "record-1",
    version: 3,
};

/// What a provider's harness hands the contract: a provider on a KEK of its own, a second
/// provider of the same kind on another KEK, and a way to make the first one's HSM or KMS
/// stop answering for good (a provider may recover from a passing fault by itself; that is
/// each provider's own test).
pub(crate) struct KekFixture {
    pub provider: Arc<dyn KekProvider>,
    /// A second provider on the same KEK, as another node opens it.
    pub twin: Arc<dyn KekProvider>,
    pub other: Arc<dyn KekProvider>,
    pub(crate) make_unavailable: Box<dyn FnOnce() + Send>,
}

/// Runs every contract check as its own `#[tokio::test]` in a module named `$backend`;
/// `$fixture` names an `async fn() -> KekFixture`, resolved in the invoking module.
macro_rules! kek_contract_tests {
    ($backend:ident, $fixture:path) => {
        $crate::kek::contract_tests::kek_contract_tests!(@each $backend, $fixture,
            a_data_key_survives_wrap_and_unwrap_and_is_not_in_the_wrap,
            a_changed_or_shortened_wrap_is_rejected,
            a_wrap_made_by_another_kek_does_not_open,
            a_kek_id_the_provider_does_not_hold_is_unknown,
            a_provider_that_stops_answering_is_unavailable_not_rejected,
            a_witness_reads_back_what_was_last_written,
            witnesses_of_two_names_are_kept_apart,
            a_witness_of_a_provider_that_stops_answering_is_unavailable_not_missing,
            a_rotation_makes_a_new_current_kek_that_another_node_adopts_on_refresh,
            only_a_kek_that_is_not_current_is_retired_and_its_wraps_then_name_an_unknown_kek,
        );
    };
    (@each $backend:ident, $fixture:path, $($check:ident),+ $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    $crate::kek::contract_tests::$check($fixture().await).await;
                }
            )+
        }
    };
}
pub(crate) use kek_contract_tests;

pub(crate) async fn a_data_key_survives_wrap_and_unwrap_and_is_not_in_the_wrap(f: KekFixture) {
    let kek = f.provider;
    kek.self_test().await.unwrap();
    let dek = Dek::generate().unwrap();
    let wrapped = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();
    assert_eq!(wrapped.kek_id, kek.current_kek_id());
    assert!(kek.holds(&wrapped.kek_id));
    assert!(kek.kek_ids().contains(&wrapped.kek_id));
    let secret = dek.expose_secret().as_slice();
    assert!(
        !wrapped.bytes.windows(8).any(|w| secret.windows(8).any(|s| s == w)),
        "eight bytes of the DEK appear in its wrap"
    );
    let back = kek
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
    let again = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();
    let back = kek.unwrap_dek(&again.kek_id, &again.bytes, &IDENTITY).await.unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
}

pub(crate) async fn a_changed_or_shortened_wrap_is_rejected(f: KekFixture) {
    let kek = f.provider;
    let wrapped = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    let last = wrapped.bytes.len() - 1;
    for i in [0, 7, last / 2, last] {
        let mut bad = wrapped.bytes.clone();
        bad[i] ^= 0x01;
        let err = kek.unwrap_dek(&wrapped.kek_id, &bad, &IDENTITY).await.err().unwrap();
        assert!(matches!(err, KekError::Rejected), "byte {i} changed: {err:?}");
    }
    for len in [0, 1, last / 2, last] {
        let err = kek
            .unwrap_dek(&wrapped.kek_id, &wrapped.bytes[..len], &IDENTITY)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, KekError::Rejected), "cut to {len} bytes: {err:?}");
    }
    let mut longer = wrapped.bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    let err = kek.unwrap_dek(&wrapped.kek_id, &longer, &IDENTITY).await.err().unwrap();
    assert!(matches!(err, KekError::Rejected), "eight bytes appended: {err:?}");
}

pub(crate) async fn a_wrap_made_by_another_kek_does_not_open(f: KekFixture) {
    let wrapped = f.other.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    assert!(
        !f.provider.holds(&wrapped.kek_id),
        "{} is the other KEK's",
        wrapped.kek_id
    );
    let err = f
        .provider
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, KekError::UnknownKek(_)), "under its own kek_id: {err:?}");
    let relabelled = f.provider.current_kek_id();
    let err = f
        .provider
        .unwrap_dek(&relabelled, &wrapped.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, KekError::Rejected), "relabelled as ours: {err:?}");
}

pub(crate) async fn a_kek_id_the_provider_does_not_hold_is_unknown(f: KekFixture) {
    let kek = f.provider;
    let wrapped = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    let current = kek.current_kek_id();
    for id in [
        String::new(),
        "x".into(),
        format!("{current}0"),
        format!("{current}:1"),
        format!("x{current}"),
    ] {
        assert!(!kek.holds(&id), "{id:?}");
        let err = kek.unwrap_dek(&id, &wrapped.bytes, &IDENTITY).await.err().unwrap();
        assert!(
            matches!(err, KekError::UnknownKek(ref named) if *named == id),
            "{id:?}: {err:?}"
        );
    }
}

pub(crate) async fn a_provider_that_stops_answering_is_unavailable_not_rejected(f: KekFixture) {
    let kek = f.provider;
    let wrapped = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    (f.make_unavailable)();
    let err = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.err().unwrap();
    assert!(matches!(err, KekError::Unavailable(_)), "wrap: {err:?}");
    let err = kek
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, KekError::Unavailable(_)),
        "unwrap of a good wrap: {err:?}"
    );
    assert!(err.is_unavailable());
    let err = kek.self_test().await.err().unwrap();
    assert!(err.is_unavailable(), "self-test: {err:?}");
}

pub(crate) async fn a_witness_reads_back_what_was_last_written(f: KekFixture) {
    let kek = f.provider;
    assert_eq!(kek.witness_read("w-head").await.unwrap(), None, "never written");
    let first: Vec<u8> = (0..41).collect();
    kek.witness_write("w-head", &first).await.unwrap();
    assert_eq!(kek.witness_read("w-head").await.unwrap(), Some(first.clone()));
    let second = vec![0xA5; 17];
    kek.witness_write("w-head", &second).await.unwrap();
    assert_eq!(
        kek.witness_read("w-head").await.unwrap(),
        Some(second.clone()),
        "a shorter value replaces the longer one whole"
    );
    kek.witness_write("w-head", &second).await.unwrap();
    assert_eq!(kek.witness_read("w-head").await.unwrap(), Some(second), "rewritten");
}

pub(crate) async fn witnesses_of_two_names_are_kept_apart(f: KekFixture) {
    let kek = f.provider;
    kek.witness_write("w-node-a", b"a1").await.unwrap();
    kek.witness_write("w-node-b", b"b1").await.unwrap();
    kek.witness_write("w-node-a", b"a2").await.unwrap();
    assert_eq!(kek.witness_read("w-node-a").await.unwrap(), Some(b"a2".to_vec()));
    assert_eq!(kek.witness_read("w-node-b").await.unwrap(), Some(b"b1".to_vec()));
    assert_eq!(
        kek.witness_read("w-node").await.unwrap(),
        None,
        "a prefix names no record"
    );
}

pub(crate) async fn a_witness_of_a_provider_that_stops_answering_is_unavailable_not_missing(f: KekFixture) {
    let kek = f.provider;
    kek.witness_write("w-kept", b"head").await.unwrap();
    (f.make_unavailable)();
    for name in ["w-kept", "w-never-written"] {
        let err = kek.witness_read(name).await.err();
        assert!(
            matches!(err, Some(KekError::Unavailable(_))),
            "read of {name}: {err:?} (None would pass for a removed witness)"
        );
    }
    let err = kek.witness_write("w-kept", b"next").await.err();
    assert!(matches!(err, Some(KekError::Unavailable(_))), "write: {err:?}");
}

pub(crate) async fn a_rotation_makes_a_new_current_kek_that_another_node_adopts_on_refresh(f: KekFixture) {
    let (kek, twin) = (f.provider, f.twin);
    let dek = Dek::generate().unwrap();
    let before = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();
    let old_id = kek.current_kek_id();

    let new_id = kek.rotate().await.unwrap();
    assert_ne!(new_id, old_id);
    assert_eq!(kek.current_kek_id(), new_id);
    assert_eq!(kek.kek_ids(), vec![old_id.clone(), new_id.clone()], "oldest first");
    let after = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();
    assert_eq!(after.kek_id, new_id, "new wraps are under the new KEK");
    for wrapped in [&before, &after] {
        let back = kek
            .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
            .await
            .unwrap();
        assert_eq!(back.expose_secret(), dek.expose_secret(), "{}", wrapped.kek_id);
    }

    // The other node still wraps under the old KEK and does not know the new one until it
    // reads the KEKs again.
    assert_eq!(twin.current_kek_id(), old_id);
    let err = twin
        .unwrap_dek(&after.kek_id, &after.bytes, &IDENTITY)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, KekError::UnknownKek(_)), "{err:?}");
    twin.refresh().await.unwrap();
    assert_eq!(twin.current_kek_id(), new_id);
    let back = twin.unwrap_dek(&after.kek_id, &after.bytes, &IDENTITY).await.unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
    let back = twin.unwrap_dek(&before.kek_id, &before.bytes, &IDENTITY).await.unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
    assert_eq!(twin.wrap_dek(&dek, &IDENTITY).await.unwrap().kek_id, new_id);

    // A second rotation keeps both earlier KEKs.
    let third = kek.rotate().await.unwrap();
    assert_eq!(kek.kek_ids(), vec![old_id, new_id, third]);
    kek.unwrap_dek(&before.kek_id, &before.bytes, &IDENTITY).await.unwrap();
}

pub(crate) async fn only_a_kek_that_is_not_current_is_retired_and_its_wraps_then_name_an_unknown_kek(f: KekFixture) {
    let (kek, twin) = (f.provider, f.twin);
    let old = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    let err = kek.retire(&old.kek_id).await.err().unwrap();
    assert!(matches!(err, KekError::Refused(_)), "the current KEK: {err:?}");
    let err = kek.retire("nobody:1").await.err().unwrap();
    assert!(matches!(err, KekError::UnknownKek(_)), "{err:?}");

    let new_id = kek.rotate().await.unwrap();
    let new = kek.wrap_dek(&Dek::generate().unwrap(), &IDENTITY).await.unwrap();
    kek.retire(&old.kek_id).await.unwrap();
    assert_eq!(kek.kek_ids(), vec![new_id.clone()]);
    assert!(!kek.holds(&old.kek_id));
    let err = kek.unwrap_dek(&old.kek_id, &old.bytes, &IDENTITY).await.err().unwrap();
    assert!(matches!(err, KekError::UnknownKek(_)), "{err:?}");
    kek.unwrap_dek(&new.kek_id, &new.bytes, &IDENTITY).await.unwrap();

    // Another node forgets it too once it reads the KEKs again.
    twin.refresh().await.unwrap();
    assert_eq!(twin.kek_ids(), vec![new_id]);
    let err = twin.unwrap_dek(&old.kek_id, &old.bytes, &IDENTITY).await.err().unwrap();
    assert!(matches!(err, KekError::UnknownKek(_)), "{err:?}");
}
