//! Caller tokens in PostgreSQL (`caller_tokens`): keyed hashes only, each row tagged
//! ([`crate::store::integrity`]). A revocation locks the row it changes.

use super::changes::announce;
use crate::store::Change;
use sqlx::Postgres;

use super::{PgStore, timed, unavailable};
use crate::BoxFuture;
use crate::store::integrity::{checked, tag_of};
use crate::store::rows;
use crate::store::statements::{self, TOKEN_COLUMNS};
use crate::store::{StoreResult, TokenRecord, TokenStore};

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
        Box::pin(timed(async move {
            let tag = tag_of(self.sealer()?, token);
            statements::insert_token(token, tag)?
                .query()
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        }))
    }

    fn get_token<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(timed(self.token_where("id", id)))
    }

    fn find_token<'a>(&'a self, hash: &'a [u8]) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(timed(self.token_where("hash", hash)))
    }

    fn revoke_token<'a>(&'a self, id: &'a str, now_ms: i64) -> BoxFuture<'a, StoreResult<Option<TokenRecord>>> {
        Box::pin(timed(async move {
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
            statements::update_token_revoked(&revoked, tag_of(sealer, &revoked))
                .query()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            announce(&mut tx, Change::Tokens).await?;
            tx.commit().await.map_err(unavailable)?;
            Ok(Some(revoked))
        }))
    }
}
