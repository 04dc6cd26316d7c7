//! `/v1/credentials…`: SigV4 credentials — create (the secret shown once), import, list,
//! get, activate/deactivate, delete, and activity. Every request is audited; a secret
//! appears only in the answer of its creation, never in the trail, a log or a listing.

use std::sync::Arc;

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use zeroize::Zeroizing;

use super::context::{Call, call};
use super::fingerprint::{fingerprints_json, rule};
use super::reply::{self, json};
use super::{
    AppState, audited, authenticate, authorize, intend, kek_error, method_not_allowed, store_error, with_state,
};
use crate::audit::action::Action;
use crate::auth::Principal;
use crate::clock::from_unix_ms;
use crate::credentials::{
    CredentialError, CredentialRecord, CredentialState, NewCredential, Patch, check_imported_id, valid_access_key_id,
};
use crate::error::{ApiError, ErrorCode};
use crate::model::Boundary;
use crate::policy::Resource;
use crate::secret::SecretBytes;
use crate::timefmt::rfc3339;

const MAX_LIST: u32 = 1000;
const DEFAULT_LIST: u32 = 100;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let s = || with_state(Arc::clone(&state));
    let collection = warp::path!("credentials").and(s()).and(call()).then(collection);
    let import = warp::path!("credentials" / "import").and(s()).and(call()).then(import);
    let one = warp::path!("credentials" / String).and(s()).and(call()).then(one);
    let activity = warp::path!("credentials" / String / "activity")
        .and(s())
        .and(call())
        .then(activity);
    import
        .or(collection)
        .unify()
        .or(one)
        .unify()
        .or(activity)
        .unify()
        .boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRequest {
    principal: String,
    description: Option<String>,
    on_new_fingerprint: Option<String>,
    boundary: Option<String>,
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRequest {
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    principal: String,
    description: Option<String>,
    on_new_fingerprint: Option<String>,
    boundary: Option<String>,
    groups: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatchRequest {
    state: Option<String>,
    /// `null` returns to the server default; absent leaves it.
    #[serde(default, deserialize_with = "reply::present")]
    on_new_fingerprint: Option<Option<String>>,
}

#[derive(Serialize)]
pub(crate) struct CredentialJson {
    access_key_id: String,
    principal: String,
    groups: Vec<String>,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// The rule in force (the credential's own, else the server's).
    on_new_fingerprint: &'static str,
    boundary: &'static str,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_used_service: Option<String>,
}

#[derive(Serialize)]
struct CreatedJson<'a> {
    secret_access_key: &'a str,
    #[serde(flatten)]
    details: CredentialJson,
}

fn credential_json(state: &AppState, r: CredentialRecord) -> CredentialJson {
    let rule = r
        .on_new_fingerprint
        .unwrap_or(state.credentials.settings().on_new_fingerprint);
    CredentialJson {
        access_key_id: r.access_key_id,
        principal: r.principal,
        groups: r.groups,
        state: r.state.as_str(),
        description: r.description,
        on_new_fingerprint: rule.as_str(),
        boundary: r.boundary.as_str(),
        created_at: rfc3339(from_unix_ms(r.created_at_ms)),
        updated_at: rfc3339(from_unix_ms(r.updated_at_ms)),
        last_used_at: r.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        last_used_region: r.last_used_region,
        last_used_service: r.last_used_service,
    }
}

/// The groups of a new credential's signer. An admin's default is `["service"]`; anyone
/// else's is none, and they may name only groups they belong to: a credential never carries
/// more rights than whoever made it holds (a custodian, who may make credentials for any
/// principal but does not sign, cannot make one that signs through the KMS-compatible API).
fn signer_groups(caller: &Principal, requested: Option<Vec<String>>) -> Result<Vec<String>, ApiError> {
    let admin = caller.groups.iter().any(|g| g == "admin");
    let groups = match requested {
        Some(groups) => groups,
        None if admin => vec![crate::model::DEFAULT_CREDENTIAL_GROUP.to_owned()],
        None => Vec::new(),
    };
    if !admin && let Some(beyond) = groups.iter().find(|g| !caller.groups.contains(g)) {
        return Err(ApiError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{} may not give a credential group `{}`: only admin gives groups beyond its own",
                caller.name,
                beyond.chars().take(64).collect::<String>()
            ),
        ));
    }
    Ok(groups)
}

