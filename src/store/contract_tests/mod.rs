//! The one test body every store backend must pass: checks of every concern's interface
//! ([`KeyStore`](super::KeyStore), [`TokenStore`](super::TokenStore),
//! [`CredentialStore`](super::CredentialStore), [`ApiKeyStore`](super::ApiKeyStore),
//! [`AuditStore`](super::AuditStore), [`SystemStore`](super::SystemStore)).
//!
//! Each `pub(crate) async fn` checks one behaviour through the interface it is about, on a
//! fresh, empty store, so a backend cannot pass by being special-cased. A backend runs all
//! of them with [`store_contract_tests!`], naming its own fixture:
//!
//! ```ignore
//! // in the backend's test module
//! async fn fresh_postgres_store() -> Fixture { /* an empty database, and what holds it */ }
//! crate::store::contract_tests::store_contract_tests!(postgres, fresh_postgres_store);
//! ```
//!
//! SQLite does so in `store::sqlite::tests`, next to the checks only it can make (its file,
//! its pragmas, rows written behind its back).
//!
//! The checks pin what the interfaces leave implicit, so every backend agrees on it: names,
//! ids and nodes sort by bytes (a PostgreSQL store needs `COLLATE "C"`), `add_version`
//! stamps `updated_at_ms` with the new version's creation time, every enum value and JSON
//! shape reads back as written, and a refused write leaves nothing behind.
//!
//! Nothing here may hold real key material: the sealed records are made-up bytes.

mod api_key_usage;
mod api_keys;
mod approvals;
mod audit;
mod credentials;
mod kek;
mod key_maintenance;
mod keys;
mod system;
mod tokens;

use std::sync::Arc;

use super::Store;
use crate::envelope::SealedRecord;

/// 2026-01-01T00:00:00Z in Unix milliseconds.
pub(crate) const T0: i64 = 1_767_225_600_000;
pub(crate) const HOUR_MS: i64 = 3_600_000;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;

/// Runs every contract check as its own `#[tokio::test]` in a module named `$backend`.
/// `$fresh` names an `async fn() -> Fixture` that returns an empty store; it is resolved in
/// the invoking module. The list below is every check there is: a new check goes here, and
/// so runs on every backend.
macro_rules! store_contract_tests {
    ($backend:ident, $fresh:path) => {
        $crate::store::contract_tests::store_contract_tests!(@each $backend, $fresh,
            a_fresh_store_is_empty,
            // keys
            create_then_get_returns_the_same_record,
            every_algorithm_state_and_prior_state_reads_back_as_written,
            a_duplicate_name_is_already_exists,
            list_keys_pages_in_name_order_after_a_cursor,
            add_version_bumps_latest_and_revision_and_refuses_a_stale_revision,
            update_key_writes_only_mutable_settings_and_refuses_a_stale_revision,
            update_key_clears_the_deletion_settings_on_restore,
            get_sealed_returns_the_exact_record,
            destroy_key_removes_every_version_unless_the_row_changed,
            keys_due_for_deletion_returns_only_pending_keys_past_their_date,
            auto_rotating_keys_reports_latest_version_creation_time,
            add_usage_accumulates_and_keeps_the_latest_last_used,
            add_usage_ignores_unknown_versions,
            // tokens
            tokens_are_found_by_id_and_by_hash_and_revoked_once,
            approvals_are_kept_whole_and_updated_only_over_the_revision_read,
            token_groups_read_back_in_order_and_may_be_empty,
            // credentials
            credentials_are_limited_per_principal_and_listed_in_id_order,
            every_credential_state_and_fingerprint_rule_reads_back_as_written,
            update_credential_changes_only_what_the_patch_names,
            credential_activity_adds_up_keeps_the_latest_and_the_most_recent_fingerprints,
            // API keys
            api_keys_are_found_by_hash_read_by_id_and_listed_in_id_order,
            every_api_key_state_meta_and_permission_list_reads_back_as_written,
            every_api_key_fingerprint_rule_reads_back_as_written,
            update_api_key_changes_only_what_the_patch_names_and_leaves_a_revoked_key_unchanged,
            revoke_api_key_deletes_every_hash_and_keeps_the_first_revocation_time,
            reroll_api_key_keeps_the_old_hash_until_its_grace_end_and_replaces_an_earlier_one,
            consume_api_key_credit_counts_down_to_zero_and_never_below,
            api_key_activity_moves_last_use_forward_and_keeps_the_most_recent_fingerprints,
            // audit
            appended_events_read_back_exactly_by_range_and_head,
            audit_nodes_lists_every_node_with_events_in_byte_order,
            a_batch_with_a_taken_sequence_number_is_refused_whole,
            truncate_audit_removes_only_that_nodes_events_after_the_sequence,
            each_append_ends_one_batch_of_its_node,
            query_audit_matches_each_filter_field,
            query_audit_pages_in_node_then_sequence_order_after_a_cursor,
            count_audit_counts_what_query_audit_returns,
            audit_counts_by_principal_counts_every_node_by_principal,
            a_long_append_reads_back_whole_from_any_point_and_truncates_inside_it,
            // system
            insert_system_secret_keeps_the_first_one,
            put_value_overwrites,
            an_empty_value_is_stored_and_is_not_a_missing_one,
            ping_and_checkpoint_succeed_and_a_destroyed_key_stays_gone,
            // KEKs
            sealed_records_are_counted_listed_and_moved_by_kek,
        );
    };
    (@each $backend:ident, $fresh:path, $($check:ident),+ $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let fixture = $fresh().await;
                    $crate::store::contract_tests::$check(&*fixture.store).await;
                }
            )+
        }
    };
}
pub(crate) use store_contract_tests;

