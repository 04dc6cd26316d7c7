//! Every way an authorization is malformed, in both forms, and the input limits. Each case
//! must be refused as `MALFORMED_AUTHORIZATION` — never missing, never a panic.

use super::*;

const SIGNED: &str = "host;x-amz-date";

fn assert_malformed(label: &str, req: &Req) {
    match req.verify() {
        Err(Refusal::MalformedAuthorization(_)) => {}
        other => panic!("{label}: expected MalformedAuthorization, got {other:?}"),
    }
}

/// The request with its Authorization header replaced by `value`.
fn with_authorization(value: &str) -> Req {
    Req::get("/").with_header("Authorization", value)
}

#[test]
fn malformed_authorization_headers_are_refused() {
    let good = authorization_header("service", SIGNED, PLACEHOLDER_SIGNATURE);
    let many_names = (0..65)
        .map(|i| format!("h{i:02}"))
        .collect::<Vec<_>>()
        .join(";")
        .replace("h00", "host");
    let cases: Vec<(&str, String)> = vec![
        (
            "another algorithm",
            good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        ),
        (
            "no space after the algorithm",
            good.replacen("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256", 1),
        ),
        ("a component without `=`", good.replace("Signature=", "Signature")),
        ("an unknown component", format!("{good}, Foo=bar")),
        ("a repeated component", format!("{good}, SignedHeaders=host")),
        (
            "a missing component",
            good.replace(&format!(", Signature={PLACEHOLDER_SIGNATURE}"), ""),
        ),
        (
            "a component name in another case",
            good.replace("Credential=", "credential="),
        ),
        ("a four-part credential", good.replace("/us-east-1", "")),
        (
            "a six-part credential",
            good.replace("/aws4_request", "/x/aws4_request"),
        ),
        (
            "an access key id with a symbol",
            good.replace("AKIDEXAMPLE", "AKID-EXAMPLE"),
        ),
        ("an empty access key id", good.replace("AKIDEXAMPLE", "")),
        (
            "a 129-character access key id",
            good.replace("AKIDEXAMPLE", &"A".repeat(129)),
        ),
        ("a seven-digit credential date", good.replace("/20150830/", "/2015083/")),
        (
            "a credential date that is not the request's",
            good.replace("/20150830/", "/20150831/"),
        ),
        ("an empty region", good.replace("/us-east-1/", "//")),
        ("a service with a space", good.replace("/service/", "/ser vice/")),
        ("another scope terminator", good.replace("aws4_request", "aws5_request")),
        ("empty SignedHeaders", good.replace(SIGNED, "")),
        ("unsorted SignedHeaders", good.replace(SIGNED, "x-amz-date;host")),
        ("repeated SignedHeaders", good.replace(SIGNED, "host;host;x-amz-date")),
        ("uppercase SignedHeaders", good.replace(SIGNED, "Host;x-amz-date")),
        ("an empty signed name", good.replace(SIGNED, "host;;x-amz-date")),
        ("a signed name with a colon", good.replace(SIGNED, "host;x:y")),
        ("host not signed", good.replace(SIGNED, "x-amz-date")),
        ("65 signed headers", good.replace(SIGNED, &many_names)),
        (
            "an uppercase signature",
            good.replace(PLACEHOLDER_SIGNATURE, &"A".repeat(64)),
        ),
        (
            "a 63-digit signature",
            good.replace(PLACEHOLDER_SIGNATURE, &"0".repeat(63)),
        ),
        (
            "a non-hex signature",
            good.replace(PLACEHOLDER_SIGNATURE, &"g".repeat(64)),
        ),
        (
            "a multi-byte signature",
            good.replace(PLACEHOLDER_SIGNATURE, &"é".repeat(32)),
        ),
    ];
    for (label, value) in &cases {
        assert_malformed(label, &with_authorization(value));
    }
}

#[test]
fn malformed_or_ambiguous_dates_are_refused() {
    let good = authorization_header("service", SIGNED, PLACEHOLDER_SIGNATURE);
    assert_malformed(
        "no date at all",
        &with_authorization(&good).without_header("X-Amz-Date"),
    );
    for bad in [
        "20150830T123600",
        "20151330T123600Z",
        "20150230T123600Z",
        "20150830T246000Z",
        "2015-08-30T12:36:00Z",
        "+0150830T123600Z",
        "20150830t123600z",
    ] {
        let req = with_authorization(&good)
            .without_header("X-Amz-Date")
            .with_header("X-Amz-Date", bad);
        assert_malformed(bad, &req);
    }
    let date_only = with_authorization(&good.replace(SIGNED, "date;host")).without_header("X-Amz-Date");
    for bad in [
        "Sun, 30 Aug 2015 12:36:00 UTC",
        "2015-08-30T12:36:00Z",
        "Sun, 30 Aug 2015 12:36:00",
    ] {
        assert_malformed(bad, &date_only.clone().with_header("Date", bad));
    }
    let repeated_date = date_only
        .with_header("Date", "Sun, 30 Aug 2015 12:36:00 GMT")
        .with_header("Date", "Sun, 30 Aug 2015 12:36:00 GMT");
    assert_malformed("a repeated Date", &repeated_date);
    assert_malformed(
        "a repeated X-Amz-Date",
        &with_authorization(&good).with_header("x-amz-date", AMZ_DATE),
    );
    assert_malformed(
        "a repeated Authorization",
        &with_authorization(&good).with_header("authorization", &good),
    );
}

