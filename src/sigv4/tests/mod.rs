//! Unit tests of the verification decisions, beside the known-answer vectors of
//! `sigv4::vectors`: a small signer built from this module's own canonicalisation (which the
//! vectors anchor) produces requests, and each test changes one thing about them.

mod canonicalisation;
mod malformed;
mod payload;
mod window;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::canonical::sha256_hex;
use super::*;

pub(super) const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the vectors' timestamp.
pub(super) const NOW: i64 = 1_440_938_160;
pub(super) const AMZ_DATE: &str = "20150830T123600Z";
pub(super) const WINDOW: i64 = 900;
pub(super) const PLACEHOLDER_SIGNATURE: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An owned request that lends itself out as an [`HttpRequest`].
#[derive(Clone, Debug)]
pub(super) struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<Header<'static>>,
    pub payload: Option<String>,
}

impl Req {
    /// `GET path` to example.amazonaws.com, with `X-Amz-Date` for the header form.
    pub(super) fn get(path: &str) -> Self {
        Self {
            method: "GET".to_owned(),
            path: path.to_owned(),
            query: String::new(),
            headers: vec![
                ("Host".into(), "example.amazonaws.com".into()),
                ("X-Amz-Date".into(), AMZ_DATE.into()),
            ],
            payload: None,
        }
    }

    pub(super) fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned().into(), value.to_owned().into()));
        self
    }

    pub(super) fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub(super) fn http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            payload_sha256: self.payload.as_deref(),
        }
    }

    pub(super) fn verify_at(&self, now: i64) -> Result<Authorization, Refusal> {
        verify(&self.http(), SECRET, now, WINDOW, None)
    }

    pub(super) fn verify(&self) -> Result<Authorization, Refusal> {
        self.verify_at(NOW)
    }

    pub(super) fn parse(&self) -> Result<Authorization, Refusal> {
        parse(&self.http())
    }
}

pub(super) fn credential(service: &str) -> String {
    format!("AKIDEXAMPLE/20150830/us-east-1/{service}/aws4_request")
}

pub(super) fn authorization_header(service: &str, signed: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={}, SignedHeaders={signed}, Signature={signature}",
        credential(service)
    )
}

/// The hex HMAC of candidate `index` of the request as it stands.
fn signature_of(req: &Req, index: usize) -> String {
    let http = req.http();
    let auth = parse(&http).expect("the request under signature parses");
    let rules = PathRules::for_service(&auth.scope.service);
    let candidates = strings_to_sign(&http, &auth, rules).expect("the request canonicalises");
    let key = signing_key(SECRET, &auth.scope);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_slice()).expect("any key length");
    mac.update(&candidates[index]);
    base16ct::lower::encode_string(&mac.finalize().into_bytes())
}

/// Signs in the header form for `service`, over the `;`-separated `signed` headers.
pub(super) fn sign_header(mut req: Req, service: &str, signed: &str) -> Req {
    req.headers.push((
        "Authorization".into(),
        authorization_header(service, signed, PLACEHOLDER_SIGNATURE).into(),
    ));
    let signature = signature_of(&req, 0);
    let last = req.headers.last_mut().expect("just pushed");
    last.1 = authorization_header(service, signed, &signature).into();
    req
}

/// The presigned parameters with a placeholder signature, in the order a signer writes them.
pub(super) fn presigned_query(service: &str, signed: &str, expires: &str) -> String {
    format!(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={AMZ_DATE}&X-Amz-Expires={expires}\
         &X-Amz-SignedHeaders={}&X-Amz-Signature={PLACEHOLDER_SIGNATURE}",
        credential(service).replace('/', "%2F"),
        signed.replace(';', "%3B"),
    )
}

/// Presigns with candidate `candidate` (0 = `UNSIGNED-PAYLOAD`, 1 = the body's hash, 2 and 3
/// the same without the session token), for 3600 s, signing only `host`.
pub(super) fn presign(mut req: Req, candidate: usize) -> Req {
    req = req.without_header("X-Amz-Date");
    let params = presigned_query("service", "host", "3600");
    req.query = if req.query.is_empty() {
        params
    } else {
        format!("{}&{params}", req.query)
    };
    let signature = signature_of(&req, candidate);
    req.query = req.query.replace(PLACEHOLDER_SIGNATURE, &signature);
    req
}

