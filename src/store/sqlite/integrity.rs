//! Row integrity in SQLite: the `mac` column of the protected tables, checked on every read
//! and written with every change by the tables' files, through the helpers every backend
//! shares ([`crate::store::integrity`]); the migration that adds the column is
//! [`super::sealing`].

use super::SqliteStore;
use crate::store::integrity::installed;
use crate::store::{RowSealer, StoreResult};

impl SqliteStore {
    /// The sealer set at startup; protected rows neither read nor write without it.
    pub(super) fn sealer(&self) -> StoreResult<&dyn RowSealer> {
        installed(&self.sealer)
    }
}
