//! The AWS KMS KEK provider: the KEK is a symmetric KMS key that never leaves KMS.
//!
//! Each DEK is wrapped with `Encrypt` under an EncryptionContext that names the record it
//! belongs to ([`encryption_context`]), so a wrapped DEK copied to another row does not
//! `Decrypt`. `kek_id` = `aws-kms:<key ARN>`: KMS's own yearly rotation keeps every older key
//! material usable under the same ARN, so a wrap is bound to the key, not to a version of it.
//! `key_id` may be an alias; it is resolved to the key's ARN when the provider opens, and
//! every call names that ARN.
//!
//! KMS is a network service a few milliseconds away: calls are bounded by a semaphore
//! (`max_concurrency`), each call — retries included — by `call_timeout`, and only KMS's
//! `ThrottlingException` is retried, with exponential backoff and jitter; any other failure is
//! reported at once ([`KekError::Unavailable`], 503 `KEK_UNAVAILABLE` above). Nothing here
//! keeps state about KMS's health: the next call tries again, so the vault recovers by itself
//! the moment KMS answers. Unwrapped DEKs are cached above the provider, as for every provider.
//!
//! Witness records are tags on the key (`sigvault-witness:<name>`, the value in base64): KMS
//! keeps them outside the vault's disk, and only a principal allowed `kms:TagResource` on the
//! key can change them.
//!
//! This module must never log or return key bytes except the DEK it was asked to unwrap.

mod error;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Region, SharedCredentialsProvider};
use aws_sdk_kms::types::{KeySpec, KeyState, KeyUsageType, Tag};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_types::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

pub use error::KmsError;

use super::{KekError, KekProvider, WrappedDek};
use crate::BoxFuture;
use crate::envelope::{Dek, RecordIdentity};

/// `[kek.aws_kms] call_timeout` when unset.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// `[kek.aws_kms] max_concurrency` when unset.
pub const DEFAULT_MAX_CONCURRENCY: usize = 32;
/// Attempts of a call KMS throttles, the first included.
const THROTTLE_ATTEMPTS: u32 = 5;
/// The first backoff after a throttled attempt; doubled for each next one, with jitter.
const THROTTLE_BACKOFF: Duration = Duration::from_millis(50);
/// The prefix of every `kek_id` this provider issues.
const KEK_ID_PREFIX: &str = "aws-kms:";
/// The prefix of a witness record's tag key.
const WITNESS_TAG_PREFIX: &str = "sigvault-witness:";
/// The prefix of the tags by which the current key names the keys current before it.
const PREVIOUS_TAG_PREFIX: &str = "sigvault-kek-previous:";
/// KMS's limits on a tag key and value (characters).
const TAG_KEY_MAX: usize = 128;
const TAG_VALUE_MAX: usize = 256;
/// KMS's largest ciphertext blob; a longer wrap is refused without a call.
const CIPHERTEXT_MAX: usize = 6144;

/// What the provider needs to reach the key (`[kek.aws_kms]`). Credentials are not settings:
/// they come from the AWS SDK's standard chain.
#[derive(Clone, Debug)]
pub struct AwsKmsSettings {
    /// Key ARN, key id, alias name (`alias/…`) or alias ARN.
    pub key_id: String,
    pub region: String,
    /// A KMS-compatible endpoint instead of AWS's (tests, air-gapped installs, VPC endpoints).
    pub endpoint_url: Option<String>,
    /// The longest one call may take, retries of a throttled call included.
    pub call_timeout: Duration,
    /// Calls to KMS in flight at once; more wait (within their `call_timeout`).
    pub max_concurrency: usize,
}

/// The keys this provider uses, as last read from KMS.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Keys {
    /// The ARN new wraps name (`key_id` resolved).
    current: String,
    /// Keys current before a rotation, oldest first, still unwrapping their records: the
    /// `sigvault-kek-previous:<n>` tags of the current key.
    previous: Vec<String>,
}

struct Inner {
    client: Client,
    /// `kek.aws_kms.key_id` as configured: an alias follows rotations, an ARN does not.
    key_id: String,
    keys: RwLock<Keys>,
    call_timeout: Duration,
    permits: Semaphore,
}

