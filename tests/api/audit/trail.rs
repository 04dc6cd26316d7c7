//! One event per request that reaches a handler, with the right fields; the listing's
//! filters and cursor paging; and `GET /v1/audit/verify` on an intact trail. The expected
//! events come from the model in [`super::model`].

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::model::{Op, WRONG_TOKEN, assert_events, list, mixed_operations};
use super::{intact, verify_online};
use crate::helpers::spawn_app;

#[tokio::test]
async fn every_request_that_reaches_a_handler_leaves_one_event_with_its_caller_action_resource_and_outcome() {
    let mut app = spawn_app().await;
    let mut model = mixed_operations(&mut app).await;
    let before = model.ops.len() as u64;
    assert_eq!(
        before, 18,
        "the mix audits 14 requests, 4 of them changes with an intent each"
    );

    model.tick(&app);
    let r = app.get("/v1/audit/verify").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"ok": true, "checked": before}),
        "verify counts the events before it"
    );
    model.note(&r, "VerifyAudit", "audit");

    model.tick(&app);
    let r = list(&app, &mut model, "limit=1000").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["next"], Value::Null);
    let listed = r.body["events"].as_array().expect("events").clone();
    // The listing's own event is recorded after it answers.
    let without_itself = model.ops.len() - 1;
    let expected = model.expected(|_| true);
    assert_events(&listed, &expected[..without_itself], "the whole trail");

    model.tick(&app);
    let r = app.send(Method::GET, "/v1/audit/events", Some(WRONG_TOKEN), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    model.note(&r, "ReadAudit", "audit").principal = "-";
    model.tick(&app);
    let r = app.get("/v1/audit/verify").await;
    assert_eq!(r.body, json!({"ok": true, "checked": model.ops.len()}));
    model.note(&r, "VerifyAudit", "audit");
    let all = app.audit_events("").await;
    assert_events(&all, &model.expected(|_| true), "the trail after reading it");
}

/// Which operations of the model a query should return.
type OpFilter = Box<dyn Fn(&Op) -> bool>;

