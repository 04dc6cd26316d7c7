//! Named caller tokens: what a creation asks for, the checks on it, and creating, reading
//! and revoking tokens (the root token included) through the [`Authenticator`].

use std::sync::PoisonError;

use secrecy::{ExposeSecret, SecretString};

use super::{Authenticator, CALLER_TOKEN_DOMAIN, ROOT_TOKEN_VALUE, certificate, generate_token};
use crate::store::{StoreError, TokenRecord};

/// Most groups a caller token may carry.
pub const MAX_GROUPS: usize = 16;
const MAX_PRINCIPAL_LEN: usize = 256;
const MAX_DESCRIPTION_LEN: usize = 1024;

/// What `POST /v1/auth/tokens` asks for.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub principal: String,
    pub groups: Vec<String>,
    pub ttl: Option<time::Duration>,
    pub description: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no caller token has id '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random generator failed")]
    Random,
}

/// Checks a principal name: 1–256 characters, no control characters, not `root` (the root
/// token's) or `-` (the audit trail's "nobody").
pub fn validate_principal(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_PRINCIPAL_LEN {
        return Err(format!("principal must be 1 to {MAX_PRINCIPAL_LEN} bytes"));
    }
    if name.chars().any(char::is_control) || name.trim() != name {
        return Err("principal must not contain control characters or surrounding spaces".into());
    }
    if name == "root" || name == "-" {
        return Err(format!("principal `{name}` is reserved"));
    }
    Ok(())
}

/// Checks group names: at most 16, each 1–64 characters of `[A-Za-z0-9._-]`, no repeats.
pub fn validate_groups(groups: &[String]) -> Result<(), String> {
    if groups.len() > MAX_GROUPS {
        return Err(format!("at most {MAX_GROUPS} groups"));
    }
    for (i, g) in groups.iter().enumerate() {
        if !certificate::is_group_name(g) {
            return Err(format!("group `{g}` must be 1 to 64 characters of A-Z a-z 0-9 . _ -"));
        }
        if groups.iter().take(i).any(|earlier| earlier == g) {
            return Err(format!("group `{g}` is listed twice"));
        }
    }
    Ok(())
}

/// Checks a token request without creating anything: principal, groups, description and
/// ttl (at most `max_ttl`). [`Authenticator::create_token`] checks it again.
pub(crate) fn check_new_token(new: &NewToken, max_ttl: time::Duration) -> Result<(), TokenError> {
    validate_principal(&new.principal).map_err(TokenError::Invalid)?;
    validate_groups(&new.groups).map_err(TokenError::Invalid)?;
    if let Some(d) = &new.description
        && (d.len() > MAX_DESCRIPTION_LEN || d.chars().any(char::is_control))
    {
        return Err(TokenError::Invalid(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} bytes without control characters"
        )));
    }
    if let Some(ttl) = new.ttl
        && (ttl <= time::Duration::ZERO || ttl > max_ttl)
    {
        return Err(TokenError::Invalid(format!(
            "ttl must be positive and at most {} days (auth.max_token_ttl)",
            max_ttl.whole_days()
        )));
    }
    Ok(())
}

impl Authenticator {
    /// Creates a caller token; returns its row and the token, which exists nowhere else.
    pub async fn create_token(
        &self,
        new: NewToken,
        max_ttl: time::Duration,
    ) -> Result<(TokenRecord, SecretString), TokenError> {
        check_new_token(&new, max_ttl)?;
        let token = generate_token().map_err(|_| TokenError::Random)?;
        let mut raw_id = [0u8; 8];
        getrandom::fill(&mut raw_id).map_err(|_| TokenError::Random)?;
        let now = self.now_ms();
        let record = TokenRecord {
            id: format!("tok_{}", base16ct::lower::encode_string(&raw_id)),
            hash: self
                .hasher
                .hash(CALLER_TOKEN_DOMAIN, token.expose_secret().as_bytes())
                .to_vec(),
            principal: new.principal,
            groups: new.groups,
            description: new.description,
            created_at_ms: now,
            expires_at_ms: new
                .ttl
                .map(|ttl| now.saturating_add(i64::try_from(ttl.whole_milliseconds()).unwrap_or(i64::MAX))),
            revoked_at_ms: None,
            revision: 0,
        };
        self.store.insert_token(&record).await?;
        Ok((record, token))
    }

    /// Revokes the bootstrap root token: an empty hash is stored in its place, so it stops
    /// authenticating now and after restarts (until an operator sets `SIGVAULT_ROOT_TOKEN`
    /// again, which installs a new one deliberately).
    pub(crate) async fn revoke_root(&self) -> Result<(), TokenError> {
        self.system.put_value(ROOT_TOKEN_VALUE, &[], self.now_ms()).await?;
        self.root_hash.write().unwrap_or_else(PoisonError::into_inner).clear();
        self.forget_all();
        Ok(())
    }

    /// Reads the root token's hash again from the store (another node sharing it may have
    /// revoked or replaced it) and forgets every verified token.
    pub(crate) async fn reload_root(&self) -> Result<(), TokenError> {
        if let Some(hash) = self.system.get_value(ROOT_TOKEN_VALUE).await? {
            let mut root = self.root_hash.write().unwrap_or_else(PoisonError::into_inner);
            if *root != hash {
                *root = hash;
                drop(root);
                self.forget_all();
            }
        }
        Ok(())
    }

    /// Whether the root token still authenticates.
    #[cfg(test)]
    pub(crate) fn root_is_active(&self) -> bool {
        !self.root_hash.read().unwrap_or_else(PoisonError::into_inner).is_empty()
    }

    pub(crate) async fn get_token(&self, id: &str) -> Result<TokenRecord, TokenError> {
        self.store
            .get_token(id)
            .await?
            .ok_or_else(|| TokenError::NotFound(id.to_owned()))
    }

    /// Revokes a token: it stops authenticating at once on this node (other nodes forget
    /// verified tokens when their memory entry is next refreshed, see the README).
    pub(crate) async fn revoke_token(&self, id: &str) -> Result<TokenRecord, TokenError> {
        let record = self
            .store
            .revoke_token(id, self.now_ms())
            .await?
            .ok_or_else(|| TokenError::NotFound(id.to_owned()))?;
        self.forget_all();
        Ok(record)
    }
}
