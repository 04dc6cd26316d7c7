//! An independent implementation of the custodians' wrapping format, for the tests to check
//! sigvault against: pyca `cryptography` (OpenSSL underneath), from the venv
//! `scripts/test.sh` makes for moto. RSA-OAEP (SHA-256, MGF1-SHA-256) of a fresh AES-256 key,
//! followed by AES-KWP (RFC 5649) of the material under it.

use std::path::PathBuf;
use std::sync::OnceLock;

use super::{b64, unb64};

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin/python")
}

/// Runs `script` with `args` and returns its standard output, trimmed.
fn run_python(script: &str, args: &[&str]) -> String {
    let python = python();
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/test.sh once to make the venv)", python.display()));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const PRELUDE: &str = "\
import base64, os, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding, aes_key_unwrap_with_padding
OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
";

/// `material` wrapped to the RSA public key `public_key_pem` in the custodians' format.
pub fn wrap_for_import(public_key_pem: &str, material: &[u8]) -> Vec<u8> {
    let script = format!(
        "{PRELUDE}
key = serialization.load_pem_public_key(sys.argv[1].encode())
ephemeral = os.urandom(32)
out = key.encrypt(ephemeral, OAEP) + aes_key_wrap_with_padding(ephemeral, base64.b64decode(sys.argv[2]))
print(base64.b64encode(out).decode())"
    );
    unb64(&run_python(&script, &[public_key_pem, &b64(material)]))
}

/// A custodian's RSA-3072 key pair as PEM (private PKCS#8, public SubjectPublicKeyInfo),
/// made once per test process.
pub fn custodian_key() -> &'static (String, String) {
    static KEY: OnceLock<(String, String)> = OnceLock::new();
    KEY.get_or_init(|| {
        let script = format!(
            "{PRELUDE}
key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
print(base64.b64encode(private).decode()); print(base64.b64encode(public).decode())"
        );
        let out = run_python(&script, &[]);
        let mut lines = out.lines().map(|l| String::from_utf8(unb64(l)).expect("PEM is text"));
        let private = lines.next().expect("private key");
        let public = lines.next().expect("public key");
        (private, public)
    })
}

/// Opens an export wrapped to [`custodian_key`] with the custodian's private key.
pub fn unwrap_export(private_key_pem: &str, wrapped: &[u8]) -> Vec<u8> {
    let script = format!(
        "{PRELUDE}
key = serialization.load_pem_private_key(sys.argv[1].encode(), password=None)
blob = base64.b64decode(sys.argv[2])
size = key.key_size // 8
ephemeral = key.decrypt(blob[:size], OAEP)
print(base64.b64encode(aes_key_unwrap_with_padding(ephemeral, blob[size:])).decode())"
    );
    unb64(&run_python(&script, &[private_key_pem, &b64(wrapped)]))
}

/// The SHA-256 fingerprint (`sha256:<hex>`) of a public key's SubjectPublicKeyInfo DER, as
/// `cryptography` computes it.
pub fn spki_fingerprint(public_key_pem: &str) -> String {
    let script = format!(
        "{PRELUDE}
key = serialization.load_pem_public_key(sys.argv[1].encode())
der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
digest = hashes.Hash(hashes.SHA256()); digest.update(der)
print('sha256:' + digest.finalize().hex())"
    );
    run_python(&script, &[public_key_pem])
}
