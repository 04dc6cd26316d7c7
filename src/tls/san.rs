//! The caller name a client certificate carries: its first URI subjectAltName (e.g. a SPIFFE
//! ID `spiffe://example.org/payments`), else its first DNS subjectAltName.
//!
//! A minimal DER walker, just deep enough to reach the subjectAltName extension
//! (RFC 5280 §4.1, §4.2.1.6). It must only ever run on a certificate that rustls/webpki has
//! already validated against the client CA: it checks no signature, validity or
//! constraint, and a malformed encoding yields no name (never a panic, never a guess).

/// OID 2.5.29.17 (id-ce-subjectAltName), content octets.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// tbsCertificate `[3] EXPLICIT Extensions`.
const EXTENSIONS: u8 = 0xa3;
/// GeneralName `[2] IMPLICIT IA5String` (dNSName).
const DNS_NAME: u8 = 0x82;
/// GeneralName `[6] IMPLICIT IA5String` (uniformResourceIdentifier).
const URI: u8 = 0x86;
/// Longest name accepted (the SPIFFE ID limit); longer ones give no principal.
const MAX_NAME_LEN: usize = 2048;

/// The principal name of a DER certificate: its first URI SAN, else its first DNS SAN;
/// `None` when it has neither, when the chosen name is not visible ASCII (1 to
/// 2048 bytes, the SPIFFE ID limit), or when the encoding is malformed.
pub fn principal_name(cert_der: &[u8]) -> Option<String> {
    let mut names = Reader::new(subject_alt_names(cert_der)?);
    let mut first_dns = None;
    let mut first_uri = None;
    for (tag, value) in names.by_ref() {
        match tag {
            URI if first_uri.is_none() => first_uri = Some(value),
            DNS_NAME if first_dns.is_none() => first_dns = Some(value),
            _ => {}
        }
    }
    if names.failed {
        return None;
    }
    let (chosen, is_dns) = match (first_uri, first_dns) {
        (Some(uri), _) => (uri, false),
        (None, Some(dns)) => (dns, true),
        (None, None) => return None,
    };
    let visible = !chosen.is_empty() && chosen.len() <= MAX_NAME_LEN && chosen.iter().all(u8::is_ascii_graphic);
    if !visible {
        return None;
    }
    // Visible ASCII is valid UTF-8, so this never fails.
    let name = String::from_utf8(chosen.to_vec()).ok()?;
    // DNS names compare case-insensitively; one spelling per caller keeps group lookups
    // and the audit trail consistent. URIs are kept as issued (their paths are
    // case-sensitive).
    Some(if is_dns { name.to_ascii_lowercase() } else { name })
}

/// The content of the `GeneralNames` SEQUENCE inside the subjectAltName extension.
fn subject_alt_names(cert_der: &[u8]) -> Option<&[u8]> {
    let certificate = Reader::new(cert_der).single(SEQUENCE)?;
    let (tag, tbs) = Reader::new(certificate).next()?;
    if tag != SEQUENCE {
        return None;
    }
    // version, serial, signature, issuer, validity, subject, spki and the optional unique
    // ids come first; extensions are the only [3] element.
    let (_, extensions) = Reader::new(tbs).find(|(tag, _)| *tag == EXTENSIONS)?;
    let extensions = Reader::new(extensions).single(SEQUENCE)?;
    for (tag, extension) in Reader::new(extensions) {
        if tag != SEQUENCE {
            return None;
        }
        let mut fields = Reader::new(extension);
        let (OID, oid) = fields.next()? else { return None };
        if oid != SUBJECT_ALT_NAME {
            continue;
        }
        // `critical BOOLEAN DEFAULT FALSE` may precede the value.
        let (_, value) = fields.find(|(tag, _)| *tag == OCTET_STRING)?;
        return Reader::new(value).single(SEQUENCE);
    }
    None
}

/// Reads definite-length DER elements (tag, content) one after another. Any malformed
/// element ends the iteration and marks the reader as failed.
struct Reader<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Reader<'a> {
    fn new(der: &'a [u8]) -> Self {
        Self {
            rest: der,
            failed: false,
        }
    }

    /// The content of the one element `der` holds, if it has tag `tag` and nothing follows.
    fn single(mut self, tag: u8) -> Option<&'a [u8]> {
        let (found, content) = self.next()?;
        (found == tag && self.rest.is_empty()).then_some(content)
    }

    fn element(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.rest.split_first()?;
        // Multi-byte tag numbers never occur on the path we walk.
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            // Indefinite length (0x80) is not DER; more than 4 length bytes is not a
            // certificate.
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, rest) = rest.split_at(count);
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, rest)
        };
        if rest.len() < len {
            return None;
        }
        let (content, rest) = rest.split_at(len);
        self.rest = rest;
        Some((tag, content))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let element = self.element();
        if element.is_none() {
            self.failed = true;
        }
        element
    }
}

/// Lets other modules' tests take DER apart.
#[cfg(test)]
pub(crate) mod tests_support {
    /// The elements of a DER SEQUENCE's content (or of any concatenation of elements).
    pub fn elements(der: &[u8]) -> Vec<(u8, &[u8])> {
        super::Reader::new(der).collect()
    }
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

    #[test]
    fn a_hand_built_general_names_list_with_a_bad_element_gives_no_principal() {
        // Certificate { tbs { [3] { Extensions { Extension { OID SAN, OCTET STRING { GeneralNames } } } } } }
        fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag, u8::try_from(content.len()).unwrap()];
            out.extend_from_slice(content);
            out
        }
        let cert = |general_names: &[u8]| {
            let mut extension = wrap(OID, SUBJECT_ALT_NAME);
            extension.extend(wrap(0x01, &[0xff])); // critical = TRUE
            extension.extend(wrap(OCTET_STRING, &wrap(SEQUENCE, general_names)));
            let extensions = wrap(EXTENSIONS, &wrap(SEQUENCE, &wrap(SEQUENCE, &extension)));
            let mut tbs = wrap(0x02, &[1]); // serial, standing in for the fields before
            tbs.extend(extensions);
            wrap(SEQUENCE, &wrap(SEQUENCE, &tbs))
        };
        let good = wrap(URI, b"spiffe://x/y");
        assert_eq!(principal_name(&cert(&good)).as_deref(), Some("spiffe://x/y"));
        let mut bad = good.clone();
        bad.extend([DNS_NAME, 9, b'a']); // declares 9 bytes, has 1
        assert_eq!(principal_name(&cert(&bad)), None);
    }
}