/// The AWS KMS KEK provider. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AwsKmsKek {
    inner: Arc<Inner>,
}

impl AwsKmsKek {
    /// Builds the client (the standard AWS credential chain), resolves `key_id` to its ARN
    /// and checks the key can wrap data keys: enabled, symmetric, for encryption.
    pub(crate) async fn open(settings: AwsKmsSettings) -> Result<Self, KekError> {
        Self::open_with(settings, None).await
    }

    /// [`AwsKmsKek::open`] with the given credentials instead of the standard chain (tests).
    pub(crate) async fn open_with(
        settings: AwsKmsSettings,
        credentials: Option<SharedCredentialsProvider>,
    ) -> Result<Self, KekError> {
        let http = http_client();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.call_timeout)
            .operation_attempt_timeout(settings.call_timeout)
            .operation_timeout(settings.call_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .http_client(http)
            .timeout_config(timeouts)
            // Retries are this provider's own: throttling only, within the call's timeout.
            .retry_config(RetryConfig::disabled());
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let client = Client::new(&loader.load().await);
        let inner = Inner {
            client,
            key_id: settings.key_id.clone(),
            keys: RwLock::new(Keys {
                current: settings.key_id.clone(),
                previous: Vec::new(),
            }),
            call_timeout: settings.call_timeout,
            permits: Semaphore::new(settings.max_concurrency.max(1)),
        };
        let keys = inner.read_keys().await?;
        *inner.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The ARN of the key new wraps name.
    #[cfg(test)]
    pub(crate) fn arn(&self) -> String {
        self.inner.current()
    }
}

/// `kek_id` of the key `arn`.
fn kek_id(arn: &str) -> String {
    format!("{KEK_ID_PREFIX}{arn}")
}

/// The tag key naming the `index`-th previous key (1 = the oldest); zero-padded, so tags sort
/// in order.
fn previous_tag(index: usize) -> String {
    format!("{PREVIOUS_TAG_PREFIX}{index:04}")
}

impl Inner {
    fn keys(&self) -> Keys {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn current(&self) -> String {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).current.clone()
    }

    /// Whether `arn` is a key this provider uses.
    fn knows(&self, arn: &str) -> bool {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.current == arn || keys.previous.iter().any(|p| p == arn)
    }

