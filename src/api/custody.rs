//! `/v1/wrapping-key`: the vault's RSA-4096 wrapping key, which custodians wrap key material
//! to for `POST /v1/keys/{name}/import-wrapped` (BYOK). Its private half is generated in the
//! HSM on the first `GET` and never leaves it; `POST /v1/wrapping-key/rotate` makes a new one
//! current (the one before still opens imports until the next rotation).

use std::sync::Arc;

use serde::Serialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::reply::{self, json};
use super::{AppState, audited, authenticate, authorize, intend, method_not_allowed, with_state};
use crate::audit::action::Action;
use crate::error::ApiError;
use crate::keys::{WRAPPING_FORMAT, WRAPPING_KEY_ALGORITHM, WrappingKey};
use crate::policy::Resource;

/// The policy collection and audit resource of the wrapping key.
const RESOURCE: &str = "wrapping-key";

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let read = warp::path!("wrapping-key").and(s()).and(call()).then(read);
    let rotate = warp::path!("wrapping-key" / "rotate").and(s()).and(call()).then(rotate);
    read.or(rotate).unify().boxed()
}

#[derive(Serialize)]
struct WrappingKeyJson {
    public_key_pem: String,
    algorithm: &'static str,
    wrapping: &'static str,
    version: u32,
    fingerprint: String,
}

impl From<WrappingKey> for WrappingKeyJson {
    fn from(key: WrappingKey) -> Self {
        Self {
            public_key_pem: key.public_key_pem,
            algorithm: WRAPPING_KEY_ALGORITHM,
            wrapping: WRAPPING_FORMAT,
            version: key.version,
            fingerprint: key.fingerprint,
        }
    }
}

async fn read(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = read_key(&state, &mut call).await;
    audited(&state, &mut call, Action::ReadWrappingKey, RESOURCE.into(), result).await
}

async fn read_key(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ReadWrappingKey,
        &Resource::Collection(RESOURCE),
    )?;
    call.expect_no_body().await?;
    Ok(json(
        StatusCode::OK,
        &WrappingKeyJson::from(state.keys.wrapping_key().await?),
    ))
}

async fn rotate(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = rotate_key(&state, &mut call).await;
    audited(&state, &mut call, Action::RotateWrappingKey, RESOURCE.into(), result).await
}

async fn rotate_key(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::RotateWrappingKey,
        &Resource::Collection(RESOURCE),
    )?;
    call.expect_no_body().await?;
    super::approvals::require_approval(state, call, &caller, Action::RotateWrappingKey, RESOURCE).await?;
    intend(state, call, Action::RotateWrappingKey, RESOURCE).await?;
    Ok(json(
        StatusCode::OK,
        &WrappingKeyJson::from(state.keys.rotate_wrapping_key().await?),
    ))
}
