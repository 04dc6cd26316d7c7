//! The caller name a client certificate carries: its first URI subjectAltName (e.g. a SPIFFE
//! ID `spiffe://example.org/payments`), else its first DNS subjectAltName.
//!
//! The certificate is decoded by x509-cert (RFC 5280 §4.1, §4.2.1.6). This must only ever
//! run on a certificate that rustls/webpki has already validated against the client CA: it
//! checks no signature, validity or constraint. A malformed encoding, or a certificate with
//! two subjectAltName extensions, yields no name (never a panic, never a guess).

use x509_cert::Certificate;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

/// Longest name accepted (the SPIFFE ID limit); longer ones give no principal.
const MAX_NAME_LEN: usize = 2048;

/// The principal name of a DER certificate: its first URI SAN, else its first DNS SAN;
/// `None` when it has neither, when the chosen name is not visible ASCII (1 to
/// 2048 bytes, the SPIFFE ID limit), or when the encoding is malformed.
pub(crate) fn principal_name(cert_der: &[u8]) -> Option<String> {
    let certificate = Certificate::from_der(cert_der).ok()?;
    let (_critical, names) = certificate.tbs_certificate().get_extension::<SubjectAltName>().ok()??;
    principal_of(&names.0)
}

/// The principal among the `GeneralNames` of a subjectAltName extension.
pub(crate) fn principal_of(names: &[GeneralName]) -> Option<String> {
    let first_uri = names.iter().find_map(|name| match name {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str()),
        _ => None,
    });
    let first_dns = names.iter().find_map(|name| match name {
        GeneralName::DnsName(dns) => Some(dns.as_str()),
        _ => None,
    });
    let (chosen, is_dns) = match (first_uri, first_dns) {
        (Some(uri), _) => (uri, false),
        (None, Some(dns)) => (dns, true),
        (None, None) => return None,
    };
    let visible = !chosen.is_empty() && chosen.len() <= MAX_NAME_LEN && chosen.bytes().all(|b| b.is_ascii_graphic());
    if !visible {
        return None;
    }
    // DNS names compare case-insensitively; one spelling per caller keeps group lookups
    // and the audit trail consistent. URIs are kept as issued (their paths are
    // case-sensitive).
    Some(if is_dns {
        chosen.to_ascii_lowercase()
    } else {
        chosen.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    fn cert_with(sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.try_into().unwrap())
    }

    fn dns(text: &str) -> SanType {
        SanType::DnsName(text.try_into().unwrap())
    }

    #[test]
    fn the_first_uri_san_wins_over_dns_names_in_any_order() {
        let der = cert_with(vec![
            dns("client.example.org"),
            uri("spiffe://example.org/payments"),
            uri("spiffe://example.org/other"),
        ]);
        assert_eq!(principal_name(&der).as_deref(), Some("spiffe://example.org/payments"));
    }

    #[test]
    fn without_a_uri_the_first_dns_name_is_the_principal_in_lower_case() {
        let der = cert_with(vec![
            SanType::IpAddress("10.0.0.1".parse().unwrap()),
            dns("Client.Example.org"),
            dns("second.example.org"),
        ]);
        assert_eq!(principal_name(&der).as_deref(), Some("client.example.org"));
    }

    #[test]
    fn a_certificate_without_uri_or_dns_names_has_no_principal() {
        assert_eq!(principal_name(&cert_with(vec![])), None);
        assert_eq!(
            principal_name(&cert_with(vec![SanType::IpAddress("127.0.0.1".parse().unwrap())])),
            None
        );
    }

    #[test]
    fn a_long_certificate_with_long_form_lengths_is_walked() {
        let long = format!("spiffe://example.org/{}", "a".repeat(600));
        let der = cert_with(vec![uri(&long)]);
        assert_eq!(principal_name(&der), Some(long));
    }

    #[test]
    fn a_name_with_spaces_or_beyond_the_limit_gives_no_principal() {
        assert_eq!(principal_name(&cert_with(vec![uri("spiffe://example.org/a b")])), None);
        let huge = format!("spiffe://example.org/{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(principal_name(&cert_with(vec![uri(&huge)])), None);
        let longest = format!("spiffe://example.org/{}", "a".repeat(MAX_NAME_LEN - 21));
        assert_eq!(principal_name(&cert_with(vec![uri(&longest)])), Some(longest));
    }

    #[test]
    fn malformed_or_truncated_der_gives_no_principal_and_no_panic() {
        let der = cert_with(vec![uri("spiffe://example.org/payments")]);
        for cut in 0..der.len() {
            assert_eq!(principal_name(&der[..cut]), None, "cut at {cut}");
        }
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(principal_name(&trailing), None, "bytes after the certificate");
        for garbage in [
            &[][..],
            &[0x30],
            &[0x30, 0x80, 0, 0],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x1f, 0],
        ] {
            assert_eq!(principal_name(garbage), None, "{garbage:?}");
        }
        // Flipping any single byte never panics (whatever it yields).
        for i in 0..der.len() {
            let mut flipped = der.clone();
            if let Some(b) = flipped.get_mut(i) {
                *b ^= 0xff;
            }
            let _ = principal_name(&flipped);
        }
    }

    /// What the decoder makes of a hand-built subjectAltName value (`GeneralNames`).
    fn principal_of_der(general_names: &[u8]) -> Option<String> {
        principal_of(&SubjectAltName::from_der(general_names).ok()?.0)
    }

    fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag, u8::try_from(content.len()).unwrap()];
        out.extend_from_slice(content);
        out
    }

    /// GeneralName `[2] IMPLICIT IA5String` (dNSName) and `[6]` (uniformResourceIdentifier).
    const DNS_NAME: u8 = 0x82;
    const URI: u8 = 0x86;
    const SEQUENCE: u8 = 0x30;

    #[test]
    fn a_hand_built_general_names_list_with_a_bad_element_gives_no_principal() {
        let good = wrap(URI, b"spiffe://x/y");
        assert_eq!(
            principal_of_der(&wrap(SEQUENCE, &good)).as_deref(),
            Some("spiffe://x/y")
        );
        let mut bad = good.clone();
        bad.extend([DNS_NAME, 9, b'a']); // declares 9 bytes, has 1
        assert_eq!(principal_of_der(&wrap(SEQUENCE, &bad)), None);
        let mut not_ascii = wrap(DNS_NAME, b"caf\xc3\xa9.example");
        not_ascii.extend(good);
        assert_eq!(
            principal_of_der(&wrap(SEQUENCE, &not_ascii)),
            None,
            "an IA5String is ASCII"
        );
    }

    #[test]
    fn a_certificate_with_two_subject_alt_name_extensions_has_no_principal() {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![uri("spiffe://example.org/payments")];
        // id-ce-subjectAltName again, as a custom extension: RFC 5280 §4.2 allows one.
        let value = wrap(SEQUENCE, &wrap(URI, b"spiffe://example.org/other"));
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 17], value));
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        assert_eq!(principal_name(&der), None);
    }
}