    /// The keys as KMS has them now: `key_id` resolved, and the previous keys its tags name.
    async fn read_keys(&self) -> Result<Keys, KmsError> {
        let current = self.resolve(&self.key_id).await?;
        let mut previous: Vec<(String, String)> = self
            .tags(&current)
            .await?
            .into_iter()
            .filter(|t| t.tag_key().starts_with(PREVIOUS_TAG_PREFIX))
            .map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned()))
            .collect();
        previous.sort();
        Ok(Keys {
            previous: previous
                .into_iter()
                .map(|(_, arn)| arn)
                .filter(|arn| *arn != current)
                .collect(),
            current,
        })
    }

    /// Every tag of the key `arn`.
    async fn tags(&self, arn: &str) -> Result<Vec<Tag>, KmsError> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call("ListResourceTags", || {
                    self.client
                        .list_resource_tags()
                        .key_id(arn)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            all.extend(page.tags().iter().cloned());
            match (page.truncated(), page.next_marker()) {
                (true, Some(next)) => marker = Some(next.to_owned()),
                _ => return Ok(all),
            }
        }
    }

    /// The alias name `key_id` is (`alias/…`, or the part of an alias ARN after `:`), if it is
    /// one: only an alias can follow a rotation.
    fn alias(&self) -> Option<&str> {
        if self.key_id.starts_with("alias/") {
            return Some(&self.key_id);
        }
        let (_, resource) = self.key_id.strip_prefix("arn:")?.rsplit_once(':')?;
        resource.starts_with("alias/").then_some(resource)
    }

    /// `key_id`'s ARN, once KMS confirms the key can wrap data keys.
    async fn resolve(&self, key_id: &str) -> Result<String, KmsError> {
        let described = self
            .call("DescribeKey", || self.client.describe_key().key_id(key_id).send())
            .await?;
        let unusable = |reason: String| KmsError::Unusable {
            key: key_id.to_owned(),
            reason,
        };
        let meta = described
            .key_metadata()
            .ok_or_else(|| unusable("DescribeKey returned no key metadata".into()))?;
        if meta.key_state() != Some(&KeyState::Enabled) {
            let state = meta.key_state().map_or("unknown", KeyState::as_str);
            return Err(unusable(format!("the key is {state}, not Enabled")));
        }
        if meta.key_usage().is_some_and(|u| *u != KeyUsageType::EncryptDecrypt) {
            return Err(unusable("the key is not for ENCRYPT_DECRYPT".into()));
        }
        if meta.key_spec().is_some_and(|s| *s != KeySpec::SymmetricDefault) {
            return Err(unusable("the key is not SYMMETRIC_DEFAULT".into()));
        }
        Ok(meta.arn().unwrap_or(meta.key_id()).to_owned())
    }

    /// Runs one KMS call: waits for a permit, retries a throttled call with backoff, and
    /// gives up at `call_timeout` from the start (the permit wait included).
    async fn call<T, E, R, F, Fut>(&self, operation: &'static str, mut attempt: F) -> Result<T, KmsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, aws_sdk_kms::error::SdkError<E, R>>>,
        E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let after = self.call_timeout;
        let run = async {
            let _permit = self.permits.acquire().await.map_err(|_| KmsError::Unexpected {
                operation,
                detail: "the call semaphore is closed".into(),
            })?;
            let mut tries = 0;
            loop {
                tries += 1;
                match attempt().await {
                    Ok(out) => return Ok(out),
                    Err(err) => {
                        let err = KmsError::from_sdk(operation, &err);
                        if !err.is_throttling() || tries >= THROTTLE_ATTEMPTS {
                            return Err(err);
                        }
                        tokio::time::sleep(backoff(tries)).await;
                    }
                }
            }
        };
        tokio::time::timeout(after, run)
            .await
            .unwrap_or(Err(KmsError::Timeout { operation, after }))
    }
}

/// The SDK's hyper client, on rustls with ring (as every TLS connection of sigvault) and the
/// system's CA roots.
pub(crate) fn http_client() -> aws_sdk_kms::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The wait after the `tries`-th throttled attempt: 50 ms doubled per try, plus up to as much
/// again at random, so nodes throttled together do not come back together.
fn backoff(tries: u32) -> Duration {
    let base = THROTTLE_BACKOFF.saturating_mul(1 << tries.saturating_sub(1).min(6));
    let mut byte = [0u8; 1];
    let jitter = match getrandom::fill(&mut byte) {
        Ok(()) => base.mul_f64(f64::from(byte[0]) / 255.0),
        Err(_) => base / 2,
    };
    base + jitter
}

/// The EncryptionContext of a record's wrapped DEK: its identity, field by field. KMS binds
/// the ciphertext to it, and logs it (in CloudTrail) for every Decrypt: it holds ids, never
/// secrets.
fn encryption_context(identity: &RecordIdentity<'_>) -> HashMap<String, String> {
    HashMap::from([
        ("sigvault:kind".to_owned(), identity.kind.to_owned()),
        ("sigvault:tenant".to_owned(), identity.tenant.to_owned()),
        ("sigvault:id".to_owned(), identity.id.to_owned()),
        ("sigvault:version".to_owned(), identity.version.to_string()),
    ])
}

/// The tag key of the witness record `name`.
fn witness_tag(name: &str) -> Result<String, KmsError> {
    let key = format!("{WITNESS_TAG_PREFIX}{name}");
    if key.chars().count() > TAG_KEY_MAX {
        return Err(KmsError::Witness {
            name: name.to_owned(),
            reason: format!("its tag key would be longer than KMS's {TAG_KEY_MAX} characters"),
        });
    }
    Ok(key)
}

impl KekProvider for AwsKmsKek {
    fn current_kek_id(&self) -> String {
        kek_id(&self.inner.current())
    }

    fn kek_ids(&self) -> Vec<String> {
        let keys = self.inner.keys();
        keys.previous
            .iter()
            .chain(std::iter::once(&keys.current))
            .map(|arn| kek_id(arn))
            .collect()
    }

