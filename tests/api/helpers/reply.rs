//! [`Reply`]: what a test keeps of an HTTP answer (status, JSON body, `x-request-id`), and
//! the one place an answer becomes one, whoever sent the request (a [`super::TestApp`], a
//! [`super::DevProcess`], a raw connection). It never retries or judges an answer: the
//! tests assert.

use reqwest::StatusCode;
use serde_json::Value;

/// The response of a test request.
pub struct Reply {
    pub status: StatusCode,
    /// The body as JSON; `Null` when it is empty or not JSON (the tests then fail on the
    /// field they look for, with the status in their message).
    pub body: Value,
    pub request_id: Option<String>,
}

impl Reply {
    /// A reply from its parts, for answers read without reqwest (a raw HTTP/1.1 stream).
    pub fn from_parts(status: StatusCode, request_id: Option<String>, body: &[u8]) -> Self {
        Self {
            status,
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            request_id,
        }
    }

    /// Reads `resp` to its end; the error when the body could not be read.
    pub async fn read(resp: reqwest::Response) -> Result<Self, reqwest::Error> {
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = resp.bytes().await?;
        Ok(Self::from_parts(status, request_id, &bytes))
    }

    /// Sends `request` and reads its answer; panics when either fails (no test here expects
    /// a request without an answer, except through `TestApp::send_with`).
    pub async fn of(request: reqwest::RequestBuilder) -> Self {
        let resp = request.send().await.expect("request sent");
        Self::read(resp).await.expect("response read")
    }

    /// The `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}
