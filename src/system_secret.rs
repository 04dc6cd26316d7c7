//! Vault-internal secrets (the token pepper, the audit key): 256 random bits created on
//! first start, sealed under the KEK like any key version and stored by name. Nodes racing
//! at first start agree on the one stored first.

use crate::clock::{SharedClock, unix_ms};
use crate::envelope::RecordIdentity;
use crate::kek::{KekError, Keyring};
use crate::secret::SecretBytes;
use crate::store::{StoreError, SystemStore};

const LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SystemSecretError {
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random generator failed")]
    Random,
}

fn identity(name: &str) -> RecordIdentity<'_> {
    RecordIdentity {
        kind: name,
        tenant: crate::keys::DEFAULT_TENANT,
        id: name,
        version: 1,
    }
}

/// Opens the system secret `name`, creating it when the store has none.
pub async fn load_or_create(
    store: &dyn SystemStore,
    keyring: &Keyring,
    clock: &SharedClock,
    name: &str,
) -> Result<SecretBytes, SystemSecretError> {
    let sealed = match store.get_system_secret(name).await? {
        Some(sealed) => sealed,
        None => {
            let fresh = SecretBytes::random(LEN).map_err(|_| SystemSecretError::Random)?;
            // Sealing the new secret: the only time its bytes are consumed outside its use.
            let sealed = keyring.seal(&identity(name), fresh.expose_secret()).await?;
            store.insert_system_secret(name, &sealed, unix_ms(clock.now())).await?
        }
    };
    Ok(keyring.open(&identity(name), &sealed).await?)
}
