//! What a copy of the database and audit files holds of caller tokens: nothing.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{create_token, whoami};
use crate::helpers::{AppHome, spawn_app};

/// Bytes compared at once when searching; every needle is at least this long.
const PREFIX: usize = 8;

/// `secret` raw, in lower and upper hex, and in base64 (standard and URL-safe, padded
/// and not), each labelled.
pub(crate) fn encodings(label: &str, secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let hex = base16ct::lower::encode_string(secret);
    let forms = [
        ("raw", secret.to_vec()),
        ("lower hex", hex.clone().into_bytes()),
        ("upper hex", hex.to_uppercase().into_bytes()),
        ("base64", STANDARD.encode(secret).into_bytes()),
        ("base64 unpadded", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("base64url", URL_SAFE.encode(secret).into_bytes()),
        ("base64url unpadded", URL_SAFE_NO_PAD.encode(secret).into_bytes()),
    ];
    forms
        .into_iter()
        .map(|(form, bytes)| (format!("{label} ({form})"), bytes))
        .collect()
}

/// The database (with whichever of `-wal` and `-shm` exist) and the audit files.
pub(crate) fn stored_files(home: &AppHome) -> Vec<(PathBuf, Vec<u8>)> {
    let db = home.database().display().to_string();
    let mut paths: Vec<PathBuf> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{db}{suffix}")))
        .collect();
    paths.extend([home.audit_file(), home.anchor_file()]);
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read(&path) {
            Ok(bytes) => files.push((path, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
    }
    for must in [home.database(), home.audit_file()] {
        assert!(
            files.iter().any(|(p, b)| *p == must && !b.is_empty()),
            "{} exists and is not empty",
            must.display()
        );
    }
    files
}

/// Each needle found, as `label in file`.
pub(crate) fn found(files: &[(PathBuf, Vec<u8>)], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut by_prefix: HashMap<&[u8], Vec<&(String, Vec<u8>)>> = HashMap::new();
    for needle in needles {
        assert!(needle.1.len() >= PREFIX, "{} is long enough to search for", needle.0);
        by_prefix.entry(&needle.1[..PREFIX]).or_default().push(needle);
    }
    let mut out = Vec::new();
    for (path, bytes) in files {
        for (start, window) in bytes.windows(PREFIX).enumerate() {
            for (label, needle) in by_prefix.get(window).into_iter().flatten() {
                if bytes[start..].starts_with(needle) {
                    out.push(format!("{label} in {}", path.display()));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn no_caller_token_or_its_unkeyed_sha256_is_in_the_database_or_audit_files_live_or_stopped() {
    let mut app = spawn_app().await;
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for i in 0..50 {
        let ttl = (i % 2 == 0).then_some("30d");
        let (id, token) = create_token(&app, &format!("service-{i:02}"), &["service"], ttl).await;
        // Used once, so the vault's memory of verified tokens holds its digest.
        assert_eq!(
            whoami(&app, Some(&token)).await.status,
            StatusCode::OK,
            "token {i} works"
        );
        if i % 10 == 0 {
            let r = app.delete(&format!("/v1/auth/tokens/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "token {i} is revoked: {}", r.body);
        }
        let body = token.strip_prefix("svt_").expect("svt_ prefix");
        secrets.extend(encodings(&format!("token {i}"), token.as_bytes()));
        secrets.push((format!("token {i} without its prefix"), body.as_bytes().to_vec()));
        let digest = Sha256::digest(token.as_bytes()).to_vec();
        secrets.extend(encodings(&format!("SHA-256 of token {i}"), &digest));
        ids.push((id.clone(), id.into_bytes()));
    }

    let live = stored_files(&app.home);
    assert!(
        live.iter().any(|(p, _)| p.to_string_lossy().ends_with("-wal")),
        "a serving WAL-mode database has a -wal file to search"
    );
    assert_eq!(
        found(&live, &secrets),
        Vec::<String>::new(),
        "no token in the live files"
    );
    let ids_found: BTreeSet<String> = found(&live, &ids)
        .into_iter()
        .filter_map(|hit| hit.split(' ').next().map(str::to_owned))
        .collect();
    assert_eq!(
        ids_found.len(),
        ids.len(),
        "every token id is in the live files (the search can hit)"
    );

    app.stop().await;
    let home = app.home.clone();
    drop(app);
    let stopped = stored_files(&home);
    assert_eq!(
        found(&stopped, &secrets),
        Vec::<String>::new(),
        "no token in the files after stopping"
    );
    let ids_found: BTreeSet<String> = found(&stopped, &ids)
        .into_iter()
        .filter_map(|hit| hit.split(' ').next().map(str::to_owned))
        .collect();
    assert_eq!(ids_found.len(), ids.len(), "every token id is in the stopped files");
}
