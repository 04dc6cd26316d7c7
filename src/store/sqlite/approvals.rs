//! Dual control's approval requests in SQLite (`approvals`), each row tagged
//! ([`crate::store::integrity`]); updates are conditional on the row's revision.

use super::{SqliteStore, unavailable};
use crate::BoxFuture;
use crate::store::integrity::{checked, tag_of};
use crate::store::rows;
use crate::store::statements::{self, APPROVAL_COLUMNS};
use crate::store::{ApprovalRecord, ApprovalStore, StoreError, StoreResult};

impl ApprovalStore for SqliteStore {
    fn insert_approval<'a>(&'a self, approval: &'a ApprovalRecord) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let tag = tag_of(self.sealer()?, approval);
            match statements::insert_approval(approval, tag)?
                .query()
                .execute(&self.writer)
                .await
            {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::AlreadyExists),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn get_approval<'a>(&'a self, id: &'a str) -> BoxFuture<'a, StoreResult<Option<ApprovalRecord>>> {
        Box::pin(async move {
            let sealer = self.sealer()?;
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?"
            )))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(unavailable)?;
            row.map(|row| checked(sealer, rows::approval(&row)?, &row)).transpose()
        })
    }

    fn list_approvals(&self, since_ms: i64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ApprovalRecord>>> {
        Box::pin(async move {
            let sealer = self.sealer()?;
            let found = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE created_at_ms >= ? \
                 ORDER BY created_at_ms DESC, id LIMIT ?"
            )))
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(unavailable)?;
            found
                .iter()
                .map(|row| checked(sealer, rows::approval(row)?, row))
                .collect()
        })
    }

    fn update_approval<'a>(&'a self, next: &'a ApprovalRecord) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let tag = tag_of(self.sealer()?, next);
            let done = statements::update_approval(next, tag)?
                .query()
                .execute(&self.writer)
                .await
                .map_err(unavailable)?;
            Ok(done.rows_affected() == 1)
        })
    }
}
