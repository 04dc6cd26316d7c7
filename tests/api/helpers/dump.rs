//! The database-dump check: what an attacker who copies the vault's database and files (or
//! reads a table or an API answer) could grep for. [`encodings`] turns a secret into the
//! forms a careless store or log could hold, [`database_copy`] is what a copy of the
//! database holds (SQLite: its files; PostgreSQL: `pg_dump` of it), [`stored_files`] adds the
//! audit files, [`found`] searches for every form at once, and
//! [`assert_dump_holds_no_secret`] is the whole check on a serving app and again once it
//! stopped. Needles too short to search for without false hits are refused.
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

use super::store::pg_dump;
use super::{AppHome, TestApp};

/// Something to search for: a label (what the test names in its failure) and its bytes.
pub type Needle = (String, Vec<u8>);

/// Bytes compared at once when searching; every needle is at least this long, so a window
/// of this size indexes them all and shorter needles, which would hit by chance, are refused.
const PREFIX: usize = 8;

/// A needle found: its label and the place (file path or sink name) it was found in.
#[derive(PartialEq)]
pub struct Hit {
    pub needle: String,
    pub place: String,
}

/// `label in place`: a failed check lists many hits, and one line each reads best.
impl std::fmt::Debug for Hit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} in {}", self.needle, self.place)
    }
}

/// `len` random bytes: secret material the vault cannot have seen before.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    getrandom::fill(&mut out).expect("random");
    out
}

/// `secret` raw, in hex of both cases, and in standard and URL-safe base64, padded or not,
/// each labelled `label (form)`; a form equal to the one before it (hex without letters) is
/// listed once.
pub fn encodings(label: &str, secret: &[u8]) -> Vec<Needle> {
    let lower = base16ct::lower::encode_string(secret);
    let mut forms = vec![
        ("raw", secret.to_vec()),
        ("upper hex", lower.to_uppercase().into_bytes()),
        ("lower hex", lower.into_bytes()),
        ("base64", STANDARD.encode(secret).into_bytes()),
        ("base64 unpadded", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("base64url", URL_SAFE.encode(secret).into_bytes()),
        ("base64url unpadded", URL_SAFE_NO_PAD.encode(secret).into_bytes()),
    ];
    forms.dedup_by(|a, b| a.1 == b.1);
    forms
        .into_iter()
        .map(|(form, bytes)| (format!("{label} ({form})"), bytes))
        .collect()
}

/// The database file, then whichever of its `-wal` and `-shm` siblings exist, as
/// (path, raw bytes); the database file must exist.
pub fn database_files(db: &Path) -> Vec<(String, Vec<u8>)> {
    let paths = ["", "-wal", "-shm"].map(|suffix| PathBuf::from(format!("{}{suffix}", db.display())));
    let files = read_existing(&paths);
    assert!(
        files.first().is_some_and(|(path, _)| *path == db.display().to_string()),
        "the database file {} exists",
        db.display()
    );
    files
}

/// What a copy of `home`'s database holds, as (place, bytes): on SQLite [`database_files`]
/// (the main file first); on PostgreSQL what `pg_dump` writes of it, as plain SQL (first)
/// and in the custom format.
pub async fn database_copy(home: &AppHome) -> Vec<(String, Vec<u8>)> {
    match &home.postgres_url {
        None => database_files(&home.database()),
        Some(url) => {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                ["plain", "custom"]
                    .map(|format| (format!("pg_dump --format={format}"), pg_dump(&url, format)))
                    .to_vec()
            })
            .await
            .expect("pg_dump thread")
        }
    }
}

/// [`database_copy`] of a serving app: on SQLite it must include a `-wal` file (a serving
/// WAL-mode database has one, which a copy of the live files takes too).
pub async fn live_database_copy(home: &AppHome) -> Vec<(String, Vec<u8>)> {
    let copy = database_copy(home).await;
    if home.postgres_url.is_none() {
        assert!(
            copy.iter().any(|(path, _)| path.ends_with("-wal")),
            "a serving WAL-mode database has a -wal file to search"
        );
    }
    copy
}

