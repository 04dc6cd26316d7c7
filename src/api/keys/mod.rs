//! `/v1/keys…`: the routes of signing keys, dispatched once on the path tail to the
//! lifecycle handlers ([`lifecycle`]) or to sign and verify, single and batch ([`sign`]);
//! every call is audited, under `key:<name>` or `keys`.
//!
//! Request bodies are parsed with `deny_unknown_fields`; key material arrives only on
//! `import`, is decoded straight into a secret buffer, and the body buffer holding it is
//! zeroized. Responses never carry material ([`view`]).

use std::sync::Arc;

mod cipher;
mod custody;
pub(crate) mod lifecycle;
pub(crate) mod sign;
mod view;

use lifecycle::{
    create_key, delete_key, get_key, import_key, import_wrapped, list_keys, patch_key, restore_key, rotate_key,
};
use sign::{sign_message, verify_message};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::reply::Response;

use super::context::{Call, call};
use super::reply;
use super::{AppState, audited, method_not_allowed, with_state};
use crate::audit::action::Action;
use crate::error::ApiError;

/// `/v1/keys`, `/v1/keys/{name}` and `/v1/keys/{name}/{action}`, dispatched once on the
/// path tail (the hot sign/verify routes should not pay for trying routes one by one).
pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path("keys")
        .and(warp::path::tail())
        .and(with_state(state))
        .and(call())
        .then(dispatch)
        .boxed()
}

async fn dispatch(tail: warp::path::Tail, state: Arc<AppState>, call: Call) -> Response {
    let mut segments = tail.as_str().split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (None | Some(""), None, None) => collection(state, call).await,
        (Some(name), None, None) => item(name.to_owned(), state, call).await,
        (Some(name), Some(action_name), None) if !name.is_empty() => {
            action(name.to_owned(), action_name.to_owned(), state, call).await
        }
        _ => reply::error(ApiError::new(crate::error::ErrorCode::NotFound, "no such route")),
    }
}

async fn collection(state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::ListKeys, list_keys(&state, &mut call).await),
        Method::POST => (Action::CreateKey, create_key(&state, &mut call).await),
        _ => return reply::error(method_not_allowed(&call, "GET, POST")),
    };
    audited(&state, &mut call, action, "keys".into(), result).await
}

async fn item(name: String, state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::GetKey, get_key(&state, &mut call, &name).await),
        Method::PATCH => (Action::UpdateKey, patch_key(&state, &mut call, &name).await),
        Method::DELETE => (Action::ScheduleKeyDeletion, delete_key(&state, &mut call, &name).await),
        _ => return reply::error(method_not_allowed(&call, "GET, PATCH, DELETE")),
    };
    audited(&state, &mut call, action, key_resource(&name), result).await
}

async fn action(name: String, action: String, state: Arc<AppState>, mut call: Call) -> Response {
    let action = match action.as_str() {
        "rotate" => Action::RotateKey,
        "restore" => Action::CancelKeyDeletion,
        "import" => Action::ImportKeyPlaintext,
        "import-wrapped" => Action::ImportKeyWrapped,
        "export" => Action::ExportKey,
        "backup" => Action::BackupKey,
        "restore-backup" => Action::RestoreKey,
        "sign" => Action::Sign,
        "verify" => Action::Verify,
        "encrypt" => Action::Encrypt,
        "decrypt" => Action::Decrypt,
        "rewrap" => Action::ReEncrypt,
        "datakey" => Action::GenerateDataKey,
        "wrap" => Action::WrapKey,
        "unwrap" => Action::UnwrapKey,
        _ => return reply::error(ApiError::new(crate::error::ErrorCode::NotFound, "no such route")),
    };
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = match action {
        Action::RotateKey => rotate_key(&state, &mut call, &name).await,
        Action::CancelKeyDeletion => restore_key(&state, &mut call, &name).await,
        Action::ImportKeyPlaintext => import_key(&state, &mut call, &name).await,
        Action::ImportKeyWrapped => import_wrapped(&state, &mut call, &name).await,
        Action::ExportKey => custody::export(&state, &mut call, &name).await,
        Action::BackupKey => custody::backup(&state, &mut call, &name).await,
        Action::RestoreKey => custody::restore_backup(&state, &mut call, &name).await,
        Action::Sign => sign_message(&state, &mut call, &name).await,
        Action::Encrypt => cipher::encrypt(&state, &mut call, &name).await,
        Action::Decrypt => cipher::decrypt(&state, &mut call, &name).await,
        Action::ReEncrypt => cipher::rewrap(&state, &mut call, &name).await,
        Action::GenerateDataKey => cipher::data_key(&state, &mut call, &name).await,
        Action::WrapKey => cipher::wrap_key(&state, &mut call, &name).await,
        Action::UnwrapKey => cipher::unwrap_key(&state, &mut call, &name).await,
        _ => verify_message(&state, &mut call, &name).await,
    };
    audited(&state, &mut call, action, key_resource(&name), result).await
}

/// `key:<name>` for the audit event; a name that is not a valid key name (it will be
/// refused) is not copied into the trail.
pub(crate) fn key_resource(name: &str) -> String {
    match crate::keys::model::validate_name(name) {
        Ok(()) => format!("key:{name}"),
        Err(_) => "key:<invalid name>".into(),
    }
}
