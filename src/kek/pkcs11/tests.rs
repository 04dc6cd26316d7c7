//! The PKCS#11 provider on a real SoftHSM2 token: the provider contract, KEK versions, and
//! what only this provider has (PIN and token errors, the KEK's attributes, witness records
//! as token data objects).

use std::sync::Arc;

use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::session::Session;

use super::objects::find_kek_objects;
use super::testing::{add_kek_version, fresh_token, pin, take_the_token_away};
use super::token::{context, find_token};
use super::witness::identity;
use super::{Pkcs11Error, Pkcs11Kek, Pkcs11Settings};
use crate::envelope::{Dek, RecordIdentity};
use crate::kek::contract_tests::{IDENTITY, KekFixture, kek_contract_tests};
use crate::kek::{KekError, KekProvider, Keyring};

async fn fixture() -> KekFixture {
    let settings = fresh_token("contract");
    let provider: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(settings.clone()).await.unwrap());
    let twin: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(settings.clone()).await.unwrap());
    let other: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(fresh_token("other")).await.unwrap());
    KekFixture {
        provider,
        twin,
        other,
        make_unavailable: Box::new(move || take_the_token_away(&settings)),
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
    let wrapped = kek.wrap_dek(&dek, &IDENTITY).await.unwrap();
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
    let wrapped = first.wrap_dek(&dek, &IDENTITY).await.unwrap();
    drop(first);
    let second = Pkcs11Kek::open(again).await.unwrap();
    assert_eq!(second.kek_ids(), vec![wrapped.kek_id.clone()]);
    let back = second
        .unwrap_dek(&wrapped.kek_id, &wrapped.bytes, &IDENTITY)
        .await
        .unwrap();
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

/// The `CKA_VALUE` of a witness object: its generation, then the record.
fn stored_value(generation: u64, record: &[u8]) -> Vec<u8> {
    [&generation.to_be_bytes()[..], record].concat()
}

/// A read-write session on the token of `settings`; it sees private objects while a provider
/// of this process is logged in (the login belongs to the token, not to a session).
fn session_on(settings: &Pkcs11Settings) -> Session {
    let ctx = context(&settings.module).unwrap();
    let slot = find_token(&ctx, &settings.token_label).unwrap().unwrap();
    ctx.open_rw_session(slot).unwrap()
}

#[tokio::test]
async fn a_witness_is_a_private_token_data_object_that_outlives_the_provider() {
    let settings = fresh_token("witness-obj");
    let kek = Pkcs11Kek::open(settings.clone()).await.unwrap();
    kek.witness_write("sigvault-audit-head:n1", b"head one").await.unwrap();
    let session = session_on(&settings);
    let found = session.find_objects(&[Attribute::Class(ObjectClass::DATA)]).unwrap();
    assert_eq!(found.len(), 1, "one data object on the token");
    let attrs = session
        .get_attributes(
            found[0],
            &[
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Label,
                AttributeType::Application,
                AttributeType::Value,
            ],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::Token(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Private(true)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::Label(b"sigvault-audit-head:n1".to_vec())));
    assert!(attrs.contains(&Attribute::Application(b"sigvault".to_vec())));
    assert!(
        attrs.contains(&Attribute::Value(stored_value(1, b"head one"))),
        "generation 1, then the record"
    );
    kek.witness_write("sigvault-audit-head:n1", b"head two").await.unwrap();
    let found = session.find_objects(&[Attribute::Class(ObjectClass::DATA)]).unwrap();
    assert_eq!(found.len(), 1, "a write replaces the object");
    let attrs = session.get_attributes(found[0], &[AttributeType::Value]).unwrap();
    assert_eq!(attrs, vec![Attribute::Value(stored_value(2, b"head two"))]);
    drop(session);
    drop(kek);

    let mut again = settings;
    again.sessions = 1;
    let reopened = Pkcs11Kek::open(again).await.unwrap();
    assert_eq!(
        reopened.witness_read("sigvault-audit-head:n1").await.unwrap(),
        Some(b"head two".to_vec()),
        "a token object survives its sessions"
    );
}

#[tokio::test]
async fn a_public_object_with_a_witness_label_neither_passes_for_the_witness_nor_hides_it() {
    let settings = fresh_token("witness-public");
    let kek = Pkcs11Kek::open(settings.clone()).await.unwrap();
    let name = "sigvault-audit-head:n1";
    // Anyone may create a public token object without the PIN.
    let mut forged: Vec<Attribute> = identity(name)
        .into_iter()
        .map(|a| {
            if let Attribute::Private(_) = a {
                Attribute::Private(false)
            } else {
                a
            }
        })
        .collect();
    forged.push(Attribute::Value(b"forged".to_vec()));
    let session = session_on(&settings);
    session.create_object(&forged).unwrap();

    assert_eq!(kek.witness_read(name).await.unwrap(), None);
    kek.witness_write(name, b"real").await.unwrap();
    assert_eq!(kek.witness_read(name).await.unwrap(), Some(b"real".to_vec()));
    let public = session
        .find_objects(&[Attribute::Class(ObjectClass::DATA), Attribute::Private(false)])
        .unwrap();
    assert_eq!(public.len(), 1, "the public object is left alone");
}

/// Creates a witness object of `name` by hand, as a crash or a second writer leaves one.
fn create_witness_object(session: &Session, name: &str, generation: Option<u64>, value: &[u8]) {
    // Without a generation: a value too short to carry one, made by hand.
    let stored = match generation {
        Some(generation) => stored_value(generation, value),
        None => value.to_vec(),
    };
    let mut template = identity(name);
    template.push(Attribute::Value(stored));
    session.create_object(&template).unwrap();
}

#[tokio::test]
async fn a_write_cut_short_between_two_generations_reads_as_the_newer_one() {
    let settings = fresh_token("witness-crash");
    let kek = Pkcs11Kek::open(settings.clone()).await.unwrap();
    let name = "sigvault-audit-head:n1";
    let session = session_on(&settings);
    create_witness_object(&session, name, Some(2), b"new");
    create_witness_object(&session, name, Some(1), b"old");

    assert_eq!(kek.witness_read(name).await.unwrap(), Some(b"new".to_vec()));
    kek.witness_write(name, b"next").await.unwrap();
    assert_eq!(kek.witness_read(name).await.unwrap(), Some(b"next".to_vec()));
    let left = session.find_objects(&identity(name)).unwrap();
    assert_eq!(left.len(), 1, "the older generations are gone");
    let attrs = session.get_attributes(left[0], &[AttributeType::Value]).unwrap();
    assert_eq!(attrs, vec![Attribute::Value(stored_value(3, b"next"))], "generation 3");
}

#[tokio::test]
async fn two_different_witness_objects_of_one_generation_refuse_a_read_until_a_write_replaces_them() {
    let settings = fresh_token("witness-dup");
    let kek = Pkcs11Kek::open(settings.clone()).await.unwrap();
    let name = "sigvault-audit-head:n1";
    let session = session_on(&settings);
    create_witness_object(&session, name, None, b"one");
    create_witness_object(&session, name, None, b"two");

    let err = kek.witness_read(name).await.err().unwrap();
    let KekError::Unavailable(cause) = &err else {
        panic!("not unavailable: {err:?}");
    };
    assert_eq!(
        cause.to_string(),
        "the token holds 2 different newest witness objects labelled 'sigvault-audit-head:n1'"
    );
    kek.witness_write(name, b"three").await.unwrap();
    assert_eq!(kek.witness_read(name).await.unwrap(), Some(b"three".to_vec()));
    assert_eq!(session.find_objects(&identity(name)).unwrap().len(), 1);
}
