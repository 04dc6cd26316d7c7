//! Revoking the bootstrap root token (`DELETE /v1/auth/tokens/root`): at once, for good
//! across restarts, until an operator deliberately installs a new one.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ROOT_TOKEN, Reply, spawn_dev, temp_dir};

#[tokio::test]
async fn a_revoked_root_token_stays_revoked_after_a_restart_until_an_operator_installs_a_new_one() {
    let data_dir = temp_dir("root-revoke").join("data");
    let dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
    let Reply {
        status, body: created, ..
    } = dev
        .request(
            Method::POST,
            "/v1/auth/tokens",
            ROOT_TOKEN,
            Some(json!({"principal": "alice", "groups": ["admin"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let alice = created["token"].as_str().expect("token").to_owned();

    let Reply {
        status, body: revoked, ..
    } = dev
        .request(Method::DELETE, "/v1/auth/tokens/root", ROOT_TOKEN, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert_eq!(revoked["id"], "root");
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let Reply { status, body, .. } = dev.request(Method::GET, "/v1/keys", ROOT_TOKEN, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "root stops working at once: {body}");
    let Reply { status, .. } = dev.request(Method::GET, "/v1/keys", &alice, None).await;
    assert_eq!(status, StatusCode::OK, "a named admin token takes over");
    dev.stop();

    // A restart without SIGVAULT_ROOT_TOKEN neither revives the old root token nor makes a new one.
    let dev = spawn_dev(&data_dir, &[]);
    assert!(
        !dev.stdout_lines.iter().any(|l| l.starts_with("root token:")),
        "no root token is generated for a vault whose root was revoked: {:?}",
        dev.stdout_lines
    );
    let Reply { status, .. } = dev.request(Method::GET, "/v1/keys", ROOT_TOKEN, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "still revoked after a restart");
    let Reply {
        status, body: events, ..
    } = dev
        .request(Method::GET, "/v1/audit/events?action=RevokeToken", &alice, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(
        events["events"][0]["outcome"], "intent",
        "the revocation was announced first"
    );
    let event = &events["events"][1];
    assert_eq!(
        (&event["principal"], &event["resource"], &event["outcome"]),
        (&json!("root"), &json!("token:root"), &json!("ok")),
        "{event}"
    );
    dev.stop();

    // Break glass: the operator sets a new root token explicitly.
    let fresh = "svt_break-glass-0123456789";
    let dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", fresh)]);
    let Reply { status, body: who, .. } = dev.request(Method::GET, "/v1/auth/whoami", fresh, None).await;
    assert_eq!(status, StatusCode::OK, "{who}");
    assert_eq!(who, json!({"principal": "root", "groups": ["admin"], "via": "token"}));
    dev.stop();
}

/// The root token given by environment is not left in the process's environment block,
/// which `/proc/<pid>/environ` shows to the same user (and to root) for the process's life.
#[tokio::test]
async fn the_root_token_is_wiped_from_the_process_environment_after_start() {
    let data_dir = temp_dir("root-environ").join("data");
    let dev = spawn_dev(&data_dir, &[("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN)]);
    let Reply { status, .. } = dev.request(Method::GET, "/v1/keys", ROOT_TOKEN, None).await;
    assert_eq!(status, StatusCode::OK, "the token still authenticates");

    let environ = std::fs::read(format!("/proc/{}/environ", dev.child.id())).expect("read environ");

    let token = ROOT_TOKEN.as_bytes();
    assert!(
        !environ.windows(token.len()).any(|w| w == token),
        "the root token is readable in /proc/<pid>/environ"
    );
    assert!(
        environ
            .windows(b"SIGVAULT_LISTEN".len())
            .any(|w| w == b"SIGVAULT_LISTEN")
            || environ.windows(b"PATH=".len()).any(|w| w == b"PATH="),
        "the rest of the environment is still there"
    );
    dev.stop();
}
