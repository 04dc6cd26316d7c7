//! The server's TLS configuration from PEM files, and client-certificate facts, with a PKI made at run time.

use super::*;
use base64::Engine as _;
use x509_cert::der::asn1::AnyRef;
use x509_cert::der::{Decode, SliceReader, Tag, Tagged};

fn error_of(files: &TlsFiles, client_auth: ClientAuth) -> String {
    match server_config(files, client_auth) {
        Ok(_) => String::from("no error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn each_client_auth_mode_builds_from_good_files() {
    let files = test_pki::write(&test_pki::temp_dir("good"));
    server_config(&files, ClientAuth::Optional).unwrap();
    server_config(&files, ClientAuth::Required).unwrap();
    let none = TlsFiles {
        client_ca_file: None,
        ..files
    };
    let config = server_config(&none, ClientAuth::None).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
}

#[test]
fn client_auth_needs_a_ca_bundle_and_a_bundle_needs_client_auth() {
    let files = test_pki::write(&test_pki::temp_dir("ca-rules"));
    let without_ca = TlsFiles {
        client_ca_file: None,
        ..files.clone()
    };
    for mode in [ClientAuth::Optional, ClientAuth::Required] {
        assert!(
            error_of(&without_ca, mode).starts_with("tls.client_auth:"),
            "{}",
            error_of(&without_ca, mode)
        );
    }
    assert!(error_of(&files, ClientAuth::None).starts_with("tls.client_ca_file:"));
}

#[test]
fn unreadable_empty_or_mismatched_files_name_their_key_on_one_line() {
    let dir = test_pki::temp_dir("bad");
    let files = test_pki::write(&dir);
    let other = test_pki::write(&test_pki::temp_dir("other"));
    std::fs::write(dir.join("garbage.pem"), "not a certificate\n").unwrap();
    let cases = [
        (
            TlsFiles {
                cert_file: dir.join("missing.pem"),
                ..files.clone()
            },
            "tls.cert_file: cannot read",
        ),
        (
            TlsFiles {
                cert_file: dir.join("garbage.pem"),
                ..files.clone()
            },
            "tls.cert_file:",
        ),
        (
            TlsFiles {
                key_file: dir.join("garbage.pem"),
                ..files.clone()
            },
            "tls.key_file:",
        ),
        (
            TlsFiles {
                key_file: files.cert_file.clone(),
                ..files.clone()
            },
            "tls.key_file:",
        ),
        (
            TlsFiles {
                key_file: other.key_file.clone(),
                ..files.clone()
            },
            "tls.key_file:",
        ),
        (
            TlsFiles {
                client_ca_file: Some(dir.join("garbage.pem")),
                ..files.clone()
            },
            "tls.client_ca_file:",
        ),
        (
            TlsFiles {
                client_ca_file: Some(files.key_file.clone()),
                ..files.clone()
            },
            "tls.client_ca_file:",
        ),
    ];
    for (files, expected) in cases {
        let text = error_of(&files, ClientAuth::Required);
        assert!(text.starts_with(expected), "expected `{expected}…`, got `{text}`");
        assert!(!text.contains('\n'), "{text}");
    }
}

#[test]
fn a_sec1_ec_private_key_is_accepted_as_well_as_pkcs8() {
    let dir = test_pki::temp_dir("sec1");
    let files = test_pki::write(&dir);
    // PKCS#8 = SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING { ECPrivateKey } }:
    // the OCTET STRING's content is the SEC1 key.
    let pkcs8 = PrivateKeyDer::from_pem_file(&files.key_file).unwrap();
    let outer = AnyRef::from_der(pkcs8.secret_der()).unwrap();
    let mut fields = SliceReader::new(outer.value()).unwrap();
    let sec1 = loop {
        let field = AnyRef::decode(&mut fields).unwrap();
        if field.tag() == Tag::OctetString {
            break field.value().to_vec();
        }
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(&sec1);
    let pem = format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n");
    std::fs::write(dir.join("server-sec1.key"), pem).unwrap();
    let sec1_files = TlsFiles {
        key_file: dir.join("server-sec1.key"),
        ..files
    };
    server_config(&sec1_files, ClientAuth::Required).unwrap();
}
