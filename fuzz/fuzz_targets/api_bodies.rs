//! Every JSON request body the API parses (`sigvault::fuzzing::Body`), and the forwarded
//! request of `POST /v1/sigv4/verify` through the handler's checks and the SigV4 parse.
//!
//! Input: one byte choosing the body type, then the body. Properties: a refused body is a
//! 400 whose message never repeats a string value of the body (a misplaced secret must not
//! come back: checked by parsing the body again with every string value replaced by a
//! canary); an accepted body is a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sigvault::error::ErrorCode;
use sigvault::fuzzing::{Body, parse_body, sigv4_forwarded};

const CANARY: &str = "\u{1f511}canary";

/// Every string value (not the keys: field names may be named in an error) as a canary.
fn canaries(value: &mut Value) {
    match value {
        Value::String(text) => *text = CANARY.to_owned(),
        Value::Array(items) => items.iter_mut().for_each(canaries),
        Value::Object(members) => members.values_mut().for_each(canaries),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let kind = Body::ALL[usize::from(choice) % Body::ALL.len()];
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match parse_body(kind, body) {
        Ok(()) => assert!(
            matches!(json, Some(Value::Object(_))),
            "{kind:?} accepted a body that is not an object"
        ),
        Err(e) => {
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert!(e.message.starts_with("invalid JSON body: "), "{}", e.message);
            if let Some(mut json) = json
                && !String::from_utf8_lossy(body).contains("canary")
            {
                canaries(&mut json);
                let text = serde_json::to_vec(&json).expect("a Value serialises");
                if let Err(e) = parse_body(kind, &text) {
                    assert!(!e.message.contains("canary"), "a value is echoed: {}", e.message);
                }
            }
        }
    }
    if kind == Body::VerifySigV4
        && let Ok(forwarded) = sigv4_forwarded(body)
    {
        match (&forwarded.parsed, &forwarded.strings_to_sign) {
            (Ok(_), Some(Ok(candidates))) => assert!((1..=4).contains(&candidates.len())),
            (Ok(_), Some(Err(_))) | (Err(_), None) => {}
            (Ok(_), None) | (Err(_), Some(_)) => panic!("strings to sign exactly for a parsed request"),
        }
    }
});
