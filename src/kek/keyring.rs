//! Sealing and opening whole records with the KEKs of one or more providers.
//!
//! New records are sealed under the current provider's current KEK. A record is opened by the
//! provider that holds the `kek_id` written in it, so records sealed under an older KEK
//! version, or under a provider that is no longer current (a migration from one HSM or KMS to
//! another), stay readable for as long as that provider is open. The keyring never guesses:
//! a `kek_id` no provider holds is [`KekError::UnknownKek`], never an attempt with every KEK.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{KekError, KekProvider};
use crate::envelope::{self, Dek, EnvelopeError, RecordIdentity, SealedRecord};
use crate::secret::SecretBytes;

/// Seals and opens whole records: a DEK per record, wrapped by a provider's KEK. Cheap to
/// clone.
#[derive(Clone)]
pub struct Keyring {
    /// Wraps every new DEK, and opens its own records.
    current: Arc<dyn KekProvider>,
    /// Only open the records they hold.
    retired: Arc<[Arc<dyn KekProvider>]>,
    /// When a record named a KEK no provider held and the KEKs were read again for it: at
    /// most once a [`UNKNOWN_KEK_REFRESH`], so records naming made-up KEKs cannot keep the
    /// HSM or KMS busy.
    last_unknown_refresh: Arc<Mutex<Option<Instant>>>,
    /// Calls to the providers, for `/metrics`.
    metrics: Arc<KekMetrics>,
}

/// KEK calls (DEK wraps and unwraps) by provider kind, operation and outcome, and their
/// latencies.
#[derive(Debug)]
pub struct KekMetrics {
    pub calls: crate::metrics::CounterFamily,
    pub latency: crate::metrics::HistogramFamily,
}

/// The provider kind a `kek_id` names (`pkcs11`, `aws-kms`), as a fixed text.
fn provider_kind(kek_id: &str) -> &'static str {
    match kek_id.split(':').next() {
        Some("pkcs11") => "pkcs11",
        Some("aws-kms") => "aws-kms",
        _ => "other",
    }
}

impl KekMetrics {
    fn record<T>(&self, kind: &'static str, operation: &'static str, started: Instant, result: &Result<T, KekError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) if e.is_unavailable() => "unavailable",
            Err(_) => "refused",
        };
        self.calls.add(&[kind, operation, outcome], 1);
        self.latency
            .observe(&[kind, operation], started.elapsed().as_secs_f64());
    }
}

/// The least time between two re-reads of the KEKs caused by an unknown `kek_id`.
const UNKNOWN_KEK_REFRESH: Duration = Duration::from_secs(1);

impl Keyring {
    /// A keyring of one provider.
    pub fn new(current: Arc<dyn KekProvider>) -> Self {
        Self::with_retired(current, Vec::new())
    }

    /// A keyring that seals under `current` and still opens records of the `retired`
    /// providers (asked in the order given when two claim a `kek_id`, after `current`).
    pub(crate) fn with_retired(current: Arc<dyn KekProvider>, retired: Vec<Arc<dyn KekProvider>>) -> Self {
        Self {
            current,
            retired: retired.into(),
            last_unknown_refresh: Arc::new(Mutex::new(None)),
            metrics: Arc::new(KekMetrics {
                calls: crate::metrics::CounterFamily::default(),
                latency: crate::metrics::HistogramFamily::new(&crate::metrics::LATENCY_BUCKETS),
            }),
        }
    }

    /// The providers' calls so far.
    pub fn metrics(&self) -> &KekMetrics {
        &self.metrics
    }

    /// Wraps `dek` under the current KEK, counted.
    async fn wrap(&self, dek: &Dek, identity: &RecordIdentity<'_>) -> Result<crate::kek::WrappedDek, KekError> {
        let started = Instant::now();
        let result = self.current().wrap_dek(dek, identity).await;
        let kind = provider_kind(&self.current_kek_id());
        self.metrics.record(kind, "wrap", started, &result);
        result
    }