#[test]
fn requests_that_cannot_be_canonicalised_are_malformed() {
    let signed = |names: &str| with_authorization(&authorization_header("service", names, PLACEHOLDER_SIGNATURE));
    assert_malformed(
        "a signed header absent from the request",
        &signed("host;x-amz-date;x-foo"),
    );
    let mut method = signed(SIGNED);
    method.method = "GE T".to_owned();
    assert_malformed("a method that is not a token", &method);
    method.method = String::new();
    assert_malformed("an empty method", &method);
    for bad in [
        "abc",
        &"A".repeat(64),
        "STREAMING-",
        "streaming-aws4-hmac-sha256-payload",
        "unsigned-payload",
    ] {
        let req = signed("host;x-amz-content-sha256;x-amz-date").with_header("x-amz-content-sha256", bad);
        assert_malformed(bad, &req);
    }
    let repeated = signed(SIGNED)
        .with_header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
        .with_header("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD);
    assert_malformed("a repeated x-amz-content-sha256", &repeated);
}

#[test]
fn malformed_presigned_parameters_are_refused() {
    let base = Req::get("/").without_header("X-Amz-Date");
    let good = presigned_query("service", "host", "3600");
    let param = |name: &str| {
        good.split('&')
            .find(|p| p.starts_with(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let mut cases: Vec<(String, String)> = Vec::new();
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
    ] {
        let without: Vec<&str> = good
            .split('&')
            .filter(|p| !p.starts_with(&format!("{name}=")))
            .collect();
        cases.push((format!("without {name}"), without.join("&")));
    }
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
    ] {
        cases.push((format!("repeated {name}"), format!("{good}&{}", param(name))));
    }
    cases.push((
        "another algorithm".into(),
        good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
    ));
    cases.push(("a non-UTF-8 credential".into(), good.replace("AKIDEXAMPLE", "AKID%FF")));
    cases.push(("a bad date".into(), good.replace(AMZ_DATE, "20150830")));
    cases.push((
        "an unsigned host".into(),
        good.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-foo"),
    ));
    for expires in ["0", "604801", "abc", "-1", "", "+5", "99999999", "3600.0"] {
        cases.push((
            format!("X-Amz-Expires={expires}"),
            good.replace("X-Amz-Expires=3600", &format!("X-Amz-Expires={expires}")),
        ));
    }
    for (label, query) in cases {
        let mut req = base.clone();
        req.query = query;
        assert_malformed(&label, &req);
    }
    let mut longest = base.clone();
    longest.query = good.replace("X-Amz-Expires=3600", "X-Amz-Expires=604800");
    assert_eq!(longest.parse().unwrap().expires_s, Some(MAX_PRESIGNED_EXPIRES_S));
}

#[test]
fn oversized_requests_are_refused_before_any_work() {
    let good = with_authorization(&authorization_header("service", SIGNED, PLACEHOLDER_SIGNATURE));
    let mut long_path = good.clone();
    long_path.path = format!("/{}", "a".repeat(MAX_TARGET_BYTES));
    assert_malformed("a path past the limit", &long_path);
    let mut long_query = good.clone();
    long_query.query = "a".repeat(MAX_TARGET_BYTES + 1);
    assert_malformed("a query past the limit", &long_query);
    let mut many_params = good.clone();
    many_params.query = vec!["a=1"; MAX_QUERY_PARAMS + 1].join("&");
    assert_malformed("too many query parameters", &many_params);
    let mut many_headers = good.clone();
    many_headers
        .headers
        .extend((0..MAX_HEADERS).map(|i| (format!("x-h{i}").into(), "".into())));
    assert_malformed("too many headers", &many_headers);
    let big_headers = good.with_header("x-big", &"a".repeat(MAX_HEADER_BYTES));
    assert_malformed("headers past the byte limit", &big_headers);
}

#[test]
fn no_arbitrary_authorization_or_query_makes_verification_panic() {
    // A small deterministic generator over the characters that matter to the parsers.
    let alphabet: Vec<char> = "AWS4-HMAC-SHA256 =,;/%&?Credential SignedHeaders Signature X-Amz-0123456789abcdefé\t\n"
        .chars()
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % u64::try_from(bound).unwrap()).unwrap()
    };
    let good = authorization_header("service", SIGNED, PLACEHOLDER_SIGNATURE);
    for _ in 0..3000 {
        let mut text: Vec<char> = good.chars().collect();
        for _ in 0..=next(6) {
            let at = next(text.len() + 1);
            match next(3) {
                0 if at < text.len() => {
                    text.remove(at);
                }
                _ => text.insert(at, alphabet[next(alphabet.len())]),
            }
        }
        let text: String = text.into_iter().collect();
        let _ = with_authorization(&text).verify();
        let mut req = Req::get(&text);
        req.query = text.clone();
        let _ = req.verify();
    }
}
