//! Contract checks of the audit events: appended in batches, read back exactly (the MAC
//! covers every field, so a store that altered one would break the chain), by range, head,
//! node and query, truncated per node, counted (see the parent module). The MACs are
//! made-up bytes: a store never checks one.

use super::{HOUR_MS, T0};
use crate::model::{AuditEvent, Decision, EventData};
use crate::store::{AuditBatch, AuditFilter, AuditStore, StoreError, StoredEvent};

/// A made-up 32-byte MAC, distinct per node and sequence, with a NUL and a 0xff byte.
fn mac(node: &str, seq: u64) -> Vec<u8> {
    let mut out = vec![0u8, 0xff];
    out.extend((0..30u8).map(|i| i.wrapping_mul(7) ^ (seq as u8) ^ (node.len() as u8)));
    out
}

/// An event of `node` at hour `hour` after [`T0`], with only the fields queries filter on.
fn event(node: &str, seq: u64, hour: i64, principal: &str, action: &str, resource: &str) -> StoredEvent {
    let data = EventData {
        time_ms: T0 + hour * HOUR_MS,
        request_id: format!("req-{node}-{seq}"),
        principal: principal.into(),
        action: action.into(),
        resource: resource.into(),
        outcome: "ok".into(),
        ..Default::default()
    };
    (AuditEvent::new(seq, node, data), mac(node, seq))
}

/// `count` plain events of `node`, sequence 1 on, one an hour.
pub(crate) fn events(node: &str, count: u64) -> Vec<StoredEvent> {
    (1..=count)
        .map(|seq| event(node, seq, seq as i64, "root", "Sign", "key:k"))
        .collect()
}

/// A filter on the given fields; `hours` (since, until) count from [`T0`].
fn filter(
    principal: Option<&str>,
    action: Option<&str>,
    resource: Option<&str>,
    hours: (Option<i64>, Option<i64>),
) -> AuditFilter {
    let at = |h: Option<i64>| h.map(|h| T0 + h * HOUR_MS);
    AuditFilter {
        since_ms: at(hours.0),
        until_ms: at(hours.1),
        principal: principal.map(str::to_owned),
        action: action.map(str::to_owned),
        resource: resource.map(str::to_owned),
    }
}

/// `events` (all of one node) as one append.
fn batch(events: &[StoredEvent]) -> AuditBatch {
    AuditBatch::of(events.first().map_or("node-a", |(e, _)| e.node.as_str()), events)
}

fn seqs(list: &[StoredEvent]) -> Vec<(String, u64)> {
    list.iter().map(|(e, _)| (e.node.clone(), e.seq)).collect()
}

fn at(node: &str, list: &[u64]) -> Vec<(String, u64)> {
    list.iter().map(|seq| (node.to_owned(), *seq)).collect()
}

