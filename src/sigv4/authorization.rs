//! Reading a SigV4 authorization out of a request, and its validity window.
//!
//! Owns the two wire forms — the `Authorization: AWS4-HMAC-SHA256 …` header and the presigned
//! query (`X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
//! `X-Amz-SignedHeaders`, `X-Amz-Signature`) — and the timestamp formats (`X-Amz-Date`'s
//! basic ISO 8601 and the `Date` header's IMF-fixdate).
//!
//! Parsing is strict: every component exactly once, nothing unknown, no request carrying
//! both forms. Anything a signer could not have produced is malformed rather than guessed
//! at, so that one request never has two readings. Nothing here is verified yet; a parsed
//! [`Authorization`] is only a claim until `signature_matches` agrees.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use super::canonical::{
    QueryPair, SIGNATURE_PARAM, header_values, hex_value, query_pairs, single_header, validate_signed_headers,
};
use super::{ALGORITHM, Authorization, Form, HttpRequest, MAX_PRESIGNED_EXPIRES_S, Refusal, Scope};
use super::{Header, check_limits, malformed};

/// The `Date` header's IMF-fixdate (RFC 7231), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
const IMF_FIXDATE: &[BorrowedFormatItem<'static>] =
    format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");

/// Parses the `Authorization` header form or the presigned form (`X-Amz-Signature` in the
/// query). Both present → malformed; neither → missing.
pub fn parse(req: &HttpRequest<'_>) -> Result<Authorization, Refusal> {
    check_limits(req)?;
    let header = single_header(req.headers, "authorization")?;
    let pairs = query_pairs(req.query)?;
    let presigned = pairs.iter().any(|(name, _)| name == SIGNATURE_PARAM);
    match (header, presigned) {
        (Some(_), true) => Err(malformed("both an Authorization header and X-Amz-Signature")),
        (None, false) => Err(Refusal::MissingAuthorization),
        (Some(value), false) => parse_header_form(value, req.headers),
        (None, true) => parse_presigned(&pairs),
    }
}

/// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`, components in any order.
fn parse_header_form(value: &str, headers: &[Header<'_>]) -> Result<Authorization, Refusal> {
    let rest = value
        .trim_matches([' ', '\t'])
        .strip_prefix(ALGORITHM)
        .filter(|rest| rest.starts_with([' ', '\t']))
        .ok_or_else(|| malformed("the Authorization header is not AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',') {
        let component = component.trim_matches([' ', '\t']);
        let (key, value) = component
            .split_once('=')
            .ok_or_else(|| malformed("an Authorization component has no `=`"))?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => return Err(malformed("unknown Authorization component")),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!("{key} is repeated")));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) = (credential, signed_headers, signature) else {
        return Err(malformed("Credential, SignedHeaders and Signature are all required"));
    };
    let (timestamp_unix_s, amz_date) = header_timestamp(headers)?;
    build(
        Form::Header,
        credential,
        signed_headers,
        signature,
        timestamp_unix_s,
        amz_date,
        None,
    )
}

/// `X-Amz-Date` if present, else the `Date` header; each at most once.
fn header_timestamp(headers: &[Header<'_>]) -> Result<(i64, String), Refusal> {
    if let Some(amz_date) = single_header(headers, "x-amz-date")? {
        let amz_date = amz_date.trim();
        return Ok((parse_amz_date(amz_date)?, amz_date.to_owned()));
    }
    if header_values(headers, "date").count() > 1 {
        return Err(malformed("the date header is repeated"));
    }
    let date = header_values(headers, "date")
        .next()
        .ok_or_else(|| malformed("neither X-Amz-Date nor Date is present"))?;
    let parsed = PrimitiveDateTime::parse(date.trim(), IMF_FIXDATE)
        .map_err(|_| malformed("the Date header is not an IMF-fixdate"))?
        .assume_utc();
    Ok((parsed.unix_timestamp(), amz_date_of(parsed)))
}

/// `YYYYMMDD'T'HHMMSS'Z'` of a UTC time.
fn amz_date_of(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The presigned parameters, each exactly once.
fn parse_presigned(pairs: &[QueryPair]) -> Result<Authorization, Refusal> {
    if param(pairs, "X-Amz-Algorithm")? != ALGORITHM {
        return Err(malformed("X-Amz-Algorithm is not AWS4-HMAC-SHA256"));
    }
    let credential = param(pairs, "X-Amz-Credential")?;
    let amz_date = param(pairs, "X-Amz-Date")?;
    let expires = param(pairs, "X-Amz-Expires")?;
    let signed_headers = param(pairs, "X-Amz-SignedHeaders")?;
    let signature = param(pairs, "X-Amz-Signature")?;
    let expires_s = parse_expires(expires)?;
    let timestamp_unix_s = parse_amz_date(amz_date)?;
    build(
        Form::Presigned,
        credential,
        signed_headers,
        signature,
        timestamp_unix_s,
        amz_date.to_owned(),
        Some(expires_s),
    )
}

/// The decoded value of a presigned parameter that must appear exactly once.
fn param<'p>(pairs: &'p [QueryPair], name: &str) -> Result<&'p str, Refusal> {
    let mut values = pairs.iter().filter(|(n, _)| n == name.as_bytes()).map(|(_, v)| v);
    let value = values.next().ok_or_else(|| malformed(format!("{name} is missing")))?;
    if values.next().is_some() {
        return Err(malformed(format!("{name} is repeated")));
    }
    std::str::from_utf8(value).map_err(|_| malformed(format!("{name} is not UTF-8")))
}

/// `1..=604800` seconds, plain digits.
fn parse_expires(text: &str) -> Result<i64, Refusal> {
    let bad = || malformed("X-Amz-Expires is not a whole number of seconds in 1..=604800");
    if text.is_empty() || text.len() > 7 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds: i64 = text.parse().map_err(|_| bad())?;
    if (1..=MAX_PRESIGNED_EXPIRES_S).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(bad())
    }
}

