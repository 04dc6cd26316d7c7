//! Two nodes on one PostgreSQL database (two apps, each with its own data dir, audit chain
//! and clock, sharing the HSM token and the database): what one node changes, the other
//! sees at once while announcements flow, and within `cache.max_staleness` when they do
//! not; what the database decides (credits) holds across both. These run on PostgreSQL
//! whichever store the rest of the suite runs on (`scripts/postgres.sh` provides one).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use sigvault::ratelimit::{Backend, RateLimitSettings, RedisUrl};

use crate::apikeys::{code, create as create_api_key, verify as verify_api_key};
use crate::helpers::{AppHome, TestApp, eventually, fresh_postgres_database, spawn_app_in, temp_dir};
use crate::sigv4::{ToSign, create_credential, now, sign_with, verify as verify_sigv4};

/// Node A and node B on a fresh database.
async fn two_nodes() -> (TestApp, TestApp) {
    two_nodes_with(RateLimitSettings::default()).await
}

/// As [`two_nodes`], with rate limits counted as `ratelimit` says.
async fn two_nodes_with(ratelimit: RateLimitSettings) -> (TestApp, TestApp) {
    two_nodes_from(AppHome {
        ratelimit,
        ..AppHome::new()
    })
    .await
}

/// Two nodes on one new database, both with `home`'s settings: their own data dirs and
/// audit nodes.
pub(crate) async fn two_nodes_from(home: AppHome) -> (TestApp, TestApp) {
    let a = AppHome {
        postgres_url: Some(fresh_postgres_database()),
        node: "node-a".into(),
        ..home
    };
    let b = AppHome {
        data_dir: temp_dir("node-b"),
        node: "node-b".into(),
        audit_file: None,
        anchor_file: None,
        ..a.clone()
    };
    let a = spawn_app_in(a).await;
    let b = spawn_app_in(b).await;
    (a, b)
}

/// Polls `check` for up to 10 s of real time, well under the staleness bound, which the
/// nodes' manual clocks never reach unless a test advances them: what holds within it was
/// heard, not re-read on expiry.
async fn within_notification_time<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually(what, 10, check).await;
}

async fn signing_version(app: &TestApp, name: &str) -> Option<u64> {
    let r = app
        .post(&format!("/v1/keys/{name}/sign"), json!({"message": "aGVsbG8="}))
        .await;
    (r.status == StatusCode::OK).then(|| r.body["key_version"].as_u64().expect("a version"))
}