/// `boundary` of a new credential: `process` (default) or `hsm`.
fn boundary(text: Option<&str>) -> Result<Boundary, ApiError> {
    match text {
        None | Some("process") => Ok(Boundary::Process),
        Some("hsm") => Ok(Boundary::Hsm),
        Some(other) => Err(ApiError::invalid(format!(
            "unknown boundary `{other}` (expected process or hsm)"
        ))),
    }
}

pub(crate) fn credential_error(e: CredentialError) -> ApiError {
    match e {
        CredentialError::NotFound(_) => ApiError::new(ErrorCode::CredentialNotFound, e.to_string()),
        CredentialError::Invalid(m) => ApiError::invalid(m),
        CredentialError::Precondition(m) => ApiError::new(ErrorCode::FailedPrecondition, m),
        CredentialError::Kek(k) => kek_error(k),
        CredentialError::Store(s) => store_error(s),
        CredentialError::Corrupt(m) => ApiError::internal(format!("corrupt credential data: {m}")),
        CredentialError::Random => ApiError::internal(e),
    }
}

/// The audit resource of credential `id`; an id that is not one (`valid_access_key_id`) is
/// recorded as such, never echoed into the trail.
fn resource_of(id: &str) -> String {
    if valid_access_key_id(id) {
        format!("credential:{id}")
    } else {
        "credential:<invalid id>".into()
    }
}

// ----- /v1/credentials ------------------------------------------------------------------

async fn collection(state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::POST => (Action::CreateCredential, create(&state, &mut call).await),
        Method::GET => (Action::ListCredentials, list(&state, &mut call).await),
        _ => return reply::error(method_not_allowed(&call, "POST, GET")),
    };
    audited(&state, &mut call, action, "credentials".into(), result).await
}

async fn create(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: CreateRequest = reply::parse_json(&body)?;
    let resource = Resource::Credential {
        id: "",
        principal: &req.principal,
    };
    authorize(state, call, &caller, Action::CreateCredential, &resource)?;
    let new = NewCredential {
        on_new_fingerprint: rule(req.on_new_fingerprint.as_deref())?,
        boundary: boundary(req.boundary.as_deref())?,
        groups: signer_groups(&caller, req.groups)?,
        principal: req.principal,
        description: req.description,
    };
    intend(state, call, Action::CreateCredential, "credentials").await?;
    let (record, secret) = state.credentials.create(new).await.map_err(credential_error)?;
    call.note.resource = Some(resource_of(&record.access_key_id));
    let created = CreatedJson {
        secret_access_key: secret.expose_secret(),
        details: credential_json(state, record),
    };
    Ok(json(StatusCode::CREATED, &created))
}

async fn list(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ListCredentials,
        &Resource::Collection("credentials"),
    )?;
    call.expect_no_body().await?;
    let limit = call.page_limit(DEFAULT_LIST, MAX_LIST)?;
    let principal = call.query_param("principal")?;
    let after = call.query_param("cursor")?;
    let records = state
        .credentials
        .list(principal.as_deref(), after.as_deref(), limit)
        .await
        .map_err(credential_error)?;
    let next = if records.len() == limit as usize {
        records.last().map(|r| r.access_key_id.clone())
    } else {
        None
    };
    let credentials: Vec<CredentialJson> = records.into_iter().map(|r| credential_json(state, r)).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "credentials": credentials, "next": next }),
    ))
}

// ----- /v1/credentials/import ----------------------------------------------------------------

async fn import(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::POST {
        return reply::error(method_not_allowed(&call, "POST"));
    }
    let result = import_credential(&state, &mut call).await;
    audited(
        &state,
        &mut call,
        Action::ImportCredential,
        "credentials".into(),
        result,
    )
    .await
}

async fn import_credential(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: ImportRequest = reply::parse_json(&body)?;
    call.note.resource = Some(resource_of(&req.access_key_id));
    // The id's shape first: a policy never sees an id that cannot be one.
    check_imported_id(&req.access_key_id).map_err(credential_error)?;
    let resource = Resource::Credential {
        id: &req.access_key_id,
        principal: &req.principal,
    };
    authorize(state, call, &caller, Action::ImportCredential, &resource)?;
    let secret = SecretBytes::from_slice(req.secret_access_key.as_bytes());
    let new = NewCredential {
        on_new_fingerprint: rule(req.on_new_fingerprint.as_deref())?,
        boundary: boundary(req.boundary.as_deref())?,
        groups: signer_groups(&caller, req.groups.clone())?,
        principal: req.principal.clone(),
        description: req.description.clone(),
    };
    intend(state, call, Action::ImportCredential, "credentials").await?;
    let record = state
        .credentials
        .import(&req.access_key_id, &secret, new)
        .await
        .map_err(credential_error)?;
    Ok(json(StatusCode::CREATED, &credential_json(state, record)))
}