    /// The provider new records are sealed under.
    pub fn current(&self) -> &Arc<dyn KekProvider> {
        &self.current
    }

    /// Every provider, current first.
    fn providers(&self) -> impl Iterator<Item = &Arc<dyn KekProvider>> {
        std::iter::once(&self.current).chain(self.retired.iter())
    }

    /// The `kek_id` new records are wrapped under.
    pub(crate) fn current_kek_id(&self) -> String {
        self.current().current_kek_id()
    }

    /// Every `kek_id` some provider of this keyring can open, current provider first.
    pub(crate) fn kek_ids(&self) -> Vec<String> {
        self.providers().flat_map(|p| p.kek_ids()).collect()
    }

    /// Runs every provider's self-test (current first); the first failure is returned.
    pub(crate) async fn self_test(&self) -> Result<(), KekError> {
        for provider in self.providers() {
            provider.self_test().await?;
        }
        Ok(())
    }

    /// Seals `plaintext` for `identity` under a fresh DEK wrapped by the current KEK.
    pub(crate) async fn seal(&self, identity: &RecordIdentity<'_>, plaintext: &[u8]) -> Result<SealedRecord, KekError> {
        let dek = Dek::generate()?;
        let (nonce, ciphertext) = envelope::seal(&dek, identity, plaintext)?;
        let wrapped = self.wrap(&dek, identity).await?;
        Ok(SealedRecord {
            format: envelope::FORMAT_V1,
            kek_id: wrapped.kek_id,
            wrapped_dek: wrapped.bytes,
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// The record `record` of `identity` wrapped under the current KEK: its DEK unwrapped by
    /// the provider that holds the record's `kek_id` and wrapped again; nonce and ciphertext
    /// unchanged, so the row's secret is untouched. `None` when it is under the current KEK
    /// already. The envelope is opened first: a record that does not open is refused, never
    /// given a fresh wrap.
    pub(crate) async fn rewrap(
        &self,
        identity: &RecordIdentity<'_>,
        record: &SealedRecord,
    ) -> Result<Option<SealedRecord>, KekError> {
        if record.kek_id == self.current().current_kek_id() {
            return Ok(None);
        }
        let dek = self.unwrap(identity, record).await?;
        drop(envelope::open(&dek, identity, record)?);
        let wrapped = self.wrap(&dek, identity).await?;
        Ok(Some(SealedRecord {
            format: record.format,
            kek_id: wrapped.kek_id,
            wrapped_dek: wrapped.bytes,
            nonce: record.nonce.clone(),
            ciphertext: record.ciphertext.clone(),
        }))
    }

    /// Retires `kek_id` at the provider that holds it (see [`KekProvider::retire`]).
    pub(crate) async fn retire(&self, kek_id: &str) -> Result<(), KekError> {
        let provider = self
            .holder(kek_id)
            .ok_or_else(|| KekError::UnknownKek(kek_id.to_owned()))?;
        provider.retire(kek_id).await
    }

    /// The provider that holds `kek_id` (the current one first).
    fn holder(&self, kek_id: &str) -> Option<&Arc<dyn KekProvider>> {
        self.providers().find(|p| p.holds(kek_id))
    }

    /// Reads every provider's KEKs again (another node rotated or retired one).
    pub(crate) async fn refresh(&self) -> Result<(), KekError> {
        for provider in self.providers() {
            provider.refresh().await?;
        }
        Ok(())
    }

    /// The DEK of `record`, unwrapped by the provider that holds its `kek_id`.
    async fn unwrap(&self, identity: &RecordIdentity<'_>, record: &SealedRecord) -> Result<Dek, KekError> {
        if record.format != envelope::FORMAT_V1 {
            return Err(EnvelopeError::UnknownFormat(record.format).into());
        }
        let provider = match self.holder(&record.kek_id) {
            Some(provider) => provider,
            None => {
                // Made by another node's rotation, whose announcement this node has not
                // heard (yet, or at all): read the KEKs again before calling it unknown.
                if self.may_refresh_for_unknown() {
                    self.refresh().await?;
                }
                self.holder(&record.kek_id)
                    .ok_or_else(|| KekError::UnknownKek(record.kek_id.clone()))?
            }
        };
        let started = Instant::now();
        let result = provider.unwrap_dek(&record.kek_id, &record.wrapped_dek, identity).await;
        self.metrics
            .record(provider_kind(&record.kek_id), "unwrap", started, &result);
        result
    }

    /// Whether an unknown `kek_id` may make the KEKs be read again now (and notes it).
    fn may_refresh_for_unknown(&self) -> bool {
        let mut last = self.last_unknown_refresh.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < UNKNOWN_KEK_REFRESH) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// Opens a record for exactly `identity`: one KEK unwrap by the provider that holds the
    /// record's `kek_id`, then AES-GCM in process.
    pub async fn open(&self, identity: &RecordIdentity<'_>, record: &SealedRecord) -> Result<SecretBytes, KekError> {
        let dek = self.unwrap(identity, record).await?;
        Ok(envelope::open(&dek, identity, record)?)
    }
}

#[cfg(all(test, feature = "kek-pkcs11"))]
mod tests {
    use super::*;
    use crate::kek::pkcs11::Pkcs11Kek;
    use crate::kek::pkcs11::testing::fresh_token;

    const IDENTITY: RecordIdentity<'static> = RecordIdentity {
        kind: "test-record",
        tenant: "default",
        id: "one",
        version: 1,
    };

    async fn provider(tag: &str) -> Arc<dyn KekProvider> {
        Arc::new(Pkcs11Kek::open(fresh_token(tag)).await.unwrap())
    }

    #[tokio::test]
    async fn a_record_of_a_retired_provider_opens_while_another_provider_is_current() {
        let old = provider("old").await;
        let before = Keyring::new(Arc::clone(&old));
        let old_record = before.seal(&IDENTITY, b"sealed before the migration").await.unwrap();

        let new = provider("new").await;
        let keyring = Keyring::with_retired(Arc::clone(&new), vec![old]);
        assert_eq!(keyring.current_kek_id(), new.current_kek_id());
        let new_record = keyring.seal(&IDENTITY, b"sealed after").await.unwrap();
        assert_eq!(
            new_record.kek_id,
            new.current_kek_id(),
            "new records go to the current provider"
        );
        assert_eq!(keyring.kek_ids().len(), 2);
        keyring.self_test().await.unwrap();

        let opened = keyring.open(&IDENTITY, &old_record).await.unwrap();
        assert_eq!(opened.expose_secret(), b"sealed before the migration");
        let opened = keyring.open(&IDENTITY, &new_record).await.unwrap();
        assert_eq!(opened.expose_secret(), b"sealed after");

        // Without the retired provider the old record names a KEK nobody holds.
        let err = Keyring::new(new).open(&IDENTITY, &old_record).await.err().unwrap();
        assert!(
            matches!(err, KekError::UnknownKek(ref id) if *id == old_record.kek_id),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_record_relabelled_to_another_providers_kek_is_rejected_not_opened() {
        let (a, b) = (provider("a").await, provider("b").await);
        let keyring = Keyring::with_retired(Arc::clone(&a), vec![Arc::clone(&b)]);
        let mut record = keyring.seal(&IDENTITY, b"secret").await.unwrap();
        record.kek_id = b.current_kek_id();
        let err = keyring.open(&IDENTITY, &record).await.err().unwrap();
        assert!(matches!(err, KekError::Rejected), "{err:?}");
    }

    #[tokio::test]
    async fn a_record_for_another_identity_or_of_an_unknown_format_does_not_open() {
        let keyring = Keyring::new(provider("identity").await);
        let record = keyring.seal(&IDENTITY, b"secret").await.unwrap();
        let other = RecordIdentity { id: "two", ..IDENTITY };
        let err = keyring.open(&other, &record).await.err().unwrap();
        assert!(matches!(err, KekError::Envelope(_)), "{err:?}");
        let mut unknown = record.clone();
        unknown.format = 99;
        let err = keyring.open(&IDENTITY, &unknown).await.err().unwrap();
        assert!(
            matches!(err, KekError::Envelope(EnvelopeError::UnknownFormat(99))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_rewrap_moves_the_dek_under_the_current_kek_and_leaves_the_secret_untouched() {
        let kek = provider("rewrap").await;
        let keyring = Keyring::new(Arc::clone(&kek));
        let record = keyring.seal(&IDENTITY, b"kept secret").await.unwrap();
        assert_eq!(
            keyring.rewrap(&IDENTITY, &record).await.unwrap(),
            None,
            "already current"
        );

        let new_id = kek.rotate().await.unwrap();
        let moved = keyring.rewrap(&IDENTITY, &record).await.unwrap().unwrap();
        assert_eq!(moved.kek_id, new_id);
        assert_ne!(moved.wrapped_dek, record.wrapped_dek);
        assert_eq!((&moved.nonce, &moved.ciphertext), (&record.nonce, &record.ciphertext));
        assert_eq!(
            keyring.open(&IDENTITY, &moved).await.unwrap().expose_secret(),
            b"kept secret"
        );
        assert_eq!(keyring.rewrap(&IDENTITY, &moved).await.unwrap(), None);

        // A record that does not open is refused, not given a fresh wrap.
        let mut altered = record.clone();
        if let Some(byte) = altered.ciphertext.first_mut() {
            *byte ^= 1;
        }
        let err = keyring.rewrap(&IDENTITY, &altered).await.err().unwrap();
        assert!(matches!(err, KekError::Envelope(_)), "{err:?}");
        let other = RecordIdentity { id: "two", ..IDENTITY };
        assert!(keyring.rewrap(&other, &record).await.is_err(), "for another identity");
    }

    #[tokio::test]
    async fn a_rewrap_moves_a_record_from_a_retired_provider_to_the_current_one() {
        let old = provider("migrate-from").await;
        let record = Keyring::new(Arc::clone(&old))
            .seal(&IDENTITY, b"migrated")
            .await
            .unwrap();
        let new = provider("migrate-to").await;
        let keyring = Keyring::with_retired(Arc::clone(&new), vec![old]);
        let moved = keyring.rewrap(&IDENTITY, &record).await.unwrap().unwrap();
        assert_eq!(moved.kek_id, new.current_kek_id());
        // Only the new provider is needed from now on.
        let opened = Keyring::new(new).open(&IDENTITY, &moved).await.unwrap();
        assert_eq!(opened.expose_secret(), b"migrated");
    }

    #[tokio::test]
    async fn a_record_under_a_kek_another_node_made_opens_after_one_reread() {
        let settings = fresh_token("unknown-refresh");
        let this: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(settings.clone()).await.unwrap());
        let other: Arc<dyn KekProvider> = Arc::new(Pkcs11Kek::open(settings).await.unwrap());
        let here = Keyring::new(Arc::clone(&this));
        let there = Keyring::new(Arc::clone(&other));
        other.rotate().await.unwrap();
        let record = there.seal(&IDENTITY, b"made elsewhere").await.unwrap();
        assert!(!this.holds(&record.kek_id), "not yet known here");
        let opened = here.open(&IDENTITY, &record).await.unwrap();
        assert_eq!(opened.expose_secret(), b"made elsewhere");
        // A made-up KEK is read again for at most once a second, then unknown.
        let mut bogus = record.clone();
        bogus.kek_id = "pkcs11:nobody:7".into();
        for _ in 0..3 {
            let err = here.open(&IDENTITY, &bogus).await.err().unwrap();
            assert!(matches!(err, KekError::UnknownKek(_)), "{err:?}");
        }
    }
}