/// [`database_copy`] of `home` (live: [`live_database_copy`]), then its audit event and
/// anchor files: all a copy of the vault's data holds. The event file must not be empty.
pub async fn stored_files(home: &AppHome, live: bool) -> Vec<(String, Vec<u8>)> {
    let mut files = match live {
        true => live_database_copy(home).await,
        false => database_copy(home).await,
    };
    files.extend(read_existing(&[home.audit_file(), home.anchor_file()]));
    let must = home.audit_file().display().to_string();
    assert!(
        files.iter().any(|(p, b)| *p == must && !b.is_empty()),
        "{must} exists and is not empty"
    );
    files
}

fn read_existing(paths: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => files.push((path.display().to_string(), bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
    }
    files
}

/// Every place a needle stands in one of the `(place, bytes)` haystacks, in one pass per
/// haystack.
pub fn found(haystacks: &[(impl AsRef<str>, impl AsRef<[u8]>)], needles: &[Needle]) -> Vec<Hit> {
    let mut by_prefix: HashMap<&[u8], Vec<&Needle>> = HashMap::new();
    for needle in needles {
        assert!(
            needle.1.len() >= PREFIX,
            "{}: too short to search for without false hits",
            needle.0
        );
        by_prefix.entry(&needle.1[..PREFIX]).or_default().push(needle);
    }
    let mut hits = Vec::new();
    for (place, bytes) in haystacks {
        let bytes = bytes.as_ref();
        for (start, window) in bytes.windows(PREFIX).enumerate() {
            for (label, needle) in by_prefix.get(window).into_iter().flatten() {
                if bytes[start..].starts_with(needle) {
                    hits.push(Hit {
                        needle: label.clone(),
                        place: place.as_ref().to_owned(),
                    });
                }
            }
        }
    }
    hits
}

/// The labels of the `needles` found at least once: the proof that a search can hit.
pub fn found_needles(haystacks: &[(impl AsRef<str>, impl AsRef<[u8]>)], needles: &[Needle]) -> BTreeSet<String> {
    found(haystacks, needles).into_iter().map(|hit| hit.needle).collect()
}

/// The database-dump check: a copy of `app`'s database and files taken while it serves (on
/// SQLite the `-wal` file included) and again after a clean stop holds none of `secrets`,
/// and every one of `markers`, values stored in the clear such as ids, which proves the
/// search can hit.
pub async fn assert_dump_holds_no_secret(mut app: TestApp, secrets: &[Needle], markers: &[Needle]) {
    let every_marker: BTreeSet<String> = markers.iter().map(|(label, _)| label.clone()).collect();
    let live = stored_files(&app.home, true).await;
    assert_eq!(found(&live, secrets), [], "secrets in the live files");
    assert_eq!(
        found_needles(&live, markers),
        every_marker,
        "every marker is in the live files (the search can hit)"
    );

    app.stop().await;
    let home = app.home.clone();
    drop(app);
    let stopped = stored_files(&home, false).await;
    assert_eq!(found(&stopped, secrets), [], "secrets in the files after stopping");
    assert_eq!(
        found_needles(&stopped, markers),
        every_marker,
        "every marker is in the files after stopping"
    );
}

#[test]
fn the_secret_search_finds_every_encoding_it_looks_for() {
    // 32 bytes: base64 with padding, so all seven forms differ.
    let secret = random_bytes(32);
    let needles = encodings("planted", &secret);
    assert_eq!(needles.len(), 7);
    let mut planted = b"prefix ".to_vec();
    for (_, form) in &needles {
        planted.extend_from_slice(form);
        planted.extend_from_slice(b" | ");
    }
    let all: BTreeSet<String> = needles.iter().map(|(label, _)| label.clone()).collect();
    assert_eq!(found_needles(&[("planted", &planted)], &needles), all);
    assert_eq!(found(&[("clean", b"nothing to see here at all")], &needles), []);
}