    fn holds(&self, id: &str) -> bool {
        id.strip_prefix(KEK_ID_PREFIX).is_some_and(|arn| self.inner.knows(arn))
    }

    fn wrap_dek<'a>(
        &'a self,
        dek: &'a Dek,
        identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<WrappedDek, KekError>> {
        let context = encryption_context(identity);
        Box::pin(async move {
            let inner = &self.inner;
            let arn = inner.current();
            let out = inner
                .call("Encrypt", || {
                    inner
                        .client
                        .encrypt()
                        .key_id(&arn)
                        .plaintext(Blob::new(dek.expose_secret().as_slice()))
                        .set_encryption_context(Some(context.clone()))
                        .send()
                })
                .await?;
            let bytes = out
                .ciphertext_blob()
                .map(|b| b.as_ref().to_vec())
                .ok_or(KmsError::Unexpected {
                    operation: "Encrypt",
                    detail: "no ciphertext".into(),
                })?;
            if out.key_id().is_some_and(|id| id != arn) {
                return Err(KmsError::Unexpected {
                    operation: "Encrypt",
                    detail: "the ciphertext is under another key than the one named".into(),
                }
                .into());
            }
            Ok(WrappedDek {
                kek_id: kek_id(&arn),
                bytes,
            })
        })
    }

