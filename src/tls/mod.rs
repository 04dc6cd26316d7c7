//! TLS for the HTTP server: the rustls server configuration built (and so checked) from
//! the `[tls]` PEM files at config time, and the per-connection handshake that yields the
//! client certificate's principal.
//!
//! Only the `ring` provider and TLS 1.2/1.3 are used. Client certificates are verified by
//! webpki against the `client_ca_file` bundle (chain, validity, clientAuth EKU); only then
//! is a name read from them ([`san`]). This module never decides what a name may do: that
//! is [`crate::auth::certificate`]'s and the API's business.

pub mod san;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::certificate::CertificateGroups;
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

/// A checked `[tls]` section: its PEM files already read into a server configuration.
#[derive(Clone)]
pub struct TlsSettings {
    pub server: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
    pub(crate) client_groups: CertificateGroups,
}

impl TlsSettings {
    /// Reads and checks the PEM files (see [`crate::tls::server_config`]).
    pub fn load(files: &TlsFiles, client_auth: ClientAuth, client_groups: CertificateGroups) -> Result<Self, TlsError> {
        Ok(Self {
            server: crate::tls::server_config(files, client_auth)?,
            client_auth,
            client_groups,
        })
    }
}

/// How long a client gets to complete the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must, may or cannot present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No certificate is requested.
    #[default]
    None,
    /// A certificate is requested; a client without one is served (and must then use a
    /// bearer token), a client with an untrusted one is refused at the handshake.
    Optional,
    /// A client without a trusted certificate is refused at the handshake.
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "none" => Some(Self::None),
            "optional" => Some(Self::Optional),
            "required" => Some(Self::Required),
            _ => None,
        }
    }
}

/// The PEM files of `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: {} holds no {what}: {source}", path.display())]
    Pem {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{key}: {}: {source}", path.display())]
    Rejected {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("tls.client_ca_file: {}: {source}", path.display())]
    ClientVerifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("tls.client_auth: \"{0}\" needs tls.client_ca_file, the CA bundle client certificates are checked against")]
    NoClientCa(&'static str),
    #[error(
        "tls.client_ca_file: set while tls.client_auth is \"none\", so no client certificate would be checked; set client_auth = \"optional\" or \"required\", or remove client_ca_file"
    )]
    UnusedClientCa,
}

/// Reads and checks the PEM files and builds the server configuration: the certificate
/// chain must parse, the key (PKCS#8, PKCS#1 or SEC1) must match its first certificate,
/// and the client CA bundle must hold at least one usable CA certificate.
pub(crate) fn server_config(files: &TlsFiles, client_auth: ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates("tls.cert_file", &files.cert_file)?;
    let key = private_key(&files.key_file)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::Rejected {
            key: "tls.cert_file",
            path: files.cert_file.clone(),
            source,
        })?;
    let builder = match (client_auth, &files.client_ca_file) {
        (ClientAuth::None, None) => builder.with_no_client_auth(),
        (ClientAuth::None, Some(_)) => return Err(TlsError::UnusedClientCa),
        (ClientAuth::Optional, None) => return Err(TlsError::NoClientCa("optional")),
        (ClientAuth::Required, None) => return Err(TlsError::NoClientCa("required")),
        (ClientAuth::Optional | ClientAuth::Required, Some(ca_file)) => {
            builder.with_client_cert_verifier(client_verifier(ca_file, client_auth, provider)?)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rejected {
            key: "tls.key_file",
            path: files.key_file.clone(),
            source,
        })?;
    // The server speaks HTTP/1.1 only; saying so keeps clients from trying h2.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn client_verifier(
    ca_file: &Path,
    client_auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates("tls.client_ca_file", ca_file)? {
        roots.add(ca).map_err(|source| TlsError::Rejected {
            key: "tls.client_ca_file",
            path: ca_file.to_path_buf(),
            source,
        })?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match client_auth {
        ClientAuth::Optional => builder.allow_unauthenticated(),
        ClientAuth::None | ClientAuth::Required => builder,
    };
    builder.build().map_err(|source| TlsError::ClientVerifier {
        path: ca_file.to_path_buf(),
        source,
    })
}

fn read(key: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            key,
            path: path.to_path_buf(),
            source,
        })
}

/// Every certificate in a PEM file (at least one).
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_err = |source| TlsError::Pem {
        key,
        path: path.to_path_buf(),
        what: "PEM certificate",
        source,
    };
    let text = read(key, path)?;
    let chain = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_err)?;
    if chain.is_empty() {
        return Err(pem_err(rustls::pki_types::pem::Error::NoItemsFound));
    }
    Ok(chain)
}

/// The first private key in a PEM file (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE
/// KEY`). The file's bytes are wiped once parsed.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read("tls.key_file", path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|source| TlsError::Pem {
        key: "tls.key_file",
        path: path.to_path_buf(),
        what: "PEM private key (PKCS#8, PKCS#1 or SEC1)",
        source,
    })
}

/// What a request learns about its connection's TLS session: present on every request
/// that came over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// The name of the client certificate that webpki verified (see [`san::principal_name`]);
    /// `None` when the client sent no certificate or one with no usable name.
    pub(crate) client_principal: Option<Arc<str>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    #[error("TLS handshake did not complete within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Failed(#[source] std::io::Error),
}

/// Runs the server side of the handshake (bounded by [`HANDSHAKE_TIMEOUT`]) and reads the
/// verified client certificate's principal.
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> Result<(TlsStream<TcpStream>, TlsInfo), HandshakeError> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| HandshakeError::Timeout)?
        .map_err(HandshakeError::Failed)?;
    // rustls reports peer certificates only after its verifier accepted them; the first
    // is the end-entity certificate.
    let client_principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| san::principal_name(cert))
        .map(Arc::from);
    Ok((stream, TlsInfo { client_principal }))
}

/// A throwaway PKI on disk for unit tests: a CA, a server certificate signed by it (for
/// 127.0.0.1 and localhost) and its key.
#[cfg(test)]
pub(crate) mod test_pki {
    use super::TlsFiles;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
    use std::path::{Path, PathBuf};

    pub(crate) fn temp_dir(tag: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sv-tls-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub(crate) fn ca() -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// Writes `ca.pem`, `server.pem` and `server.key` (PKCS#8) into `dir`; the returned
    /// files name the CA as `client_ca_file`.
    pub(crate) fn write(dir: &Path) -> TlsFiles {
        let ca = ca();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let files = TlsFiles {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_ca_file: Some(dir.join("ca.pem")),
        };
        std::fs::write(&files.cert_file, cert.pem()).unwrap();
        std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        files
    }
}

#[cfg(test)]
mod tests;
