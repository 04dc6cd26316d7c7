//! Offline administration on data dirs written here.

use super::*;

fn report(ok: bool, checked: u64, bad: Option<u64>) -> Report {
    Report {
        ok,
        checked,
        first_bad_seq: bad,
        reason: bad.map(|seq| format!("broken at {seq}")),
        unanchored: 0,
    }
}

#[test]
fn the_whole_trail_fails_with_its_first_failing_node_and_counts_every_node() {
    let v = Verification::of(vec![
        NodeReport {
            node: "a".into(),
            report: report(true, 10, None),
        },
        NodeReport {
            node: "b".into(),
            report: report(false, 4, Some(3)),
        },
    ]);
    assert!(!v.report.ok);
    assert_eq!((v.report.checked, v.report.first_bad_seq), (14, Some(3)));
    assert_eq!(v.node.as_deref(), Some("b"));
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["first_bad_seq"], 3);
    assert_eq!(json["reason"], "broken at 3");
    assert_eq!(json["nodes"][0]["node"], "a");
    assert_eq!(json["nodes"][0]["checked"], 10);
    assert!(json["nodes"][0].get("first_bad_seq").is_none());
}

#[test]
fn an_intact_trail_names_no_node() {
    let v = Verification::of(vec![NodeReport {
        node: "a".into(),
        report: report(true, 3, None),
    }]);
    let json = serde_json::to_value(&v).unwrap();
    assert_eq!(json["ok"], true);
    assert!(json.get("node").is_none() && json.get("reason").is_none());
}

#[test]
fn a_trail_with_events_but_no_audit_key_fails_at_its_first_event() {
    let nodes: BTreeSet<String> = ["a".to_owned()].into();
    let v = without_audit_key(nodes.clone(), true);
    assert_eq!((v.report.ok, v.report.first_bad_seq), (false, Some(1)));
    let v = without_audit_key(nodes, false);
    assert_eq!((v.report.ok, v.report.checked), (true, 0));
}

#[test]
fn the_window_includes_since_excludes_until_and_refuses_a_reversed_one() {
    let t = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
    let filter = time_window(Some(t(10)), Some(t(20))).unwrap();
    assert_eq!((filter.since_ms, filter.until_ms), (Some(10_000), Some(20_000)));
    assert_eq!(time_window(None, None).unwrap(), AuditFilter::default());
    assert!(matches!(
        time_window(Some(t(20)), Some(t(10))),
        Err(AdminError::Window { .. })
    ));
}

#[test]
fn sink_files_name_their_nodes_and_a_missing_one_is_empty() {
    let dir = std::env::temp_dir().join(format!("sv-admin-nodes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let anchors = dir.join("audit.anchor");
    std::fs::write(&anchors, "n1 3 00ff\nnot an anchor\n\nn2 1 01\n").unwrap();
    let node_of = |line: &str| sink::parse_anchor(line).map(|(node, _)| node);

    let (nodes, any) = nodes_in(&anchors, &node_of).unwrap();
    assert_eq!(nodes.into_iter().collect::<Vec<_>>(), vec!["n1", "n2"]);
    assert!(any);
    assert_eq!(
        nodes_in(&dir.join("missing"), &node_of).unwrap(),
        (BTreeSet::new(), false)
    );
    assert_eq!(
        nodes_in(Path::new("/dev/null"), &node_of).unwrap(),
        (BTreeSet::new(), false)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
