//! Contract checks of approval requests: stored and read back whole, listed newest first
//! from a time, and updated only over the revision the writer read, so of two writers that
//! read the same row exactly one succeeds (see the parent module).

use super::{HOUR_MS, T0};
use crate::store::{ApprovalRecord, ApprovalStore, StoreError};

fn approval(id: &str, created_at_ms: i64) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        action: "ExportKey".into(),
        resource: "key:payments".into(),
        reason: "ticket CHG-1".into(),
        requested_by: "alice".into(),
        requester_counts: true,
        approvers: Vec::new(),
        created_at_ms,
        expires_at_ms: created_at_ms + HOUR_MS,
        used_at_ms: None,
        revision: 0,
    }
}

pub(crate) async fn approvals_are_kept_whole_and_updated_only_over_the_revision_read(store: &dyn ApprovalStore) {
    let first = approval("apr_1", T0);
    assert_eq!(store.get_approval("apr_1").await.unwrap(), None);
    store.insert_approval(&first).await.unwrap();
    assert_eq!(store.get_approval("apr_1").await.unwrap().as_ref(), Some(&first));
    assert!(matches!(
        store.insert_approval(&first).await,
        Err(StoreError::AlreadyExists)
    ));
    store.insert_approval(&approval("apr_2", T0 + 10)).await.unwrap();
    store.insert_approval(&approval("apr_0", T0 - HOUR_MS)).await.unwrap();
    let listed: Vec<String> = store
        .list_approvals(T0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(listed, ["apr_2", "apr_1"], "newest first, none older than since");
    assert_eq!(store.list_approvals(T0, 1).await.unwrap().len(), 1, "limit");

    // Two writers read revision 0; the first update wins, the second changes nothing.
    let approved = ApprovalRecord {
        approvers: vec!["bob".into()],
        revision: 1,
        ..first.clone()
    };
    let used = ApprovalRecord {
        used_at_ms: Some(T0 + 5),
        revision: 1,
        ..first.clone()
    };
    assert!(store.update_approval(&approved).await.unwrap());
    assert!(!store.update_approval(&used).await.unwrap(), "stale revision");
    assert_eq!(store.get_approval("apr_1").await.unwrap().as_ref(), Some(&approved));
    let used = ApprovalRecord {
        used_at_ms: Some(T0 + 5),
        revision: 2,
        ..approved.clone()
    };
    assert!(store.update_approval(&used).await.unwrap());
    assert_eq!(store.get_approval("apr_1").await.unwrap().as_ref(), Some(&used));
    let ghost = ApprovalRecord {
        id: "apr_none".into(),
        revision: 1,
        ..first
    };
    assert!(!store.update_approval(&ghost).await.unwrap(), "no such row");
}
