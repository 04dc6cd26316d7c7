//! Reading the audit trail the way an auditor does, through `GET /v1/audit/events` as root:
//! every event of a query, and the event of one request, found by its `x-request-id`.
//! These reads are themselves audited (each page after it is answered), so a test that
//! counts events must count them too; nothing here writes or verifies the trail.

use reqwest::StatusCode;
use serde_json::Value;

use super::{Reply, TestApp};

impl TestApp {
    /// Every event the API lists for `query` (`""` or `a=b&c=d`), following `next` cursors
    /// with pages of 1000. A page request is not in its own page.
    pub async fn audit_events(&self, query: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/v1/audit/events?limit=1000".to_owned();
            if !query.is_empty() {
                path.push('&');
                path.push_str(query);
            }
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(c);
            }
            let r = self.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "root lists {path}: {}", r.body);
            events.extend(r.body["events"].as_array().expect("an `events` array").iter().cloned());
            match r.body["next"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return events,
            }
        }
    }

    /// The outcome event of the request that answered `r`, among those `query` lists (e.g.
    /// `action=Sign&principal=alice`); panics when there is none. A change also wrote an
    /// intent event before it acted (outcome `intent`): when the listing holds one, it must
    /// come first and name the same caller, action, decision and policy.
    pub async fn audit_event_of(&self, r: &Reply, query: &str) -> Value {
        let id = r.request_id.as_deref().expect("every response has an x-request-id");
        let events = self.audit_events(query).await;
        let (intents, outcomes): (Vec<&Value>, Vec<&Value>) = events
            .iter()
            .filter(|e| e["request_id"] == id)
            .partition(|e| e["outcome"] == "intent");
        let [outcome] = outcomes.as_slice() else {
            panic!("expected one outcome event for request {id} among {query}: {events:?}");
        };
        assert!(intents.len() <= 1, "request {id} has several intents: {intents:?}");
        if let Some(intent) = intents.first() {
            assert!(
                intent["seq"].as_u64() < outcome["seq"].as_u64(),
                "the intent comes first: {intent} {outcome}"
            );
            for field in ["principal", "action", "decision", "policy", "node"] {
                assert_eq!(
                    intent[field], outcome[field],
                    "intent and outcome of {id} disagree on {field}"
                );
            }
        }
        (*outcome).clone()
    }
}
