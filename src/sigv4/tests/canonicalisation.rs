//! Path, query and header canonicalisation beyond what the vectors exercise, and the S3
//! single-encoding rule.

use super::super::canonical::{canonical_uri, percent_decode};
use super::*;

const S3: PathRules = PathRules {
    normalize: false,
    double_encode: false,
};
const OTHER: PathRules = PathRules {
    normalize: true,
    double_encode: true,
};

#[test]
fn path_rules_follow_the_service() {
    assert_eq!(PathRules::for_service("s3"), S3);
    assert_eq!(PathRules::for_service("service"), OTHER);
    assert_eq!(PathRules::for_service("S3"), OTHER);
}

#[test]
fn s3_decodes_escapes_once_and_keeps_an_encoded_slash_inside_its_segment() {
    assert_eq!(canonical_uri("/bucket/a%2Fb%20c/%7e d", S3), "/bucket/a%2Fb%20c/~%20d");
    assert_eq!(canonical_uri("/bucket/a%2fb", S3), "/bucket/a%2Fb");
    // No normalisation: object keys may hold `//`, `.` and `..`.
    assert_eq!(canonical_uri("/bucket//./../key", S3), "/bucket//./../key");
    // An invalid escape is its own `%`.
    assert_eq!(canonical_uri("/bucket/100%", S3), "/bucket/100%25");
    assert_eq!(canonical_uri("/bucket/%zz", S3), "/bucket/%25zz");
    assert_eq!(canonical_uri("", S3), "/");
}

#[test]
fn other_services_encode_the_raw_path_again() {
    assert_eq!(canonical_uri("/a%2Fb%20c/%7e d", OTHER), "/a%252Fb%2520c/%257e%20d");
    assert_eq!(canonical_uri("/é", OTHER), "/%C3%A9");
    assert_eq!(canonical_uri("", OTHER), "/");
}

#[test]
fn normalisation_removes_dot_segments_and_empty_segments_and_keeps_a_trailing_slash() {
    for (raw, canonical) in [
        ("/a/./b/../c/", "/a/c/"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/../..", "/"),
        ("//a//b", "/a/b"),
        ("/a/.../b", "/a/.../b"),
        ("a/b", "/a/b"),
    ] {
        assert_eq!(canonical_uri(raw, OTHER), canonical, "{raw}");
    }
}

#[test]
fn percent_decoding_keeps_invalid_escapes_and_plus_signs() {
    assert_eq!(percent_decode(b"a%20b+c%2"), b"a b+c%2");
    assert_eq!(percent_decode(b"%%41%4"), b"%A%4");
    assert_eq!(percent_decode(b"%E1%88%B4"), "ሴ".as_bytes());
}

/// The canonical query of a header-form request with query `query`.
fn canonical_query_of(query: &str) -> String {
    let mut req = sign_header(Req::get("/"), "service", "host;x-amz-date");
    req.query = query.to_owned();
    let auth = req.parse().unwrap();
    let canonical = canonical_request(&req.http(), &auth, OTHER, EMPTY_SHA256, false).unwrap();
    canonical.lines().nth(2).unwrap().to_owned()
}

#[test]
fn the_canonical_query_is_decoded_re_encoded_and_sorted_by_name_then_value() {
    assert_eq!(canonical_query_of(""), "");
    assert_eq!(canonical_query_of("b=2&a=1&a=0"), "a=0&a=1&b=2");
    assert_eq!(canonical_query_of("Param-3=x&Param=y"), "Param=y&Param-3=x");
    assert_eq!(canonical_query_of("a+b=c+d"), "a%2Bb=c%2Bd");
    assert_eq!(canonical_query_of("a=%zz&b=%41%7e"), "a=%25zz&b=A~");
    assert_eq!(canonical_query_of("flag&x=1=2"), "flag=&x=1%3D2");
    assert_eq!(canonical_query_of("a=1&&b=2&"), "a=1&b=2");
    assert_eq!(canonical_query_of("k=a%20b&k=a b"), "k=a%20b&k=a%20b");
}

#[test]
fn canonical_headers_fold_whitespace_and_join_repeats_in_order() {
    let req = Req::get("/")
        .with_header("X-Multi", " b ")
        .with_header("x-tabs", "\t a \t\r\n b  ")
        .with_header("X-MULTI", "a")
        .with_header("x-empty", "");
    let req = sign_header(req, "service", "host;x-amz-date;x-empty;x-multi;x-tabs");
    let auth = req.parse().unwrap();
    let canonical = canonical_request(&req.http(), &auth, OTHER, EMPTY_SHA256, false).unwrap();
    assert!(
        canonical.contains("\nx-empty:\nx-multi:b,a\nx-tabs:a b\n\n"),
        "{canonical}"
    );
    assert!(req.verify().is_ok());
}

#[test]
fn a_service_verifies_under_its_own_path_rules_by_default() {
    let s3 = sign_header(Req::get("/bucket/my%20key//x"), "s3", "host;x-amz-date");
    assert!(s3.verify().is_ok());
    // Single encoding: the raw space and `%20` are the same S3 key.
    let mut raw_space = s3.clone();
    raw_space.path = "/bucket/my key//x".to_owned();
    assert!(raw_space.verify().is_ok());
    // Without normalisation the repeated slash is part of the key.
    let mut collapsed = s3;
    collapsed.path = "/bucket/my%20key/x".to_owned();
    assert_eq!(collapsed.verify().unwrap_err(), Refusal::SignatureMismatch);

    let other = sign_header(Req::get("/a//b/../c"), "service", "host;x-amz-date");
    let mut normalised = other.clone();
    normalised.path = "/a/c".to_owned();
    assert!(other.verify().is_ok() && normalised.verify().is_ok());
}