/// Every field, set and unset, every decision, and text a careless encoding would mangle.
pub(crate) async fn appended_events_read_back_exactly_by_range_and_head(store: &dyn AuditStore) {
    let bare = event("node-a", 1, 1, "-", "ListKeys", "keys");
    let full = EventData {
        time_ms: T0 + 2 * HOUR_MS + 123,
        request_id: "req-\u{7f}-2".into(),
        principal: "päyments \"svc\"".into(),
        action: "ImportKey".into(),
        resource: "key:ключ/1".into(),
        key_version: Some(u32::MAX),
        decision: Decision::Allow,
        policy: Some("admin-all".into()),
        outcome: "ok".into(),
        source_ip: Some("2001:db8::1".into()),
        user_agent: Some("curl/8.5 (🔑)".into()),
        secret_hmac: Some("ab".repeat(32)),
        api: None,
    };
    let full = (AuditEvent::new(2, "node-a", full), mac("node-a", 2));
    let denied = EventData {
        time_ms: T0 + 3 * HOUR_MS,
        request_id: "req-3".into(),
        principal: "mallory".into(),
        action: "Sign".into(),
        resource: "key:k".into(),
        key_version: Some(0),
        decision: Decision::Deny,
        outcome: "PERMISSION_DENIED".into(),
        ..Default::default()
    };
    let denied = (AuditEvent::new(3, "node-a", denied), mac("node-a", 3));
    let mut later = events("node-a", 5);
    let later = later.split_off(3);
    assert_eq!(bare.0.decision, Decision::Undecided);

    store.append_audit(&batch(&[bare.clone(), full.clone()])).await.unwrap();
    store.append_audit(&batch(std::slice::from_ref(&denied))).await.unwrap();
    store.append_audit(&batch(&later)).await.unwrap();
    store.append_audit(&batch(&[])).await.unwrap();

    let mut all = vec![bare, full, denied];
    all.extend(later);
    assert_eq!(store.audit_range("node-a", 0, 100).await.unwrap(), all);
    assert_eq!(store.audit_range("node-a", 2, 2).await.unwrap(), all[2..4].to_vec());
    assert_eq!(store.audit_range("node-a", 4, 100).await.unwrap(), all[4..].to_vec());
    assert_eq!(store.audit_range("node-a", 5, 100).await.unwrap(), vec![]);
    assert_eq!(store.audit_range("node-a", 0, 0).await.unwrap(), vec![]);
    assert_eq!(store.audit_range("node-b", 0, 100).await.unwrap(), vec![]);
    assert_eq!(store.audit_head("node-a").await.unwrap().as_ref(), all.last());
    assert_eq!(store.audit_head("node-b").await.unwrap(), None);
}

pub(crate) async fn audit_nodes_lists_every_node_with_events_in_byte_order(store: &dyn AuditStore) {
    for node in ["node-b", "node_a", "Node-z", "node.a", "node-a"] {
        store.append_audit(&batch(&events(node, 2))).await.unwrap();
    }
    // Byte order: 'N' (0x4e) sorts before 'n'; then '-' < '.' < '_'.
    assert_eq!(
        store.audit_nodes().await.unwrap(),
        ["Node-z", "node-a", "node-b", "node.a", "node_a"]
    );
}

/// A group commit is one transaction: a batch that collides with a stored event leaves
/// nothing of itself behind, and the stored event is not overwritten.
pub(crate) async fn a_batch_with_a_taken_sequence_number_is_refused_whole(store: &dyn AuditStore) {
    let first = events("node-a", 2);
    store.append_audit(&batch(&first)).await.unwrap();
    let clash = vec![
        event("node-a", 3, 3, "mallory", "Sign", "key:k"),
        event("node-a", 2, 9, "mallory", "Sign", "key:k"),
        event("node-a", 4, 4, "mallory", "Sign", "key:k"),
    ];

    let refused = store.append_audit(&batch(&clash)).await;

    assert!(matches!(refused, Err(StoreError::AlreadyExists)), "{refused:?}");
    assert_eq!(store.audit_range("node-a", 0, 100).await.unwrap(), first);
    assert_eq!(store.count_audit(&AuditFilter::default()).await.unwrap(), 2);
}

pub(crate) async fn each_append_ends_one_batch_of_its_node(store: &dyn AuditStore) {
    let a = events("node-a", 8);
    let b = events("node-b", 2);
    // Batches of node-a: 1-3, 4, 5-8 (the last one with node-b's batch in between).
    store.append_audit(&batch(&a[..3])).await.unwrap();
    store.append_audit(&batch(&a[3..4])).await.unwrap();
    store.append_audit(&batch(&b)).await.unwrap();
    store.append_audit(&batch(&a[4..])).await.unwrap();
    assert_eq!(store.audit_batch_ends("node-a", 0).await.unwrap(), vec![3, 4, 8]);
    assert_eq!(
        store.audit_batch_ends("node-a", 3).await.unwrap(),
        vec![4, 8],
        "strictly after"
    );
    assert_eq!(store.audit_batch_ends("node-a", 8).await.unwrap(), Vec::<u64>::new());
    assert_eq!(store.audit_batch_ends("node-b", 0).await.unwrap(), vec![2]);
    assert_eq!(store.audit_batch_ends("node-c", 0).await.unwrap(), Vec::<u64>::new());
    // Taking a batch back removes its end with it.
    store.truncate_audit("node-a", 4).await.unwrap();
    assert_eq!(store.audit_batch_ends("node-a", 0).await.unwrap(), vec![3, 4]);
}