pub(crate) use api_key_usage::*;
pub(crate) use api_keys::*;
pub(crate) use approvals::*;
pub(crate) use audit::*;
pub(crate) use credentials::*;
pub(crate) use kek::*;
pub(crate) use key_maintenance::*;
pub(crate) use keys::*;
pub(crate) use system::*;
pub(crate) use tokens::*;

/// An empty store for one test and whatever it lives in. `store` is declared first so it
/// is dropped (its connections closed) before `_home` is torn down.
pub(crate) struct Fixture {
    pub(crate) store: Arc<dyn Store>,
    _home: Box<dyn std::any::Any>,
}

impl Fixture {
    pub(crate) fn new(store: Arc<dyn Store>, home: impl std::any::Any) -> Self {
        Self {
            store,
            _home: Box::new(home),
        }
    }
}

/// The sealer of the backends' tests: a fixed key, as the vault's would be after its KEK
/// opened it.
pub(crate) fn test_sealer() -> Arc<crate::integrity::RowIntegrity> {
    Arc::new(crate::integrity::RowIntegrity::new(
        crate::secret::SecretBytes::from_slice(&[7u8; 32]),
    ))
}

/// A plausible sealed record: an RFC 5649-wrapped 32-byte DEK (40 bytes), a 12-byte nonce
/// and a 32-byte secret plus its 16-byte tag. `seed` makes each record distinct; seed 0
/// starts with NUL bytes, which a text column would mangle.
pub(crate) fn sealed(seed: u8) -> SealedRecord {
    let bytes = |len: u8, step: u8| (0..len).map(|i| seed.wrapping_add(i.wrapping_mul(step))).collect();
    SealedRecord {
        format: 1,
        kek_id: format!("pkcs11:sigvault-kek:{}", 1 + seed % 3),
        wrapped_dek: bytes(40, 7),
        nonce: bytes(12, 13),
        ciphertext: bytes(48, 29),
    }
}

/// A fresh store holds nothing in any concern.
pub(crate) async fn a_fresh_store_is_empty(store: &dyn Store) {
    store.ping().await.unwrap();
    assert_eq!(store.list_keys(None, 100).await.unwrap(), vec![]);
    assert_eq!(store.get_key("payments-webhook").await.unwrap(), None);
    assert_eq!(store.keys_due_for_deletion(i64::MAX).await.unwrap(), vec![]);
    assert_eq!(store.auto_rotating_keys().await.unwrap(), vec![]);
    assert_eq!(store.find_token(&[0; 32]).await.unwrap(), None);
    assert_eq!(store.list_credentials(None, None, 100).await.unwrap(), vec![]);
    assert_eq!(store.list_api_keys(None, 100).await.unwrap(), vec![]);
    assert_eq!(store.find_api_key(&[0; 32]).await.unwrap(), None);
    assert_eq!(store.audit_nodes().await.unwrap(), Vec::<String>::new());
    assert_eq!(store.audit_head("node-a").await.unwrap(), None);
    assert_eq!(store.count_audit(&Default::default()).await.unwrap(), 0);
    assert_eq!(store.audit_counts_by_principal().await.unwrap(), vec![]);
    assert_eq!(store.get_system_secret("token_pepper").await.unwrap(), None);
    assert_eq!(store.get_value("root_token_hash").await.unwrap(), None);
}
