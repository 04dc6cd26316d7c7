//! What a copy of the database and audit files holds of SigV4 secrets: nothing.

use super::{ToSign, create_credential, now, sign_with, verify};
use crate::helpers::{assert_dump_holds_no_secret, encodings, spawn_app};

#[tokio::test]
async fn no_secret_access_key_or_its_aws4_key_is_in_the_database_or_audit_files() {
    let app = spawn_app().await;
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for i in 0..100 {
        let (id, secret) = create_credential(&app, &format!("tenant-{:02}", i / 2)).await;
        if i % 10 == 0 {
            // Used, so a derived key of its scope is cached and activity is recorded.
            let signed = sign_with(&id, &secret, &ToSign::get("/orders", now(&app)));
            assert_eq!(verify(&app, &signed).await["valid"], true);
        }
        secrets.extend(encodings(&format!("secret {i}"), secret.as_bytes()));
        secrets.extend(encodings(
            &format!("AWS4+secret {i}"),
            format!("AWS4{secret}").as_bytes(),
        ));
        ids.push((id.clone(), id.into_bytes()));
    }
    assert_dump_holds_no_secret(app, &secrets, &ids).await;
}