pub(crate) async fn truncate_audit_removes_only_that_nodes_events_after_the_sequence(store: &dyn AuditStore) {
    let a = events("node-a", 5);
    let b = events("node-b", 3);
    store.append_audit(&batch(&a)).await.unwrap();
    store.append_audit(&batch(&b)).await.unwrap();

    store.truncate_audit("node-a", 3).await.unwrap();
    assert_eq!(store.audit_range("node-a", 0, 100).await.unwrap(), a[..3].to_vec());
    assert_eq!(store.audit_head("node-a").await.unwrap().as_ref(), a.get(2));
    assert_eq!(
        store.audit_range("node-b", 0, 100).await.unwrap(),
        b,
        "other nodes untouched"
    );

    store.truncate_audit("node-a", 10).await.unwrap();
    assert_eq!(
        store.audit_range("node-a", 0, 100).await.unwrap().len(),
        3,
        "nothing after 10"
    );
    store.truncate_audit("node-c", 0).await.unwrap();

    store.truncate_audit("node-a", 0).await.unwrap();
    assert_eq!(store.audit_head("node-a").await.unwrap(), None);
    assert_eq!(store.audit_nodes().await.unwrap(), ["node-b"]);
    // The writer retries a batch it took back: the same sequence numbers go in again.
    store.append_audit(&batch(&a[..2])).await.unwrap();
    assert_eq!(store.audit_range("node-a", 0, 100).await.unwrap(), a[..2].to_vec());
}

pub(crate) async fn query_audit_matches_each_filter_field(store: &dyn AuditStore) {
    let principals = ["alice", "bob"];
    let actions = ["Sign", "Verify", "Rotate"];
    let trail: Vec<StoredEvent> = (1..=6u64)
        .map(|seq| {
            let i = seq as usize;
            let principal = principals.get(i % 2).copied().unwrap_or("alice");
            let action = actions.get(i % 3).copied().unwrap_or("Sign");
            let resource = if seq <= 3 { "key:a" } else { "key:b" };
            event("node-a", seq, seq as i64, principal, action, resource)
        })
        .collect();
    store.append_audit(&batch(&trail)).await.unwrap();
    let any = None;
    let cases: Vec<(AuditFilter, Vec<u64>)> = vec![
        (filter(any, any, any, (None, None)), vec![1, 2, 3, 4, 5, 6]),
        (filter(Some("alice"), any, any, (None, None)), vec![2, 4, 6]),
        (filter(any, Some("Rotate"), any, (None, None)), vec![2, 5]),
        (filter(any, any, Some("key:b"), (None, None)), vec![4, 5, 6]),
        // `since` is inclusive, `until` exclusive.
        (filter(any, any, any, (Some(3), None)), vec![3, 4, 5, 6]),
        (filter(any, any, any, (None, Some(3))), vec![1, 2]),
        (filter(any, any, any, (Some(2), Some(2))), vec![]),
        (
            filter(Some("alice"), Some("Sign"), Some("key:b"), (Some(2), Some(6))),
            vec![],
        ),
        (filter(Some("bob"), any, Some("key:a"), (Some(2), None)), vec![3]),
        // Values are compared exactly, never interpreted.
        (filter(Some("alice' OR '1'='1"), any, any, (None, None)), vec![]),
        (filter(Some("ALICE"), any, any, (None, None)), vec![]),
        (filter(any, any, Some("key:%"), (None, None)), vec![]),
    ];
    for (filter, expected) in cases {
        let found = store.query_audit(&filter, None, 100).await.unwrap();
        assert_eq!(seqs(&found), at("node-a", &expected), "{filter:?}");
        assert_eq!(
            store.count_audit(&filter).await.unwrap(),
            expected.len() as u64,
            "{filter:?}"
        );
    }
}