// ----- /v1/credentials/{id} ------------------------------------------------------------------

/// Decides `action` on existing credential `id` with its principal; a credential that does
/// not exist is decided with principal "" (a caller who may not see it learns nothing).
async fn authorize_credential(
    state: &AppState,
    call: &mut Call,
    caller: &Principal,
    action: Action,
    id: &str,
) -> Result<(), ApiError> {
    let owner = state.credentials.owner(id).await.map_err(credential_error)?;
    let resource = Resource::Credential {
        id,
        principal: owner.as_deref().unwrap_or(""),
    };
    authorize(state, call, caller, action, &resource)
}

async fn one(id: String, state: Arc<AppState>, mut call: Call) -> Response {
    let (action, result) = match call.method {
        Method::GET => (Action::GetCredential, get(&state, &mut call, &id).await),
        Method::PATCH => (Action::UpdateCredential, update(&state, &mut call, &id).await),
        Method::DELETE => (Action::DeleteCredential, delete(&state, &mut call, &id).await),
        _ => return reply::error(method_not_allowed(&call, "GET, PATCH, DELETE")),
    };
    audited(&state, &mut call, action, resource_of(&id), result).await
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if valid_access_key_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::CredentialNotFound,
            "no credential has this access key id",
        ))
    }
}

async fn get(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_credential(state, call, &caller, Action::GetCredential, id).await?;
    call.expect_no_body().await?;
    check_id(id)?;
    let record = state.credentials.get(id).await.map_err(credential_error)?;
    Ok(json(StatusCode::OK, &credential_json(state, record)))
}

async fn update(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_credential(state, call, &caller, Action::UpdateCredential, id).await?;
    let body = call.read_body(state.limits.max_body_bytes).await?;
    let req: PatchRequest = reply::parse_json(&body)?;
    check_id(id)?;
    let patch = Patch {
        state: req
            .state
            .as_deref()
            .map(|s| CredentialState::parse(s).ok_or_else(|| ApiError::invalid("state must be active or inactive")))
            .transpose()?,
        on_new_fingerprint: match req.on_new_fingerprint {
            None => None,
            Some(text) => Some(rule(text.as_deref())?),
        },
    };
    if patch.state.is_none() && patch.on_new_fingerprint.is_none() {
        return Err(ApiError::invalid(
            "nothing to change: give state and/or on_new_fingerprint",
        ));
    }
    intend(state, call, Action::UpdateCredential, &resource_of(id)).await?;
    let record = state.credentials.update(id, patch).await.map_err(credential_error)?;
    Ok(json(StatusCode::OK, &credential_json(state, record)))
}

async fn delete(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_credential(state, call, &caller, Action::DeleteCredential, id).await?;
    call.expect_no_body().await?;
    check_id(id)?;
    intend(state, call, Action::DeleteCredential, &resource_of(id)).await?;
    state.credentials.delete(id).await.map_err(credential_error)?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "access_key_id": id, "deleted": true }),
    ))
}

// ----- /v1/credentials/{id}/activity ---------------------------------------------------------

async fn activity(id: String, state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = read_activity(&state, &mut call, &id).await;
    audited(
        &state,
        &mut call,
        Action::ReadCredentialActivity,
        resource_of(&id),
        result,
    )
    .await
}

async fn read_activity(state: &AppState, call: &mut Call, id: &str) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize_credential(state, call, &caller, Action::ReadCredentialActivity, id).await?;
    call.expect_no_body().await?;
    check_id(id)?;
    let a = state.credentials.activity(id).await.map_err(credential_error)?;
    let fingerprints = fingerprints_json(a.fingerprints);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "access_key_id": id,
            "last_used_at": a.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
            "last_used_region": a.last_used_region,
            "last_used_service": a.last_used_service,
            "fingerprints": fingerprints,
        }),
    ))
}
