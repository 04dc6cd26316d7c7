//! Contract checks of caller tokens: found by id and by keyed hash, revoked once, groups
//! kept as written (see the parent module). The hashes are made-up bytes.

use super::{DAY_MS, HOUR_MS, T0};
use crate::store::{StoreError, TokenRecord, TokenStore};

pub(crate) fn token(id: &str, hash: u8, groups: &[&str]) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        hash: vec![hash; 32],
        principal: "payments".into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        description: None,
        created_at_ms: T0,
        expires_at_ms: None,
        revoked_at_ms: None,
        revision: 0,
    }
}

pub(crate) async fn tokens_are_found_by_id_and_by_hash_and_revoked_once(store: &dyn TokenStore) {
    let token = TokenRecord {
        id: "tok_0123456789abcdef".into(),
        hash: vec![7; 32],
        principal: "payments".into(),
        groups: vec!["service".into()],
        description: Some("payments API".into()),
        created_at_ms: T0,
        expires_at_ms: Some(T0 + DAY_MS),
        revoked_at_ms: None,
        revision: 0,
    };
    assert_eq!(store.get_token(&token.id).await.unwrap(), None);
    store.insert_token(&token).await.unwrap();
    assert_eq!(store.get_token(&token.id).await.unwrap().as_ref(), Some(&token));
    assert_eq!(store.find_token(&[7; 32]).await.unwrap().as_ref(), Some(&token));
    assert_eq!(store.find_token(&[8; 32]).await.unwrap(), None);
    let same_hash = TokenRecord {
        id: "tok_other".into(),
        ..token.clone()
    };
    assert!(matches!(
        store.insert_token(&same_hash).await,
        Err(StoreError::AlreadyExists)
    ));
    let no_expiry = TokenRecord {
        id: "tok_forever".into(),
        hash: vec![9; 32],
        description: None,
        expires_at_ms: None,
        ..token.clone()
    };
    store.insert_token(&no_expiry).await.unwrap();
    assert_eq!(store.get_token("tok_forever").await.unwrap().as_ref(), Some(&no_expiry));

    let revoked = store.revoke_token(&token.id, T0 + HOUR_MS).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(T0 + HOUR_MS));
    let again = store.revoke_token(&token.id, T0 + 2 * HOUR_MS).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_at_ms,
        Some(T0 + HOUR_MS),
        "the first revocation time stays"
    );
    assert_eq!(
        store.find_token(&[7; 32]).await.unwrap().unwrap().revoked_at_ms,
        Some(T0 + HOUR_MS)
    );
    assert_eq!(store.revoke_token("tok_missing", T0).await.unwrap(), None);
    assert_eq!(
        store.get_token("tok_forever").await.unwrap().unwrap().revoked_at_ms,
        None
    );
}

/// Groups read back in the order written (the first is not privileged, but an answer must
/// not reorder what the caller asked for), and a token may have none.
pub(crate) async fn token_groups_read_back_in_order_and_may_be_empty(store: &dyn TokenStore) {
    let ordered = token("tok_ordered", 1, &["service", "admin", "auditor", "a.b-c_d"]);
    let none = token("tok_none", 2, &[]);
    store.insert_token(&ordered).await.unwrap();
    store.insert_token(&none).await.unwrap();

    assert_eq!(store.get_token("tok_ordered").await.unwrap(), Some(ordered.clone()));
    assert_eq!(store.find_token(&[1; 32]).await.unwrap(), Some(ordered.clone()));
    assert_eq!(store.get_token("tok_none").await.unwrap(), Some(none.clone()));
    let taken_id = token("tok_none", 3, &["service"]);
    assert!(matches!(
        store.insert_token(&taken_id).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.find_token(&[3; 32]).await.unwrap(),
        None,
        "nothing of the refused token"
    );
    assert_eq!(store.get_token("tok_none").await.unwrap(), Some(none));
}
