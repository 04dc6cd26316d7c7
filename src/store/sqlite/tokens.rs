//! Caller tokens in SQLite (`caller_tokens`): keyed hashes only.

use sqlx::Sqlite;
use sqlx::sqlite::SqliteRow;

use super::row::{column, json_column, json_text};
use super::{SqliteStore, unavailable};
use crate::BoxFuture;
use crate::store::{StoreResult, TokenRecord, TokenStore};

const TOKEN_COLUMNS: &str =
    "id, hash, principal, groups_json, description, created_at_ms, expires_at_ms, revoked_at_ms";

fn token_from_row(row: &SqliteRow) -> StoreResult<TokenRecord> {
    Ok(TokenRecord {
        id: column(row, "id")?,
        hash: column(row, "hash")?,
        principal: column(row, "principal")?,
        groups: json_column(row, "groups_json")?,
        description: column(row, "description")?,
        created_at_ms: column(row, "created_at_ms")?,
        expires_at_ms: column(row, "expires_at_ms")?,
        revoked_at_ms: column(row, "revoked_at_ms")?,
    })
}

impl SqliteStore {
    /// The token whose `column` (`id` or `hash`, both unique) is `value`.
    async fn token_where<'a, T>(&'a self, column: &'static str, value: T) -> StoreResult<Option<TokenRecord>>
    where
        T: 'a + sqlx::Encode<'a, Sqlite> + sqlx::Type<Sqlite> + Send,
    {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE {column} = ?"
        )))
        .bind(value)
        .fetch_optional(&self.reader)
        .await
        .map_err(unavailable)?
        .as_ref()
        .map(token_from_row)
        .transpose()
    }
}

impl TokenStore for SqliteStore {
    fn insert_token<'a>(&'a self, token: &'a TokenRecord) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO caller_tokens (id, hash, principal, groups_json, description, created_at_ms, \
                 expires_at_ms, revoked_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&token.id)
            .bind(&token.hash)
            .bind(&token.principal)
            .bind(json_text(&token.groups)?)
            .bind(&token.description)
            .bind(token.created_at_ms)
            .bind(token.expires_at_ms)
            .bind(token.revoked_at_ms)
            .execute(&self.writer)
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
            sqlx::query("UPDATE caller_tokens SET revoked_at_ms = ? WHERE id = ? AND revoked_at_ms IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.writer)
                .await
                .map_err(unavailable)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {TOKEN_COLUMNS} FROM caller_tokens WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(&self.writer)
            .await
            .map_err(unavailable)?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }
}
