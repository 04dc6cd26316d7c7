//! Opening a sealed record (`envelope::open`, and `kek::Keyring::open` around it), with a
//! fixed test data key: the record's columns come from the database, so every byte is input.
//!
//! Input: a record (format, KEK id, wrapped key, nonce, ciphertext), the identity it is
//! opened for, another identity, and a plaintext. Properties: a record opens only if sealing
//! its plaintext for that identity and nonce gives its ciphertext back (nothing else opens),
//! with the format and nonce length refused first; the keyring refuses an unknown format or
//! KEK before any unwrap and otherwise opens exactly what the envelope opens; a record sealed
//! here opens to its plaintext, and not for another identity or with any byte changed; two
//! identities with the same AAD are the same identity.
#![no_main]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sigvault::envelope::{self, Dek, EnvelopeError, RecordIdentity, SealedRecord};
use sigvault::fuzzing::{envelope_aad, envelope_seal};
use sigvault::kek::{KekError, KekProvider, Keyring, WrappedDek};

const DEK: [u8; 32] = [0x42; 32];
const KEK_ID: &str = "fuzz:1";
/// The one wrapped key the stand-in provider unwraps (to [`DEK`]).
const WRAPPED: [u8; 40] = [0xa6; 40];

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A provider that holds [`KEK_ID`] and unwraps [`WRAPPED`] only: enough to drive the
/// keyring's choice of provider and its order of checks.
struct StandIn;

impl KekProvider for StandIn {
    fn current_kek_id(&self) -> String {
        KEK_ID.to_owned()
    }
    fn kek_ids(&self) -> Vec<String> {
        vec![KEK_ID.to_owned()]
    }
    fn wrap_dek<'a>(
        &'a self,
        _dek: &'a Dek,
        _identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<WrappedDek, KekError>> {
        Box::pin(async { Err(KekError::Rejected) })
    }
    fn unwrap_dek<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        _identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<Dek, KekError>> {
        Box::pin(async move {
            assert_eq!(kek_id, KEK_ID, "the keyring asks only the provider that holds the KEK");
            if wrapped == WRAPPED {
                Ok(Dek::from_slice(&DEK)?)
            } else {
                Err(KekError::Rejected)
            }
        })
    }
    // The stand-in has one KEK and never changes it.
    fn rotate(&self) -> BoxFuture<'_, Result<String, KekError>> {
        Box::pin(async { Err(KekError::Refused("the fuzz stand-in has one KEK".into())) })
    }
    fn refresh(&self) -> BoxFuture<'_, Result<(), KekError>> {
        Box::pin(async { Ok(()) })
    }
    fn retire<'a>(&'a self, kek_id: &'a str) -> BoxFuture<'a, Result<(), KekError>> {
        Box::pin(async move { Err(KekError::UnknownKek(kek_id.to_owned())) })
    }
    fn witness_write<'a>(&'a self, _name: &'a str, _value: &'a [u8]) -> BoxFuture<'a, Result<(), KekError>> {
        Box::pin(async { Ok(()) })
    }
    fn witness_read<'a>(&'a self, _name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KekError>> {
        Box::pin(async { Ok(None) })
    }
}

/// Runs a future that never waits (the stand-in answers at once).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("the keyring waited on a provider that never waits"),
    }
}

#[derive(Arbitrary, Debug)]
struct Identity {
    kind: String,
    tenant: String,
    id: String,
    version: u32,
}

impl Identity {
    fn get(&self) -> RecordIdentity<'_> {
        RecordIdentity {
            kind: &self.kind,
            tenant: &self.tenant,
            id: &self.id,
            version: self.version,
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    format: u16,
    /// Use [`KEK_ID`] and [`WRAPPED`] rather than the bytes below.
    known_kek: bool,
    known_wrap: bool,
    kek_id: String,
    wrapped_dek: Vec<u8>,
    nonce: Vec<u8>,
    ciphertext: Vec<u8>,
    identity: Identity,
    other: Identity,
    plaintext: Vec<u8>,
    fresh_nonce: [u8; 12],
    flip: usize,
}

fuzz_target!(|input: Input| {
    let dek = Dek::from_slice(&DEK).expect("32 bytes");
    let identity = input.identity.get();
    let record = SealedRecord {
        format: input.format,
        kek_id: if input.known_kek {
            KEK_ID.to_owned()
        } else {
            input.kek_id.clone()
        },
        wrapped_dek: if input.known_wrap {
            WRAPPED.to_vec()
        } else {
            input.wrapped_dek.clone()
        },
        nonce: input.nonce.clone(),
        ciphertext: input.ciphertext.clone(),
    };

    let opened = envelope::open(&dek, &identity, &record);
    match &opened {
        Ok(secret) => {
            let nonce: [u8; 12] = record.nonce.as_slice().try_into().expect("12 bytes");
            let sealed = envelope_seal(&dek, &identity, &nonce, secret.expose_secret()).expect("seals");
            assert_eq!(sealed, record.ciphertext, "only a genuine sealing opens");
        }
        Err(EnvelopeError::UnknownFormat(f)) => assert!(*f == record.format && record.format != 1),
        Err(EnvelopeError::NonceLength) => assert!(record.format == 1 && record.nonce.len() != 12),
        Err(EnvelopeError::Open) => assert!(record.format == 1 && record.nonce.len() == 12),
        Err(other) => panic!("open failed with {other:?}"),
    }

    let keyring = Keyring::new(Arc::new(StandIn));
    match now(keyring.open(&identity, &record)) {
        Err(KekError::Envelope(EnvelopeError::UnknownFormat(_))) => assert_ne!(record.format, 1),
        Err(KekError::UnknownKek(id)) => assert!(record.format == 1 && id == record.kek_id && id != KEK_ID),
        Err(KekError::Rejected) => {
            assert!(record.format == 1 && record.kek_id == KEK_ID && record.wrapped_dek != WRAPPED)
        }
        Err(KekError::Envelope(e)) => assert_eq!(opened.as_ref().err(), Some(&e)),
        Ok(secret) => assert_eq!(
            Some(secret.expose_secret()),
            opened.as_ref().ok().map(|s| s.expose_secret())
        ),
        Err(e) => panic!("keyring open failed with {e:?}"),
    }

    let other = input.other.get();
    assert_eq!(
        envelope_aad(&identity) == envelope_aad(&other),
        identity == other,
        "the AAD names one identity"
    );
    let ciphertext = envelope_seal(&dek, &identity, &input.fresh_nonce, &input.plaintext).expect("seals");
    let mut sealed = SealedRecord {
        format: 1,
        kek_id: KEK_ID.to_owned(),
        wrapped_dek: WRAPPED.to_vec(),
        nonce: input.fresh_nonce.to_vec(),
        ciphertext,
    };
    let back = envelope::open(&dek, &identity, &sealed).expect("a sealed record opens");
    assert_eq!(back.expose_secret(), input.plaintext.as_slice());
    assert_eq!(envelope::open(&dek, &other, &sealed).is_ok(), identity == other);
    let at = input.flip % sealed.ciphertext.len();
    sealed.ciphertext[at] ^= 1 << (input.flip % 8);
    assert_eq!(
        envelope::open(&dek, &identity, &sealed).err(),
        Some(EnvelopeError::Open)
    );
});