pub(crate) async fn query_audit_pages_in_node_then_sequence_order_after_a_cursor(store: &dyn AuditStore) {
    store.append_audit(&batch(&events("node-b", 3))).await.unwrap();
    store.append_audit(&batch(&events("node-a", 3))).await.unwrap();
    let all = AuditFilter::default();
    let page = |after: Option<(&'static str, u64)>, limit: u32| {
        let all = all.clone();
        async move { seqs(&store.query_audit(&all, after, limit).await.unwrap()) }
    };

    let mut first = at("node-a", &[1, 2, 3]);
    first.extend(at("node-b", &[1]));
    assert_eq!(page(None, 4).await, first);
    assert_eq!(page(Some(("node-a", 3)), 4).await, at("node-b", &[1, 2, 3]));
    assert_eq!(page(Some(("node-a", 1)), 1).await, at("node-a", &[2]));
    assert_eq!(page(Some(("node-b", 3)), 4).await, vec![]);
    // A cursor need not name a stored event: "node-aa" sorts between the two nodes.
    assert_eq!(page(Some(("node-aa", 0)), 10).await, at("node-b", &[1, 2, 3]));
    assert_eq!(page(Some(("node-a", 0)), 2).await, at("node-a", &[1, 2]));
    assert_eq!(page(None, 0).await, vec![]);

    // A cursor and a filter together.
    let late = AuditFilter {
        since_ms: Some(T0 + 2 * HOUR_MS),
        ..Default::default()
    };
    let found = store.query_audit(&late, Some(("node-a", 2)), 3).await.unwrap();
    let mut expected = at("node-a", &[3]);
    expected.extend(at("node-b", &[2, 3]));
    assert_eq!(seqs(&found), expected);
}

pub(crate) async fn count_audit_counts_what_query_audit_returns(store: &dyn AuditStore) {
    // Two nodes, an event an hour, alternating principals; the MACs are made-up bytes.
    for node in ["node-a", "node-b"] {
        let events: Vec<_> = (1..=6u64)
            .map(|seq| {
                let data = EventData {
                    time_ms: T0 + (seq as i64) * HOUR_MS,
                    principal: if seq % 2 == 0 { "alice" } else { "bob" }.into(),
                    action: "Sign".into(),
                    resource: "key:k".into(),
                    outcome: "ok".into(),
                    ..Default::default()
                };
                (AuditEvent::new(seq, node, data), vec![seq as u8; 32])
            })
            .collect();
        store.append_audit(&batch(&events)).await.unwrap();
    }
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            since_ms: Some(T0 + 2 * HOUR_MS),
            until_ms: Some(T0 + 5 * HOUR_MS),
            ..Default::default()
        },
        AuditFilter {
            principal: Some("alice".into()),
            since_ms: Some(T0 + 3 * HOUR_MS),
            ..Default::default()
        },
        AuditFilter {
            action: Some("Rotate".into()),
            ..Default::default()
        },
    ];

    let counts: Vec<u64> = {
        let mut out = Vec::new();
        for filter in &filters {
            out.push(store.count_audit(filter).await.unwrap());
        }
        out
    };

    // `since` is inclusive, `until` exclusive: hours 2, 3 and 4 of each node.
    assert_eq!(counts, vec![12, 6, 4, 0]);
    for (filter, count) in filters.iter().zip(&counts) {
        let listed = store.query_audit(filter, None, 1000).await.unwrap();
        assert_eq!(listed.len() as u64, *count, "{filter:?}");
    }
}