#[tokio::test]
async fn the_listing_filters_by_time_principal_action_and_resource_and_pages_with_a_cursor() {
    let mut app = spawn_app().await;
    let mut model = mixed_operations(&mut app).await;
    model.tick(&app);

    let cases: [(&str, OpFilter); 9] = [
        (
            "since=2026-09-21T14:17:20Z&until=2026-09-21T14:20:20Z",
            Box::new(|op| (4..7).contains(&op.minute)),
        ),
        ("since=2026-09-21T14:24:20Z", Box::new(|op| op.minute >= 11)),
        ("until=2026-09-21T14:16:20Z", Box::new(|op| op.minute < 3)),
        ("since=2026-09-21T14:17:20.001Z", Box::new(|op| op.minute >= 5)),
        ("principal=-", Box::new(|op| op.principal == "-")),
        ("principal=root", Box::new(|op| op.principal == "root")),
        ("action=Sign", Box::new(|op| op.action == "Sign")),
        ("resource=key%3Aalpha", Box::new(|op| op.resource == "key:alpha")),
        (
            "action=Sign&resource=key:alpha&principal=root&since=2026-09-21T14:16:20Z",
            Box::new(|op| op.action == "Sign" && op.resource == "key:alpha" && op.minute >= 3),
        ),
    ];
    for (query, keep) in &cases {
        let expected = model.expected(keep);
        let r = list(&app, &mut model, query).await;
        assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        assert_eq!(r.body["next"], Value::Null, "{query}");
        assert_events(r.body["events"].as_array().expect("events"), &expected, query);
    }
    let r = list(&app, &mut model, "principal=nobody").await;
    assert_eq!(r.body, json!({"events": [], "next": null}));

    // Paging a filtered listing: pages of 2 with a cursor until `next` is null.
    let expected = model.expected(|op| op.resource == "key:alpha");
    assert_eq!(expected.len(), 10, "create, update and rotate write two events each");
    let (mut listed, mut sizes, mut cursor) = (Vec::new(), Vec::new(), String::new());
    loop {
        let r = list(&app, &mut model, &format!("resource=key:alpha&limit=2&cursor={cursor}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page = r.body["events"].as_array().expect("events");
        sizes.push(page.len());
        listed.extend(page.iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    // A full last page still names a cursor; the page after it is empty.
    assert_eq!(sizes, [2, 2, 2, 2, 2, 0]);
    assert_events(&listed, &expected, "paged by 2");

    // Paging the whole trail while reading it appends to it: the last page ends with the
    // event of the page request before it.
    let (mut listed, mut cursor) = (Vec::new(), String::new());
    let expected = loop {
        let snapshot = model.expected(|_| true);
        let r = list(&app, &mut model, &format!("limit=5&cursor={cursor}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        listed.extend(r.body["events"].as_array().expect("events").iter().cloned());
        match r.body["next"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break snapshot,
        }
    };
    assert_events(&listed, &expected, "the whole trail paged by 5");
    assert_eq!(
        verify_online(&app).await,
        serde_json::to_value(intact(model.ops.len() as u64)).unwrap()
    );
}

#[tokio::test]
async fn bad_filters_are_refused_with_400_and_are_themselves_audited() {
    let mut app = spawn_app().await;
    let mut model = mixed_operations(&mut app).await;
    let long = "p".repeat(257);
    let bad = [
        "since=yesterday".to_owned(),
        "until=2026-13-01T00:00:00Z".to_owned(),
        "since=2026-09-21".to_owned(),
        "limit=0".to_owned(),
        "limit=1001".to_owned(),
        "limit=ten".to_owned(),
        "limit=-1".to_owned(),
        "cursor=not-a-cursor!".to_owned(),
        // Base64 of "test-node" without the newline and sequence.
        "cursor=dGVzdC1ub2Rl".to_owned(),
        format!("principal={long}"),
        format!("action={long}"),
        format!("resource={long}"),
        "action=Sign&action=Verify".to_owned(),
        "resource=%zz".to_owned(),
    ];
    for query in &bad {
        let r = list(&app, &mut model, query).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
        assert_eq!(r.code(), "INVALID_ARGUMENT", "{query}");
        assert_eq!(
            r.body["error"]["request_id"].as_str(),
            r.request_id.as_deref(),
            "{query}"
        );
    }
    // 256 bytes is still accepted.
    let r = list(&app, &mut model, &format!("principal={}", &long[..256])).await;
    assert_eq!(r.body, json!({"events": [], "next": null}));

    let refused = app.audit_events("action=ReadAudit").await;
    let refused: Vec<&str> = refused
        .iter()
        .filter(|e| e["outcome"] == "INVALID_ARGUMENT")
        .map(|e| e["request_id"].as_str().expect("request_id"))
        .collect();
    let expected: Vec<&str> = model
        .ops
        .iter()
        .filter(|op| op.outcome == "INVALID_ARGUMENT" && op.action == "ReadAudit")
        .map(|op| op.request_id.as_str())
        .collect();
    assert_eq!(refused, expected);
    assert_eq!(refused.len(), bad.len());
}

/// Caller input never stands raw in the trail: an id that cannot be a credential's is
/// refused before any policy sees it and recorded as `<invalid id>`, and no text field of
/// any event holds a control or bidirectional formatting character.
#[tokio::test]
async fn control_and_bidi_characters_in_caller_input_never_reach_an_event_raw() {
    let app = spawn_app().await;
    let forged = "AKIA\n{\"event\":{\"seq\":1}}\u{1b}[2J\u{0}\u{202e}";
    let r = app
        .post(
            "/v1/credentials/import",
            json!({"access_key_id": forged, "secret_access_key": "s3cr3t-value-0123456789", "principal": "gamma"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "INVALID_ARGUMENT", "{}", r.body);
    let r = app.get("/v1/credentials/AKIA%0A%E2%80%AEx").await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.body);

    let events = app.audit_events("").await;
    let imports: Vec<&Value> = events.iter().filter(|e| e["action"] == "ImportCredential").collect();
    assert_eq!(imports.len(), 1, "{events:?}");
    assert_eq!(imports[0]["resource"], "credential:<invalid id>");
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    for event in &events {
        for (field, value) in event.as_object().expect("an event object") {
            if let Some(text) = value.as_str() {
                assert!(
                    !text.chars().any(hidden),
                    "{field} holds a raw control character: {text:?}"
                );
            }
        }
    }
}
