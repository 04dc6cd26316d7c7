//! `GET /v1/reports/compliance?format=json|html`: the compliance report of
//! [`crate::report`], as JSON or as one self-contained HTML page. Reading it is audited
//! (`ReadComplianceReport`, resource `report:compliance`).

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::header::{self, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

use super::context::{Call, call};
use super::reply::{self, json};
use super::{AppState, audited, authenticate, authorize, method_not_allowed, store_error, with_state};
use crate::audit::action::Action;
use crate::error::{ApiError, ErrorCode};
use crate::policy::Resource;
use crate::report::{self, ReportError, html};

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("reports" / "compliance")
        .and(with_state(state))
        .and(call())
        .then(compliance_report)
        .boxed()
}

/// The representations the report is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Html,
}

async fn compliance_report(state: Arc<AppState>, mut call: Call) -> Response {
    if call.method != Method::GET {
        return reply::error(method_not_allowed(&call, "GET"));
    }
    let result = read_report(&state, &mut call).await;
    audited(
        &state,
        &mut call,
        Action::ReadComplianceReport,
        "report:compliance".into(),
        result,
    )
    .await
}

async fn read_report(state: &AppState, call: &mut Call) -> Result<Response, ApiError> {
    let caller = authenticate(state, call).await?;
    authorize(
        state,
        call,
        &caller,
        Action::ReadComplianceReport,
        &Resource::Collection("reports"),
    )?;
    call.expect_no_body().await?;
    let format = match call.query_param("format")?.as_deref() {
        None | Some("json") => Format::Json,
        Some("html") => Format::Html,
        Some(_) => return Err(ApiError::invalid("format must be json or html")),
    };
    state
        .audit
        .catch_up()
        .await
        .map_err(|e| ApiError::new(ErrorCode::AuditUnavailable, e.to_string()))?;
    let report = report::gather(
        &state.keys,
        &state.credentials,
        &state.apikeys,
        state.audit.trail(),
        state.clock.now(),
        state.report.cryptoperiod,
    )
    .await
    .map_err(|e| match e {
        ReportError::Keys(k) => ApiError::from(k),
        ReportError::Store(s) => store_error(s),
        ReportError::Credentials(c) => crate::api::credentials::credential_error(c),
        ReportError::ApiKeys(a) => crate::api::apikeys::api_key_error(a),
    })?;
    Ok(match format {
        Format::Json => json(StatusCode::OK, &report),
        Format::Html => html_page(html::render(&report)),
    })
}

/// A page that is not to be sniffed, framed, cached or allowed to load or run anything.
fn html_page(page: String) -> Response {
    let mut response = Response::new(page.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(html::CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
