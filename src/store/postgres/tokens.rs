//! Caller tokens in PostgreSQL (`caller_tokens`): keyed hashes only, each row tagged
//! ([`crate::store::integrity`]). A revocation locks the row it changes.

use super::changes::announce;
use crate::store::Change;
use sqlx::Postgres;

use super::{PgStore, unavailable};
use crate::BoxFuture;
use crate::store::integrity::{checked, tag_of};
use crate::store::rows::{self, json_text};
use crate::store::{StoreResult, TokenRecord, TokenStore};

const TOKEN_COLUMNS: &str =
    "id, hash, principal, groups_json, description, created_at_ms, expires_at_ms, revoked_at_ms, revision, mac";

impl PgStore {
    /// The token whose `column` (`id` or `hash`, both unique) is `value`.
    async fn token_where<'a, T>(&'a self, column: &'static str, value: T) -> StoreResult<Option<TokenRecord>>
    where
        T: 'a + sqlx::Encode<'a, Postgres> + sqlx::Type<Postgres> + Send,
    {
        let sealer = self.sealer()?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE {column} = $1"
        )))
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|row| checked(sealer, rows::token(&row)?, &row)).transpose()
    }
}

impl TokenStore for PgStore {
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let tag = tag_of(self.sealer()?, token);
            sqlx::query(
                "INSERT INTO caller_tokens (id, hash, principal, groups_json, description, created_at_ms, \
                 expires_at_ms, revoked_at_ms, revision, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&token.id)
            .bind(&token.hash)
            .bind(&token.principal)
            .bind(json_text(&token.groups)?)
            .bind(&token.description)
            .bind(token.created_at_ms)
            .bind(token.expires_at_ms)
            .bind(token.revoked_at_ms)
            .bind(token.revision)
            .bind(tag)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn get_token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(self.token_where("id", id))
    }

    fn find_token<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(self.token_where("hash", hash))
    }

    fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(async move {
            let sealer = self.sealer()?;
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE id = $1 FOR UPDATE"
            )))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
            // The stored row is checked before it is changed: an edited row is refused, never
            // re-tagged. A second revocation (here or on another node) keeps the first time.
            let Some(current) = row.map(|row| checked(sealer, rows::token(&row)?, &row)).transpose()? else {
                return Ok(None);
            };
            if current.revoked_at_ms.is_some() {
                return Ok(Some(current));
            }
            let revoked = rows::token_revoked(current, now_ms);
            sqlx::query("UPDATE caller_tokens SET revoked_at_ms = $1, revision = $2, mac = $3 WHERE id = $4")
                .bind(revoked.revoked_at_ms)
                .bind(revoked.revision)
                .bind(tag_of(sealer, &revoked))
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            announce(&mut tx, Change::Tokens).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(Some(revoked))
        })
    }
}
