//! A service confined to the keys it owns and to its namespace; key tags under a policy of the test's own.

use super::*;

#[tokio::test]
async fn a_service_may_not_sign_with_another_services_key_and_the_trail_records_the_refusal() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    create_key(&app, "billing-signing", "billing", json!({})).await;

    let r = sign_as(&app, &payments, "billing-signing").await;
    assert_denied(&r, "payments signing with billing's key");
    let event = event_of(&app, "payments", Action::Sign, &r).await;
    let expected = json!({
        "principal": "payments", "action": "Sign", "resource": "key:billing-signing",
        "decision": "deny", "policy": null, "outcome": "PERMISSION_DENIED",
    });
    assert_eq!(summary(&event), expected, "expected the refusal in the trail");

    let r = verify_as(&app, &payments, "billing-signing").await;
    assert_denied(&r, "payments verifying with billing's key");
}

#[tokio::test]
async fn a_service_may_use_the_keys_of_its_namespace_whoever_owns_them() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    // The namespace is the name up to the first "." (the whole name without one).
    let cases = [
        ("payments.webhook", true),
        ("payments.eu.webhook", true),
        ("payments", true),
        ("paymentsx.webhook", false),
        ("payments-webhook", false),
        ("billing.payments", false),
    ];
    for (name, allowed) in cases {
        create_key(&app, name, "root", json!({})).await;
        let r = sign_as(&app, &payments, name).await;
        let event = event_of(&app, "payments", Action::Sign, &r).await;
        if allowed {
            assert_status(&r, StatusCode::OK, &format!("expected payments to sign with {name}"));
            let expected = json!({
                "principal": "payments", "action": "Sign", "resource": format!("key:{name}"),
                "decision": "allow", "policy": "service-sign-verify-own-keys", "outcome": "ok",
            });
            assert_eq!(
                summary(&event),
                expected,
                "expected the namespace policy credited for {name}"
            );
        } else {
            assert_denied(&r, &format!("payments signing with root's {name}"));
            assert_eq!(
                (&event["decision"], &event["policy"]),
                (&json!("deny"), &Value::Null),
                "expected a deny no policy made for {name}"
            );
        }
    }
}

#[tokio::test]
async fn a_missing_key_is_denied_to_a_service_outside_its_namespace_and_not_found_inside_it() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    create_key(&app, "billing.webhook", "billing", json!({})).await;

    // Outside its namespace a missing key is decided on its name alone (owner ""): the
    // same refusal as for a key that exists, so the service learns nothing of either.
    let existing = sign_as(&app, &payments, "billing.webhook").await;
    assert_denied(&existing, "payments signing with billing.webhook");
    for missing in ["billing.ghost", "ghost"] {
        let r = sign_as(&app, &payments, missing).await;
        assert_denied(&r, &format!("payments signing with missing {missing}"));
        assert_eq!(
            r.body["error"]["message"].as_str().map(|m| m.replace(missing, "<key>")),
            existing.body["error"]["message"]
                .as_str()
                .map(|m| m.replace("billing.webhook", "<key>")),
            "expected the refusal of a missing key to read like that of an existing one"
        );
    }

    let r = sign_as(&app, &payments, "payments.ghost").await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "KEY_NOT_FOUND"),
        "expected a missing key in the service's namespace to be 404 KEY_NOT_FOUND: {}",
        r.body
    );
    let event = event_of(&app, "payments", Action::Sign, &r).await;
    let expected = json!({
        "principal": "payments", "action": "Sign", "resource": "key:payments.ghost",
        "decision": "allow", "policy": "service-sign-verify-own-keys", "outcome": "KEY_NOT_FOUND",
    });
    assert_eq!(
        summary(&event),
        expected,
        "expected an allowed request that found no key"
    );
}

// ----- tags, under a policy directory of the test's own ---------------------------------

const TEAM_A_POLICY: &str = r#"// Team a signs with the keys tagged team=a, whoever owns them.
@id("team-a-signs-team-a-keys")
permit (
  principal in Sigvault::Group::"team-a",
  action == Sigvault::Action::"Sign",
  resource is Sigvault::Key
)
when { resource.hasTag("team") && resource.getTag("team") == "a" };
"#;

#[tokio::test]
async fn a_key_tag_decides_under_a_policy_that_matches_on_it() {
    let dir = temp_dir("authz-tags");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for file in ["schema.cedarschema", "admin.cedar"] {
        // admin.cedar: root still sets up the keys and reads the trail.
        std::fs::copy(shipped.join(file), dir.join(file)).expect("copy a shipped policy file");
    }
    std::fs::write(dir.join("team-a.cedar"), TEAM_A_POLICY).expect("write the team-a policy");
    let app = spawn_app_in(AppHome {
        policies_dir: Some(dir),
        ..AppHome::new()
    })
    .await;
    create_key(&app, "ledger", "root", json!({"team": "a"})).await;
    create_key(&app, "invoices", "root", json!({"team": "b"})).await;
    create_key(&app, "untagged", "root", json!({})).await;
    let (_, alice) = token_for(&app, "alice", &["team-a"]).await;
    let (_, bob) = token_for(&app, "bob", &["team-b"]).await;

    let cases = [
        ("alice", &alice, "ledger", true),
        ("alice", &alice, "invoices", false),
        ("alice", &alice, "untagged", false),
        ("bob", &bob, "ledger", false),
    ];
    for (who, token, key, allowed) in cases {
        let what = format!("{who} signing with {key}");
        let r = sign_as(&app, token, key).await;
        let event = event_of(&app, who, Action::Sign, &r).await;
        if allowed {
            assert_status(&r, StatusCode::OK, &format!("{what}: expected success"));
            assert_eq!(
                (&event["decision"], &event["policy"]),
                (&json!("allow"), &json!("team-a-signs-team-a-keys")),
                "{what}: expected the tag policy credited"
            );
        } else {
            assert_denied(&r, &what);
            assert_eq!(event["decision"], "deny", "{what}: expected a deny in the trail");
        }
    }
    let r = verify_as(&app, &alice, "ledger").await;
    assert_denied(&r, "alice verifying with ledger (the policy grants Sign only)");
}

/// A refusal must not take longer when the key is missing: a missing name, once looked up,
/// is answered from memory like a cached key, so repeated probes reach the store no more
/// often for a missing key than for an existing one. (Counted, not timed: wall-clock
/// assertions do not hold on a shared machine.) Creating the name ends the memory of it.
#[tokio::test]
async fn probing_a_missing_key_is_answered_from_memory_like_an_existing_one_until_it_is_created() {
    let app = spawn_app().await;
    let (_, payments) = token_for(&app, "payments", &["service"]).await;
    create_key(&app, "billing.webhook", "billing", json!({})).await;
    for name in ["billing.webhook", "billing.ghost"] {
        assert_denied(&sign_as(&app, &payments, name).await, name);
    }

    let before = app.state.keys.store_lookups();
    for _ in 0..5 {
        for name in ["billing.webhook", "billing.ghost"] {
            assert_denied(&sign_as(&app, &payments, name).await, name);
        }
    }
    assert_eq!(
        app.state.keys.store_lookups(),
        before,
        "ten refusals, existing and missing alike, read no key row"
    );

    create_key(&app, "billing.ghost", "payments", json!({})).await;
    let r = sign_as(&app, &payments, "billing.ghost").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "created and owned by payments now: {}",
        r.body
    );
}