/// The common checks of both forms, and the assembled [`Authorization`].
fn build(
    form: Form,
    credential: &str,
    signed_headers: &str,
    signature: &str,
    timestamp_unix_s: i64,
    amz_date: String,
    expires_s: Option<i64>,
) -> Result<Authorization, Refusal> {
    let (access_key_id, scope) = parse_credential(credential)?;
    if amz_date.get(..8) != Some(scope.date.as_str()) {
        return Err(malformed("the credential date is not the request's date"));
    }
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    validate_signed_headers(&signed_headers)?;
    Ok(Authorization {
        form,
        access_key_id,
        scope,
        signed_headers,
        signature: parse_signature(signature)?,
        timestamp_unix_s,
        amz_date,
        expires_s,
    })
}

/// `AKID/YYYYMMDD/region/service/aws4_request`.
fn parse_credential(credential: &str) -> Result<(String, Scope), Refusal> {
    let mut parts = credential.split('/');
    let (Some(akid), Some(date), Some(region), Some(service), Some(terminator), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(malformed("the credential is not AKID/date/region/service/aws4_request"));
    };
    if akid.is_empty() || akid.len() > 128 || !akid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed("the access key id is not 1 to 128 letters and digits"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("the credential date is not YYYYMMDD"));
    }
    for part in [region, service] {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
        if part.is_empty() || part.len() > 64 || !part.bytes().all(allowed) {
            return Err(malformed(
                "the credential region or service is empty or not a plain name",
            ));
        }
    }
    if terminator != "aws4_request" {
        return Err(malformed("the credential scope does not end in aws4_request"));
    }
    let scope = Scope {
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
    };
    Ok((akid.to_owned(), scope))
}

/// 64 lowercase hex digits.
fn parse_signature(text: &str) -> Result<[u8; 32], Refusal> {
    let bad = || malformed("the signature is not 64 lowercase hex digits");
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let [high, low] = pair else { return Err(bad()) };
        let (Some(high), Some(low)) = (hex_value(*high), hex_value(*low)) else {
            return Err(bad());
        };
        *byte = (high << 4) | low;
    }
    Ok(out)
}

/// `YYYYMMDD'T'HHMMSS'Z'`, a real calendar date and time, as Unix seconds.
fn parse_amz_date(text: &str) -> Result<i64, Refusal> {
    let bad = || malformed("X-Amz-Date is not YYYYMMDD'T'HHMMSS'Z'");
    let bytes = text.as_bytes();
    let [y0, y1, y2, y3, mo0, mo1, d0, d1, b'T', h0, h1, mi0, mi1, s0, s1, b'Z'] = bytes else {
        return Err(bad());
    };
    let mut fields = [0u16; 6];
    let groups: [&[u8]; 6] = [
        &[*y0, *y1, *y2, *y3],
        &[*mo0, *mo1],
        &[*d0, *d1],
        &[*h0, *h1],
        &[*mi0, *mi1],
        &[*s0, *s1],
    ];
    for (field, digits) in fields.iter_mut().zip(groups) {
        for &digit in digits {
            if !digit.is_ascii_digit() {
                return Err(bad());
            }
            *field = *field * 10 + u16::from(digit - b'0');
        }
    }
    let [year, month, day, hour, minute, second] = fields;
    let narrow = |v: u16| u8::try_from(v).map_err(|_| bad());
    let month = Month::try_from(narrow(month)?).map_err(|_| bad())?;
    let date = Date::from_calendar_date(i32::from(year), month, narrow(day)?).map_err(|_| bad())?;
    let time = Time::from_hms(narrow(hour)?, narrow(minute)?, narrow(second)?).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time).assume_utc().unix_timestamp())
}

/// Header form: `|now - timestamp| <= window_s`, else expired (too old) or not yet valid.
/// Presigned: `timestamp > now + window_s` is not yet valid; `now > timestamp + expires` is
/// expired. The arithmetic saturates, so extreme inputs refuse rather than wrap.
pub fn check_time(auth: &Authorization, now_unix_s: i64, window_s: i64) -> Result<(), Refusal> {
    let window_s = window_s.max(0);
    let age = now_unix_s.saturating_sub(auth.timestamp_unix_s);
    match auth.form {
        Form::Header if age > window_s => Err(Refusal::RequestExpired),
        Form::Header if age < window_s.saturating_neg() => Err(Refusal::RequestNotYetValid),
        Form::Header => Ok(()),
        Form::Presigned => {
            let expires_s = auth
                .expires_s
                .ok_or_else(|| malformed("a presigned request without X-Amz-Expires"))?;
            if age < window_s.saturating_neg() {
                Err(Refusal::RequestNotYetValid)
            } else if age > expires_s {
                Err(Refusal::RequestExpired)
            } else {
                Ok(())
            }
        }
    }
}
