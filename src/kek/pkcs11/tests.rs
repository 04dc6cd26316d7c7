//! The PKCS#11 provider on a real SoftHSM2 token: the provider contract, KEK versions, and
//! what only this provider has (PIN and token errors, the KEK's attributes).

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType};

use super::objects::find_kek_objects;
use super::testing::{add_kek_version, fresh_token, log_the_token_out, pin};
use super::token::{context, find_token};
use super::{Pkcs11Error, Pkcs11Kek};
use crate::envelope::{Dek, RecordIdentity};
use crate::kek::contract_tests::{KekFixture, kek_contract_tests};
use crate::kek::{KekError, KekProvider, Keyring};

async fn fixture() -> KekFixture {
    let settings = fresh_token("contract");
    let provider: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(settings.clone()).await.unwrap());
    let other: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(fresh_token("other")).await.unwrap());
    KekFixture {
        provider,
        other,
        make_unavailable: Box::new(move || log_the_token_out(&settings)),
    }
}

kek_contract_tests!(pkcs11_contract, fixture);

/// The provider-specific error a `KekError::Config` carries.
fn config_cause(err: &KekError) -> &Pkcs11Error {
    match err {
        KekError::Config(source) => source.downcast_ref::<Pkcs11Error>().unwrap(),
        other => panic!("not a configuration error: {other:?}"),
    }
}

#[tokio::test]
async fn a_new_token_gets_a_kek_version_1_and_a_40_byte_wrap() {
    let kek = Pkcs11Kek::open(fresh_token("wrap")).await.unwrap();
    let id = kek.current_kek_id();
    assert!(id.starts_with("pkcs11:") && id.ends_with(":1"), "{id}");
    let dek = Dek::generate().unwrap();
    let wrapped = kek.wrap_dek(&dek).await.unwrap();
    assert_eq!(wrapped.bytes.len(), 40, "RFC 5649 wrap of 32 bytes is 40 bytes");
    assert_ne!(&wrapped.bytes[..32], &dek.expose_secret()[..]);
}

#[tokio::test]
async fn reopening_a_token_finds_the_same_kek() {
    let settings = fresh_token("reopen");
    let mut again = settings.clone();
    again.sessions = 1;
    let first = Pkcs11Kek::open(settings).await.unwrap();
    let dek = Dek::generate().unwrap();
    let wrapped = first.wrap_dek(&dek).await.unwrap();
    drop(first);
    let second = Pkcs11Kek::open(again).await.unwrap();
    assert_eq!(second.kek_ids(), vec![wrapped.kek_id.clone()]);
    let back = second.unwrap_dek(&wrapped.kek_id, &wrapped.bytes).await.unwrap();
    assert_eq!(back.expose_secret(), dek.expose_secret());
}

#[tokio::test]
async fn a_record_sealed_under_kek_version_1_opens_after_version_2_becomes_current() {
    let settings = fresh_token("versions");
    let identity = RecordIdentity {
        kind: "test-record",
        tenant: "default",
        id: "one",
        version: 1,
    };
    let v1 = Keyring::new(Arc::new(Pkcs11Kek::open(settings.clone()).await.unwrap()));
    let old = v1.seal(&identity, b"sealed under version 1").await.unwrap();
    assert!(old.kek_id.ends_with(":1"), "{}", old.kek_id);
    drop(v1);

    add_kek_version(&settings, 2);
    let provider = Pkcs11Kek::open(settings).await.unwrap();
    assert!(provider.current_kek_id().ends_with(":2"));
    assert_eq!(provider.kek_ids().len(), 2);
    let keyring = Keyring::new(Arc::new(provider));
    let new = keyring.seal(&identity, b"sealed under version 2").await.unwrap();
    assert!(new.kek_id.ends_with(":2"), "{}", new.kek_id);

    assert_eq!(
        keyring.open(&identity, &old).await.unwrap().expose_secret(),
        b"sealed under version 1"
    );
    assert_eq!(
        keyring.open(&identity, &new).await.unwrap().expose_secret(),
        b"sealed under version 2"
    );
}

#[tokio::test]
async fn a_wrong_pin_is_a_configuration_error_named_as_such() {
    let mut settings = fresh_token("pin");
    settings.pin = pin("not-the-pin");
    let err = Pkcs11Kek::open(settings).await.err().unwrap();
    assert!(
        matches!(config_cause(&err), Pkcs11Error::PinIncorrect { .. }),
        "{err:?}"
    );
    assert!(config_cause(&err).to_string().contains("PIN is incorrect"));
    assert!(
        err.is_unavailable(),
        "a misconfigured HSM answers 503, not a data error"
    );
}

#[tokio::test]
async fn a_missing_token_is_named_by_its_label() {
    let mut settings = fresh_token("missing");
    settings.token_label = "no-such-token".into();
    let err = Pkcs11Kek::open(settings).await.err().unwrap();
    assert_eq!(
        config_cause(&err).to_string(),
        "no initialised token labelled 'no-such-token' in the PKCS#11 module"
    );
}

#[tokio::test]
async fn the_kek_is_sensitive_and_cannot_be_extracted() {
    let settings = fresh_token("attrs");
    let ctx = context(&settings.module).unwrap();
    let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
    let _kek = Pkcs11Kek::open(settings).await.unwrap();
    let session = ctx.open_ro_session(slot).unwrap();
    let keks = find_kek_objects(&session).unwrap();
    let handle = *keks.get(&1).unwrap();
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Encrypt,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Sensitive(true)));
    assert!(attrs.contains(&Attribute::Extractable(false)));
    assert!(attrs.contains(&Attribute::Encrypt(false)));
    assert!(
        !attrs.iter().any(|a| matches!(a, Attribute::Value(_))),
        "the KEK value must not be readable"
    );
}