pub(crate) async fn audit_counts_by_principal_counts_every_node_by_principal(store: &dyn AuditStore) {
    store
        .append_audit(&batch(&[
            event("node-a", 1, 1, "alice", "Sign", "key:k"),
            event("node-a", 2, 2, "bob", "Sign", "key:k"),
            event("node-a", 3, 3, "alice", "Verify", "key:k"),
        ]))
        .await
        .unwrap();
    store
        .append_audit(&batch(&[
            event("node-b", 1, 1, "-", "GetKey", "key:k"),
            event("node-b", 2, 2, "alice", "Sign", "key:k"),
            event("node-b", 3, 3, "-", "GetKey", "key:k"),
        ]))
        .await
        .unwrap();

    let counts = store.audit_counts_by_principal().await.unwrap();

    // In principal byte order: '-' sorts before letters.
    assert_eq!(counts, vec![("-".into(), 2), ("alice".into(), 3), ("bob".into(), 1)]);
}

/// An append of more events than a store may keep together (the SQLite store keeps rows of
/// a few hundred): read back whole and from any point, queried across its parts, taken back
/// to a point inside it.
pub(crate) async fn a_long_append_reads_back_whole_from_any_point_and_truncates_inside_it(store: &dyn AuditStore) {
    const N: u64 = 1300;
    let trail: Vec<StoredEvent> = (1..=N)
        .map(|seq| {
            let principal = if seq % 100 == 0 { "rare" } else { "root" };
            event("node-a", seq, seq as i64, principal, "Sign", "key:k")
        })
        .collect();
    store.append_audit(&batch(&trail)).await.unwrap();
    store.append_audit(&batch(&events("node-b", 2))).await.unwrap();

    assert_eq!(store.audit_range("node-a", 0, 5000).await.unwrap(), trail);
    for after in [1, 511, 512, 513, 700, 1023, 1024, 1299] {
        assert_eq!(
            store.audit_range("node-a", after, 3).await.unwrap(),
            trail[after as usize..(after as usize + 3).min(N as usize)].to_vec(),
            "after {after}"
        );
    }
    assert_eq!(store.audit_head("node-a").await.unwrap().as_ref(), trail.last());
    assert_eq!(store.audit_batch_ends("node-a", 0).await.unwrap(), vec![N]);
    let rare = filter(Some("rare"), None, None, (None, None));
    let rare_seqs: Vec<u64> = (1..=13).map(|i| i * 100).collect();
    assert_eq!(
        seqs(&store.query_audit(&rare, None, 100).await.unwrap()),
        at("node-a", &rare_seqs)
    );
    assert_eq!(store.count_audit(&rare).await.unwrap(), 13);
    let window = filter(None, None, None, (Some(1020), Some(1030)));
    let found = store.query_audit(&window, Some(("node-a", 1024)), 3).await.unwrap();
    assert_eq!(seqs(&found), at("node-a", &[1025, 1026, 1027]));
    assert_eq!(store.count_audit(&window).await.unwrap(), 10);

    store.truncate_audit("node-a", 600).await.unwrap();
    assert_eq!(
        store.audit_range("node-a", 0, 5000).await.unwrap(),
        trail[..600].to_vec()
    );
    assert_eq!(store.audit_head("node-a").await.unwrap().as_ref(), trail.get(599));
    assert_eq!(store.count_audit(&rare).await.unwrap(), 6);
    assert_eq!(
        store.audit_batch_ends("node-a", 0).await.unwrap(),
        Vec::<u64>::new(),
        "the cut append no longer ends there"
    );
    // The events after the cut go in again.
    store.append_audit(&batch(&trail[600..])).await.unwrap();
    assert_eq!(store.audit_range("node-a", 0, 5000).await.unwrap(), trail);
    assert!(matches!(
        store.append_audit(&batch(&trail[599..601])).await,
        Err(StoreError::AlreadyExists)
    ));
}