#[test]
fn a_signed_header_form_request_verifies_and_reports_its_scope() {
    let req = sign_header(Req::get("/"), "service", "host;x-amz-date");
    let auth = req.verify().unwrap();
    assert_eq!(auth.form, Form::Header);
    assert_eq!(auth.access_key_id, "AKIDEXAMPLE");
    assert_eq!(auth.scope.to_string_scope(), "20150830/us-east-1/service/aws4_request");
    assert_eq!(auth.signed_headers, ["host", "x-amz-date"]);
    assert_eq!((auth.timestamp_unix_s, auth.expires_s), (NOW, None));
}

#[test]
fn a_request_signed_with_another_secret_is_a_mismatch() {
    let req = sign_header(Req::get("/"), "service", "host;x-amz-date");
    assert_eq!(
        verify(&req.http(), b"another secret", NOW, WINDOW, None).unwrap_err(),
        Refusal::SignatureMismatch
    );
}

#[test]
fn a_request_without_any_authorization_is_missing_it() {
    assert_eq!(Req::get("/").verify().unwrap_err(), Refusal::MissingAuthorization);
    // Presigned parameters without X-Amz-Signature are not an authorization either.
    let mut req = Req::get("/");
    req.query = "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fservice%2Faws4_request".to_owned();
    assert_eq!(req.verify().unwrap_err(), Refusal::MissingAuthorization);
}

#[test]
fn a_request_carrying_both_forms_is_malformed() {
    let presigned = presign(Req::get("/"), 0);
    let header = authorization_header("service", "host;x-amz-date", PLACEHOLDER_SIGNATURE);
    let both = presigned
        .clone()
        .with_header("X-Amz-Date", AMZ_DATE)
        .with_header("Authorization", &header);
    assert!(matches!(both.verify(), Err(Refusal::MalformedAuthorization(_))));
    assert!(presigned.verify().is_ok());
}

#[test]
fn the_date_header_dates_a_header_form_request_without_x_amz_date() {
    let req = Req::get("/")
        .without_header("X-Amz-Date")
        .with_header("Date", "Sun, 30 Aug 2015 12:36:00 GMT");
    let req = sign_header(req, "service", "date;host");
    let auth = req.verify().unwrap();
    assert_eq!((auth.timestamp_unix_s, auth.amz_date.as_str()), (NOW, AMZ_DATE));
}

#[test]
fn every_refusal_has_its_stable_code() {
    let codes = [
        (Refusal::MissingAuthorization, "MISSING_AUTHORIZATION"),
        (Refusal::MalformedAuthorization("x".into()), "MALFORMED_AUTHORIZATION"),
        (Refusal::RequestExpired, "REQUEST_EXPIRED"),
        (Refusal::RequestNotYetValid, "REQUEST_NOT_YET_VALID"),
        (Refusal::SignatureMismatch, "SIGNATURE_MISMATCH"),
    ];
    for (refusal, code) in codes {
        assert_eq!(refusal.code(), code);
    }
}

#[test]
fn the_signing_key_matches_the_aws_documentation_example() {
    let scope = Scope {
        date: "20120215".into(),
        region: "us-east-1".into(),
        service: "iam".into(),
    };
    let key = signing_key(SECRET, &scope);
    let hex = base16ct::lower::encode_string(key.as_slice());
    assert_eq!(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

#[test]
fn no_candidate_means_no_match() {
    let key = [7u8; 32];
    assert!(!signature_matches(&key, &[], &[0u8; 32]));
    let text = b"some string to sign".to_vec();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(&text);
    let tag: [u8; 32] = mac.finalize().into_bytes().into();
    assert!(signature_matches(&key, &[b"other".to_vec(), text], &tag));
}

#[test]
fn payload_hash_of_the_empty_body_is_the_documented_constant() {
    assert_eq!(sha256_hex(b""), EMPTY_SHA256);
}
