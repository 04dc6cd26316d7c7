//! What a copy of the database and audit files holds of caller tokens: nothing.

use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{create_token, whoami};
use crate::helpers::{assert_dump_holds_no_secret, encodings, spawn_app};

#[tokio::test]
async fn no_caller_token_or_its_unkeyed_sha256_is_in_the_database_or_audit_files_live_or_stopped() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..50 {
        let ttl = (i % 2 == 0).then_some("30d");
        let (id, token) = create_token(&app, &format!("service-{i:02}"), &["service"], ttl).await;
        // Used once, so the vault's memory of verified tokens holds its digest.
        assert_eq!(
            whoami(&app, Some(&token)).await.status,
            StatusCode::OK,
            "token {i} works"
        );
        if i % 10 == 0 {
            let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "token {i} is revoked: {}", r.body);
        }
        let body = token.strip_prefix("svt_").expect("svt_ prefix");
        secrets.extend(encodings(&format!("token {i}"), token.as_bytes()));
        secrets.push((format!("token {i} without its prefix"), body.as_bytes().to_vec()));
        let digest = Sha256::digest(token.as_bytes()).to_vec();
        secrets.extend(encodings(&format!("SHA-256 of token {i}"), &digest));
        ids.push((id.clone(), id.into_bytes()));
    }

    assert_dump_holds_no_secret(app, &secrets, &ids).await;
}