#[tokio::test]
async fn a_key_made_on_one_node_signs_on_the_other_and_its_rotation_and_disabling_reach_it() {
    let (a, b) = two_nodes().await;
    a.create_key("shared").await;
    let (signature, version) = b.sign("shared", b"hello").await;
    assert_eq!(version, 1);
    let r = a.verify("shared", b"hello", &signature).await;
    assert_eq!(r.body["valid"], true, "A verifies what B signed: {}", r.body);

    let r = a.post("/v1/keys/shared/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within_notification_time("the rotation", || async {
        signing_version(&b, "shared").await == Some(2)
    })
    .await;

    let r = a.patch("/v1/keys/shared", json!({"state": "disabled"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within_notification_time("the disabling", || async {
        signing_version(&b, "shared").await.is_none()
    })
    .await;
    let r = b.post("/v1/keys/shared/sign", json!({"message": "aGVsbG8="})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
}

async fn whoami(app: &TestApp, token: &str) -> StatusCode {
    app.send(reqwest::Method::GET, "/v1/auth/whoami", Some(token), None)
        .await
        .status
}

#[tokio::test]
async fn a_caller_token_revoked_and_a_credential_deactivated_on_one_node_are_refused_on_the_other() {
    let (a, b) = two_nodes().await;
    let r = a
        .post(
            "/v1/auth/tokens",
            json!({"principal": "payments", "groups": ["service"]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let token = r.body["token"].as_str().expect("token").to_owned();
    assert_eq!(whoami(&b, &token).await, StatusCode::OK, "B knows A's token");
    let r = a.delete(&format!("/v1/auth/tokens/{id}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within_notification_time("the revocation", || async {
        whoami(&b, &token).await == StatusCode::UNAUTHORIZED
    })
    .await;

    let (access_key_id, secret) = create_credential(&a, "payments").await;
    let signed = sign_with(&access_key_id, &secret, &ToSign::get("/orders", now(&b)));
    assert_eq!(
        verify_sigv4(&b, &signed).await["valid"],
        true,
        "B verifies with A's credential"
    );
    let r = a
        .patch(
            &format!("/v1/credentials/{access_key_id}"),
            json!({"state": "inactive"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within_notification_time("the deactivation", || async {
        verify_sigv4(&b, &signed).await["valid"] == false
    })
    .await;
}

#[tokio::test]
async fn credits_spent_on_both_nodes_at_once_are_spent_exactly_once() {
    let (a, b) = two_nodes().await;
    let issued = create_api_key(&a, json!({"principal": "acme-ci", "remaining": 10})).await;
    let mut verifications = Vec::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        verifications.push(verify_api_key(node, &issued.key));
    }
    let results = futures_util::future::join_all(verifications).await;
    let valid = results.iter().filter(|v| code(v) == "VALID").count();
    let spent = results.iter().filter(|v| code(v) == "USAGE_EXCEEDED").count();
    assert_eq!((valid, spent), (10, 10), "{results:?}");
}

/// The listener connections of the nodes on the database `url` names.
async fn listeners(url: &str) -> i64 {
    let db = url.rsplit_once('/').expect("a database").1.to_owned();
    let admin = crate::helpers::postgres_admin_url();
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin connection");
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'sigvault-changes'",
    )
    .bind(db)
    .fetch_one(&mut conn)
    .await
    .expect("count listeners")
}

#[tokio::test]
async fn with_its_notifications_cut_a_node_still_sees_a_rotation_within_the_staleness_bound_and_listens_again() {
    let (a, b) = two_nodes().await;
    let url = a.home.postgres_url.clone().expect("on PostgreSQL");
    a.create_key("shared").await;
    assert_eq!(signing_version(&b, "shared").await, Some(1));
    within_notification_time("both listeners", || async { listeners(&url).await == 2 }).await;

    let admin = crate::helpers::postgres_admin_url();
    let db = url.rsplit_once('/').expect("a database").1.to_owned();
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("admin connection");
        let cut: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'sigvault-changes'",
        )
        .bind(&db)
        .fetch_all(&mut conn)
        .await
        .expect("terminate the listeners");
        assert_eq!(cut, vec![true, true], "both listeners cut");
    }
    let r = a.post("/v1/keys/shared/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Whether or not B heard anything, its copy is at most `cache.max_staleness` (5 s) old.
    b.clock.advance(time::Duration::seconds(5));
    assert_eq!(
        signing_version(&b, "shared").await,
        Some(2),
        "within the staleness bound"
    );

    within_notification_time("the listeners' return", || async { listeners(&url).await == 2 }).await;
    let r = a.post("/v1/keys/shared/rotate", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    within_notification_time("the rotation after the listener came back", || async {
        signing_version(&b, "shared").await == Some(3)
    })
    .await;
}

#[tokio::test]
async fn with_redis_a_rate_limit_counts_across_both_nodes() {
    let url = std::env::var("SIGVAULT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // A namespace of this test's own: other runs on the same Redis count elsewhere.
    let namespace = format!("test-{}", crate::helpers::unique("cluster").replace(['/', ' '], "-"));
    let (a, b) = two_nodes_with(RateLimitSettings {
        backend: Backend::Redis {
            url: RedisUrl::new(url),
            namespace,
        },
        ..RateLimitSettings::default()
    })
    .await;
    let issued = create_api_key(
        &a,
        json!({"principal": "acme-ci", "ratelimit": {"limit": 5, "period": "10s"}}),
    )
    .await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        codes.push(code(&verify_api_key(node, &issued.key).await).to_owned());
    }
    let valid = codes.iter().filter(|c| *c == "VALID").count();
    let limited = codes.iter().filter(|c| *c == "RATE_LIMITED").count();
    assert_eq!((valid, limited), (5, 5), "{codes:?}");

    // Each node alone would have let five through: the count is shared, not per node.
    let (c, d) = two_nodes().await;
    let local = create_api_key(
        &c,
        json!({"principal": "acme-ci", "ratelimit": {"limit": 5, "period": "10s"}}),
    )
    .await;
    let mut local_valid = 0;
    for i in 0..10 {
        let node = if i % 2 == 0 { &c } else { &d };
        if code(&verify_api_key(node, &local.key).await) == "VALID" {
            local_valid += 1;
        }
    }
    assert_eq!(local_valid, 10, "without Redis each node counts its own five");
}

/// `sigvault audit verify`'s work (the library call the command makes) on node A's
/// settings, once both nodes stopped.
async fn verify_cluster(home: &AppHome) -> sigvault::admin::Verification {
    let vault = sigvault::admin::OfflineVault::open(home.settings())
        .await
        .expect("open the stopped vault");
    let mut progress = sigvault::admin::progress::NoProgress;
    sigvault::admin::audit_verify(&vault, &mut progress)
        .await
        .expect("verification runs")
}

/// Flips one character inside the `resource` of node `node`'s event `seq`, in the shared
/// table, as a database writer would.
async fn edit_event_of(url: &str, node: &str, seq: u64) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect as the attacker");
    let rows: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT first_seq, lines FROM audit_batches WHERE node = $1 ORDER BY first_seq")
            .bind(node)
            .fetch_all(&mut conn)
            .await
            .expect("read the rows");
    for (first_seq, lines) in rows {
        let text = String::from_utf8(lines).expect("lines");
        let marker = format!("\"seq\":{seq},");
        let Some(line) = text.lines().find(|l| l.contains(&marker)) else {
            continue;
        };
        let edited_line = line.replacen("\"resource\":\"", "\"resource\":\"X", 1);
        assert_ne!(edited_line, line, "the event has a resource");
        let edited = text.replacen(line, &edited_line, 1);
        sqlx::query("UPDATE audit_batches SET lines = $1 WHERE node = $2 AND first_seq = $3")
            .bind(edited.into_bytes())
            .bind(node)
            .bind(first_seq)
            .execute(&mut conn)
            .await
            .expect("edit");
        return;
    }
    panic!("no event {seq} of {node} in the store");
}

#[tokio::test]
async fn audit_verify_checks_both_nodes_chains_and_names_the_node_of_an_edit() {
    let (mut a, b) = two_nodes().await;
    a.create_key("shared").await;
    // B's events in two batches at least (a stop ends one): its chain in the store goes on
    // past anything A's event file could say about it, which must not count against it.
    b.sign("shared", b"hello").await;
    let mut b = b.restart().await;
    for _ in 0..3 {
        b.sign("shared", b"hello").await;
        a.sign("shared", b"hello").await;
    }
    a.stop().await;
    b.stop().await;
    let url = a.home.postgres_url.clone().expect("on PostgreSQL");

    let intact = verify_cluster(&a.home).await;
    assert!(
        intact.report.ok,
        "{}",
        serde_json::to_string(&intact).unwrap_or_default()
    );
    let nodes: Vec<(&str, bool, u64)> = intact
        .nodes
        .iter()
        .map(|n| (n.node.as_str(), n.report.ok, n.report.checked))
        .collect();
    assert!(
        nodes
            .iter()
            .any(|(n, ok, checked)| *n == "node-a" && *ok && *checked > 0)
            && nodes
                .iter()
                .any(|(n, ok, checked)| *n == "node-b" && *ok && *checked > 0),
        "{nodes:?}"
    );

    for node in ["node-b", "node-a"] {
        edit_event_of(&url, node, 2).await;
        let broken = verify_cluster(&a.home).await;
        assert!(!broken.report.ok);
        let report = broken.nodes.iter().find(|n| n.node == node).expect("the node's report");
        assert!(
            !report.report.ok,
            "{node} is named: {}",
            serde_json::to_string(&broken).unwrap_or_default()
        );
        assert_eq!(report.report.first_bad_seq, Some(2), "{node}");
    }
}

#[tokio::test]
async fn the_trail_lists_both_nodes_events_merged_by_time_page_by_page() {
    let (a, b) = two_nodes().await;
    a.create_key("shared").await;
    // Each node's clock moves in step, one node acting per second: their events interleave.
    for second in 1..=6 {
        for node in [&a, &b] {
            node.clock.advance(time::Duration::seconds(1));
        }
        let node = if second % 2 == 0 { &b } else { &a };
        node.sign("shared", b"hello").await;
    }
    // Each node indexes its own events (within `audit.index_lag`): B's reach the table a
    // moment after its answers.
    // All six are waited for in one listing first, so the pages below are not read while
    // B's index catches up.
    eventually("both nodes' six signs are indexed", 10, || async {
        let r = a.get("/v1/audit/events?action=Sign&limit=100").await;
        r.body["events"].as_array().map_or(0, Vec::len) >= 6
    })
    .await;
    let listed = list_signs_in_pages(&a).await;
    let nodes: Vec<&str> = listed.iter().map(|(_, n, _)| n.as_str()).collect();
    assert_eq!(
        nodes,
        ["node-a", "node-b", "node-a", "node-b", "node-a", "node-b"],
        "by time across nodes, each once: {listed:?}"
    );
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "in time order");
}

/// Every `Sign` event, two per page, following `next`: (time, node, seq).
async fn list_signs_in_pages(app: &TestApp) -> Vec<(String, String, u64)> {
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..50 {
        let path = match &cursor {
            Some(c) => format!("/v1/audit/events?action=Sign&limit=2&cursor={c}"),
            None => "/v1/audit/events?action=Sign&limit=2".to_owned(),
        };
        let r = app.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        for e in r.body["events"].as_array().expect("events") {
            listed.push((
                e["time"].as_str().expect("time").to_owned(),
                e["node"].as_str().expect("node").to_owned(),
                e["seq"].as_u64().expect("seq"),
            ));
        }
        match r.body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    listed
}

/// A KEK rotation on one node of two: the other hears of it and wraps under the new KEK at
/// once, exactly one node runs the rewrap job (the other waits for the lead), and both keep
/// signing throughout.
#[tokio::test]
async fn during_a_kek_rotation_one_node_rewraps_and_both_keep_serving() {
    // 300 records at 20 a second: the pass lasts about 15 s, long past the time node B
    // takes to hear of the rotation (and try for the lead) even on a loaded machine.
    let (a, b) = two_nodes_from(AppHome {
        rewrap_rate: 20,
        ..AppHome::new()
    })
    .await;
    for i in 0..300 {
        a.create_key(&format!("kek-{i}")).await;
    }
    let r = a.post_raw("/v1/sys/kek/rotate", b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (old, new) = (
        r.body["previous_kek_id"].as_str().expect("old").to_owned(),
        r.body["current_kek_id"].as_str().expect("new").to_owned(),
    );
    within_notification_time("node B adopts the new KEK", || async {
        b.get("/v1/sys/kek").await.body["current_kek_id"] == new.as_str()
    })
    .await;
    // A key made on B now is under the new KEK, and A opens it.
    b.create_key("made-on-b").await;
    assert_eq!(a.sign("made-on-b", b"x").await.1, 1);

    let mut saw_one_waiting = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (sa, sb) = (a.get("/v1/sys/kek").await.body, b.get("/v1/sys/kek").await.body);
        let running = [&sa, &sb].iter().filter(|s| s["rewrap"]["state"] == "running").count();
        assert!(running <= 1, "both nodes rewrap at once: {sa} {sb}");
        if running == 1 && [&sa, &sb].iter().any(|s| s["rewrap"]["state"] == "waiting") {
            saw_one_waiting = true;
        }
        // Both serve while the job runs.
        for (node, app) in [("A", &a), ("B", &b)] {
            let r = app.post("/v1/keys/kek-7/sign", json!({"message": "aGVsbG8="})).await;
            assert_eq!(r.status, StatusCode::OK, "node {node} during the rewrap: {}", r.body);
        }
        let left = sa["records"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|row| row["kek_id"] == old.as_str())
            .and_then(|row| row["records"].as_u64())
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rewrap did not finish within 120 s: {sa}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        saw_one_waiting,
        "the node without the lead was never seen waiting for it (both were idle or one ran alone unnoticed)"
    );
    for i in [0, 150, 299] {
        let name = format!("kek-{i}");
        assert_eq!(a.sign(&name, b"x").await.0, b.sign(&name, b"x").await.0, "{name}");
    }
}

/// The scheduler's rotation, with the nodes' clocks driven: a key with `auto_rotate_period`
/// is not rotated a minute before it is due, and once due, both nodes running their
/// scheduler at the same moment add exactly one version between them, audited once as a
/// `RotateKey` by `-` (the vault itself) with outcome `ok`; the next run of either adds
/// nothing.
#[tokio::test]
async fn a_due_key_is_rotated_automatically_once_across_both_nodes_and_audited_once() {
    let (a, b) = two_nodes().await;
    let r = a
        .post(
            "/v1/keys",
            json!({"name": "auto", "algorithm": "hmac-sha256", "auto_rotate_period": "1h"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let both = || async {
        let (ra, rb) = futures_util::future::join(
            sigvault::startup::rotate_due_keys(&a.state),
            sigvault::startup::rotate_due_keys(&b.state),
        )
        .await;
        ra + rb
    };

    for node in [&a, &b] {
        node.clock.advance(time::Duration::minutes(59));
    }
    assert_eq!(both().await, 0, "not due a minute early");
    assert_eq!(latest_version(&a, "auto").await, Some(1));

    for node in [&a, &b] {
        node.clock.advance(time::Duration::minutes(2));
    }
    both().await;
    assert_eq!(latest_version(&a, "auto").await, Some(2), "rotated once, not twice");
    within_notification_time("node B sees the new version", || async {
        latest_version(&b, "auto").await == Some(2)
    })
    .await;
    assert_eq!(both().await, 0, "the new version is not due for an hour");
    assert_eq!(latest_version(&a, "auto").await, Some(2));

    // One audit event, by the vault itself, naming the new version (each node indexes its own
    // events within `audit.index_lag`).
    // (Each node's scheduler also wrote an intent before trying, and the one that found the
    // key rotated already an outcome `superseded`.)
    let rotations = || async {
        let r = a.get("/v1/audit/events?action=RotateKey&limit=100").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let events = r.body["events"].as_array().cloned().unwrap_or_default();
        events.into_iter().filter(|e| e["outcome"] == "ok").collect::<Vec<_>>()
    };
    eventually("the rotation's event is indexed", 10, || async {
        !rotations().await.is_empty()
    })
    .await;
    // Long past both nodes' index lag: a second event would be listed by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = rotations().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = events.first().expect("one event");
    assert_eq!(
        (
            event["principal"].as_str(),
            event["resource"].as_str(),
            event["key_version"].as_u64(),
            event["outcome"].as_str()
        ),
        (Some("-"), Some("key:auto"), Some(2), Some("ok")),
        "{event}"
    );
    // Its intent came first, under the same request id (one of its own: the scheduler runs
    // outside any request), on the node that rotated.
    assert!(event["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{event}");
    let r = a.get("/v1/audit/events?action=RotateKey&limit=100").await;
    let all = r.body["events"].as_array().cloned().unwrap_or_default();
    let intent = all
        .iter()
        .find(|e| e["request_id"] == event["request_id"] && e["outcome"] == "intent")
        .unwrap_or_else(|| panic!("no intent for {event} in {all:?}"));
    assert!(
        intent["seq"].as_u64() < event["seq"].as_u64() && intent["node"] == event["node"],
        "{intent}"
    );
}

async fn latest_version(app: &TestApp, name: &str) -> Option<u64> {
    app.get(&format!("/v1/keys/{name}")).await.body["latest_version"].as_u64()
}
