//! The date window of the header form and the expiry of presigned URLs, at their edges.

use super::*;

#[test]
fn a_header_form_request_is_accepted_exactly_at_either_edge_of_the_window() {
    let req = sign_header(Req::get("/"), "service", "host;x-amz-date");
    assert!(req.verify_at(NOW + WINDOW).is_ok());
    assert!(req.verify_at(NOW - WINDOW).is_ok());
}

#[test]
fn one_second_beyond_the_window_a_header_form_request_is_expired_or_not_yet_valid() {
    let req = sign_header(Req::get("/"), "service", "host;x-amz-date");
    assert_eq!(req.verify_at(NOW + WINDOW + 1).unwrap_err(), Refusal::RequestExpired);
    assert_eq!(
        req.verify_at(NOW - WINDOW - 1).unwrap_err(),
        Refusal::RequestNotYetValid
    );
}

#[test]
fn a_presigned_url_is_valid_until_its_expiry_and_expired_one_second_after() {
    let req = presign(Req::get("/"), 0);
    assert!(req.verify_at(NOW + 3600).is_ok());
    assert_eq!(req.verify_at(NOW + 3601).unwrap_err(), Refusal::RequestExpired);
}

#[test]
fn a_presigned_url_dated_beyond_the_window_is_not_yet_valid() {
    let req = presign(Req::get("/"), 0);
    assert!(req.verify_at(NOW - WINDOW).is_ok());
    assert_eq!(
        req.verify_at(NOW - WINDOW - 1).unwrap_err(),
        Refusal::RequestNotYetValid
    );
}

#[test]
fn time_checks_come_before_the_signature() {
    // An expired request with a wrong signature reports the expiry: no HMAC work for it.
    let req = sign_header(Req::get("/"), "service", "host;x-amz-date");
    let mut wrong = req.clone();
    let last = wrong.headers.last_mut().unwrap();
    last.1 = authorization_header("service", "host;x-amz-date", PLACEHOLDER_SIGNATURE).into();
    assert_eq!(wrong.verify_at(NOW + WINDOW + 1).unwrap_err(), Refusal::RequestExpired);
    assert_eq!(wrong.verify().unwrap_err(), Refusal::SignatureMismatch);
}

#[test]
fn extreme_clocks_and_windows_refuse_without_overflow() {
    let header = sign_header(Req::get("/"), "service", "host;x-amz-date")
        .parse()
        .unwrap();
    let presigned = presign(Req::get("/"), 0).parse().unwrap();
    for auth in [&header, &presigned] {
        assert_eq!(check_time(auth, i64::MAX, WINDOW), Err(Refusal::RequestExpired));
        assert_eq!(check_time(auth, i64::MIN, WINDOW), Err(Refusal::RequestNotYetValid));
        assert_eq!(check_time(auth, NOW, i64::MAX), Ok(()));
    }
    let mut far = header.clone();
    far.timestamp_unix_s = i64::MIN;
    assert_eq!(check_time(&far, i64::MAX, WINDOW), Err(Refusal::RequestExpired));
    far.timestamp_unix_s = i64::MAX;
    assert_eq!(check_time(&far, i64::MIN, WINDOW), Err(Refusal::RequestNotYetValid));
    // A negative window is no window: only the exact second passes.
    assert_eq!(check_time(&header, NOW, -5), Ok(()));
    assert_eq!(check_time(&header, NOW + 1, -5), Err(Refusal::RequestExpired));
}

#[test]
fn a_presigned_authorization_without_an_expiry_is_malformed() {
    let mut auth = presign(Req::get("/"), 0).parse().unwrap();
    auth.expires_s = None;
    assert!(matches!(
        check_time(&auth, NOW, WINDOW),
        Err(Refusal::MalformedAuthorization(_))
    ));
}