    fn unwrap_dek<'a>(
        &'a self,
        kek_id: &'a str,
        wrapped: &'a [u8],
        identity: &RecordIdentity<'_>,
    ) -> BoxFuture<'a, Result<Dek, KekError>> {
        let context = encryption_context(identity);
        Box::pin(async move {
            let Some(arn) = kek_id.strip_prefix(KEK_ID_PREFIX).filter(|arn| self.inner.knows(arn)) else {
                return Err(KekError::UnknownKek(kek_id.to_owned()));
            };
            if wrapped.is_empty() || wrapped.len() > CIPHERTEXT_MAX {
                return Err(KekError::Rejected);
            }
            let inner = &self.inner;
            let out = match inner
                .call("Decrypt", || {
                    inner
                        .client
                        .decrypt()
                        .key_id(arn)
                        .ciphertext_blob(Blob::new(wrapped))
                        .set_encryption_context(Some(context.clone()))
                        .send()
                })
                .await
            {
                Ok(out) => out,
                // Denied: if this provider's own key wraps and unwraps, IAM lets it work, so
                // what was denied is the ciphertext (it names a key this caller cannot use).
                Err(err) if err.is_access_denied() => {
                    return Err(match self.self_test().await {
                        Ok(()) => KekError::Rejected,
                        Err(_) => err.into(),
                    });
                }
                Err(err) => return Err(err.into()),
            };
            if out.key_id().is_some_and(|id| id != arn) {
                return Err(KekError::Rejected);
            }
            let plain = Zeroizing::new(out.plaintext().map(|b| b.as_ref().to_vec()).unwrap_or_default());
            Ok(Dek::from_slice(&plain)?)
        })
    }

    fn witness_write<'a>(&'a self, name: &'a str, value: &'a [u8]) -> BoxFuture<'a, Result<(), KekError>> {
        Box::pin(async move {
            let key = witness_tag(name)?;
            let encoded = BASE64.encode(value);
            if encoded.len() > TAG_VALUE_MAX {
                return Err(KmsError::Witness {
                    name: name.to_owned(),
                    reason: format!("{} bytes do not fit a {TAG_VALUE_MAX}-character tag value", value.len()),
                }
                .into());
            }
            let tag = Tag::builder()
                .tag_key(key)
                .tag_value(encoded)
                .build()
                .map_err(|e| KmsError::Unexpected {
                    operation: "TagResource",
                    detail: e.to_string(),
                })?;
            let inner = &self.inner;
            let arn = inner.current();
            inner
                .call("TagResource", || {
                    inner.client.tag_resource().key_id(&arn).tags(tag.clone()).send()
                })
                .await?;
            Ok(())
        })
    }

    fn witness_read<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, KekError>> {
        Box::pin(async move {
            let key = witness_tag(name)?;
            let tags = self.inner.tags(&self.inner.current()).await?;
            let Some(tag) = tags.iter().find(|t| t.tag_key() == key) else {
                return Ok(None);
            };
            let bytes = BASE64.decode(tag.tag_value()).map_err(|e| KmsError::Witness {
                name: name.to_owned(),
                reason: format!("its tag value is not base64: {e}"),
            })?;
            Ok(Some(bytes))
        })
    }

    fn rotate(&self) -> BoxFuture<'_, Result<String, KekError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let Some(alias) = inner.alias().map(str::to_owned) else {
                return Err(KekError::Refused(format!(
                    "kek.aws_kms.key_id is {}, not an alias: a rotation makes a new key and moves an alias to it (name the key by alias, or rotate with AWS's own yearly rotation, which needs nothing of sigvault)",
                    inner.key_id
                )));
            };
            let old = inner.read_keys().await?;
            // The new key carries what the old one did: the witness records, and the list of
            // keys before it, the old one last.
            let mut tags: Vec<Tag> = inner
                .tags(&old.current)
                .await?
                .into_iter()
                .filter(|t| t.tag_key().starts_with(WITNESS_TAG_PREFIX))
                .collect();
            for (index, arn) in old.previous.iter().chain(std::iter::once(&old.current)).enumerate() {
                let tag = Tag::builder()
                    .tag_key(previous_tag(index + 1))
                    .tag_value(arn)
                    .build()
                    .map_err(|e| KmsError::Unexpected {
                        operation: "CreateKey",
                        detail: e.to_string(),
                    })?;
                tags.push(tag);
            }
            let created = inner
                .call("CreateKey", || {
                    inner
                        .client
                        .create_key()
                        .description(format!("sigvault KEK, after {}", old.current))
                        .key_usage(KeyUsageType::EncryptDecrypt)
                        .key_spec(KeySpec::SymmetricDefault)
                        .set_tags(Some(tags.clone()))
                        .send()
                })
                .await?;
            let new = created
                .key_metadata()
                .and_then(|m| m.arn())
                .ok_or(KmsError::Unexpected {
                    operation: "CreateKey",
                    detail: "no key ARN".into(),
                })?
                .to_owned();
            inner
                .call("UpdateAlias", || {
                    inner
                        .client
                        .update_alias()
                        .alias_name(&alias)
                        .target_key_id(&new)
                        .send()
                })
                .await?;
            let keys = inner.read_keys().await?;
            let current = keys.current.clone();
            *inner.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
            Ok(kek_id(&current))
        })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<(), KekError>> {
        Box::pin(async move {
            let keys = self.inner.read_keys().await?;
            *self.inner.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
            Ok(())
        })
    }

    fn retire<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), KekError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.read_keys().await?;
            let Some(arn) = id.strip_prefix(KEK_ID_PREFIX) else {
                return Err(KekError::UnknownKek(id.to_owned()));
            };
            if arn == keys.current {
                return Err(KekError::Refused(format!("{id} is the current KEK: rotate first")));
            }
            if !keys.previous.iter().any(|p| p == arn) {
                return Err(KekError::UnknownKek(id.to_owned()));
            }
            // Forgetting is rewriting the list without it; nothing is scheduled in KMS.
            let remaining: Vec<&String> = keys.previous.iter().filter(|p| *p != arn).collect();
            let mut tags = Vec::new();
            for (i, kept) in remaining.iter().enumerate() {
                tags.push(
                    Tag::builder()
                        .tag_key(previous_tag(i + 1))
                        .tag_value(kept.as_str())
                        .build()
                        .map_err(|e| KmsError::Unexpected {
                            operation: "TagResource",
                            detail: e.to_string(),
                        })?,
                );
            }
            if !tags.is_empty() {
                inner
                    .call("TagResource", || {
                        inner
                            .client
                            .tag_resource()
                            .key_id(&keys.current)
                            .set_tags(Some(tags.clone()))
                            .send()
                    })
                    .await?;
            }
            let stale = previous_tag(keys.previous.len());
            inner
                .call("UntagResource", || {
                    inner
                        .client
                        .untag_resource()
                        .key_id(&keys.current)
                        .tag_keys(&stale)
                        .send()
                })
                .await?;
            let keys = inner.read_keys().await?;
            *inner.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
            Ok(())
        })
    }
}
