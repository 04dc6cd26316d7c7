//! A crash between a change and its outcome event leaves the intent alone at the end of the
//! trail; the next start records the outcome `interrupted` for it (same request id, caller,
//! action and resource), so every intent in the trail has an outcome.

use serde_json::json;

use super::{copy_home, cut_every_sink, file_lines, stored_events, verify_offline, write_witness};
use crate::helpers::{spawn_app, spawn_app_in};

#[tokio::test]
async fn an_intent_whose_outcome_a_crash_lost_gets_the_outcome_interrupted_at_the_next_start() {
    let mut app = spawn_app().await;
    app.create_key("k").await;
    app.sign("k", b"before").await;
    let r = app.post("/v1/keys/k/rotate", json!({})).await;
    assert!(r.status.is_success(), "{}", r.body);
    let rotate_id = r.request_id.clone().expect("x-request-id");
    app.stop().await;
    let home = app.home.clone();
    let events = stored_events(&home).await;
    let n = events.len();
    let (intent, intent_mac) = &events[n - 2];
    assert_eq!(
        (intent.outcome.as_str(), intent.request_id.as_str()),
        ("intent", rotate_id.as_str())
    );
    assert_eq!(events[n - 1].0.outcome, "ok");

    // What a crash between the rotation and its outcome leaves: the trail ends at the
    // intent, which the HSM witnessed (the outcome was never written anywhere).
    let copy = copy_home(&home, "interrupted-rotate").await;
    cut_every_sink(&copy, n - 1).await;
    write_witness(&copy, intent.seq, intent_mac).await;
    assert!(verify_offline(&copy).await.ok);

    let mut app = spawn_app_in(copy.clone()).await;
    app.stop().await;
    let events = stored_events(&copy).await;
    let (outcome, _) = &events[n - 1];
    assert_eq!(outcome.seq, intent.seq + 1, "written before anything else");
    assert_eq!(outcome.outcome, "interrupted");
    assert_eq!(
        (
            &outcome.request_id,
            &outcome.principal,
            &outcome.action,
            &outcome.resource
        ),
        (&intent.request_id, &intent.principal, &intent.action, &intent.resource)
    );
    assert_eq!(file_lines(&copy).len(), events.len(), "in the event file too");
    let report = verify_offline(&copy).await;
    assert!(report.ok && report.checked == events.len() as u64, "{report:?}");

    // Completed once: a further start finds nothing to complete.
    let mut app = spawn_app_in(copy.clone()).await;
    app.stop().await;
    let again = stored_events(&copy).await;
    assert_eq!(
        again.iter().filter(|(e, _)| e.outcome == "interrupted").count(),
        1,
        "one interrupted outcome, not one per start"
    );
}
