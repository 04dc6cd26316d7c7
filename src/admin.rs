//! Offline administration: opening what a vault keeps on disk — its settings, store, KEK
//! and audit key — without starting it, and the `sigvault audit` operations on that.
//!
//! Works on a stopped vault, on one whose startup refuses (a tampered trail) and beside a
//! running one (SQLite readers do not block its writer). It must never change the trail: no
//! audit writer is started (its reconciliation repairs and appends), and nothing missing is
//! created — no data dir, store, PIN or audit key; the HSM is opened only when an audit key
//! is stored, to unseal it (and then also read for the chain heads it witnessed). (Opening
//! the store applies pending schema migrations, as a start would.) It prints nothing: results are returned, and event lines and progress go
//! only to the writers a caller passes.

pub mod kek_migrate;
pub mod progress;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use crate::audit::event::AuditEvent;
use crate::audit::sink;
use crate::audit::verify::{Report, VerifyError, verify_stored_trail, verify_trail};
use crate::audit::witness;
use crate::audit::writer::{Accepted, AuditError, accept_truncation};
use crate::clock::{Clock, SharedClock, SystemClock, unix_ms};
use crate::config::{self, ConfigError, DevPaths, Mode, Overrides, Settings};
use crate::kek::{self, KekError, KekProvider};
use crate::secret::SecretBytes;
use crate::startup::{AUDIT_KEY_NAME, chain};
use crate::store::{self, AuditFilter, AuditStore, Store, StoreError};
use crate::system_secret::{self, SystemSecretError};
use progress::Progress;

/// Events read from the store per page of an export.
const EXPORT_PAGE: u32 = 1000;

/// Where an offline command finds a vault's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `serve`-style: this config file, with `SIGVAULT_*` overrides.
    Config(PathBuf),
    /// A `sigvault dev` data dir with the dev defaults (`None`: the one `sigvault dev`
    /// uses without `--data-dir`).
    DevDataDir(Option<PathBuf>),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data dir {path}: {message}")]
    DataDir { path: String, message: String },
    #[error("no store at {path} (is this the vault's data dir?)")]
    NoStore { path: String },
    #[error("store: {}", chain(.0))]
    Store(#[from] StoreError),
    #[error("HSM: {}", chain(.0))]
    Kek(#[from] KekError),
    #[error("audit key: {}", chain(.0))]
    AuditKey(#[from] SystemSecretError),
    #[error("audit trail: {}", chain(.0))]
    Verify(#[from] VerifyError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Accept(#[from] AuditError),
    #[error("the store holds no audit key: there is no trail to repair")]
    NoAuditKey,
    #[error("--since ({since}) is after --until ({until})")]
    Window { since: String, until: String },
    #[error("cannot write the export: {0}")]
    Write(#[source] io::Error),
    #[error("cannot write the export to {path}: {source}")]
    WriteFile {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Validated settings for an offline command and, for a dev data dir, its layout: the
/// caller points `SOFTHSM2_CONF` at `softhsm_conf` before the HSM is opened, as
/// `sigvault dev` does. A dev data dir must already exist; nothing is created (its
/// `softhsm2.conf` is rewritten when the dir has moved).
pub fn settings(location: &Location, env: &[(String, String)]) -> Result<(Settings, Option<DevPaths>), AdminError> {
    match location {
        Location::Config(file) => {
            let raw = config::merge(Some(file), env, &Overrides::default())?;
            Ok((Settings::from_raw(Mode::Serve, raw, env)?, None))
        }
        Location::DevDataDir(dir) => {
            let overrides = Overrides {
                listen: None,
                data_dir: dir.clone(),
            };
            let raw = config::merge(None, env, &overrides)?;
            let paths = DevPaths::new(&config::data_dir_of(Mode::Dev, &raw));
            // Checked before the settings read the PIN file, so a wrong directory is named
            // as such rather than as a missing PIN.
            check_dev_data_dir(&paths)?;
            // A data dir moved since its last start: point its SoftHSM2 config at its own
            // token dir, as `sigvault dev` would (nothing when the token dir is gone).
            #[cfg(feature = "kek-pkcs11")]
            if paths.token_dir.is_dir() {
                crate::kek::pkcs11::softhsm::write_conf(&paths.softhsm_conf, &paths.token_dir).map_err(|e| {
                    AdminError::DataDir {
                        path: paths.data_dir.display().to_string(),
                        message: format!("cannot update softhsm2.conf: {e}"),
                    }
                })?;
            }
            Ok((Settings::from_raw(Mode::Dev, raw, env)?, Some(paths)))
        }
    }
}

fn check_dev_data_dir(paths: &DevPaths) -> Result<(), AdminError> {
    let err = |message: String| AdminError::DataDir {
        path: paths.data_dir.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(&paths.data_dir).map_err(|e| err(e.to_string()))?;
    if !meta.is_dir() {
        return Err(err("not a directory".into()));
    }
    if !paths.softhsm_conf.is_file() {
        return Err(err("not a `sigvault dev` data dir (it has no softhsm2.conf)".into()));
    }
    Ok(())
}

/// A vault's store and settings, opened without starting the vault.
pub struct OfflineVault {
    settings: Settings,
    store: Arc<dyn Store>,
}

impl OfflineVault {
    /// Opens the store `settings` names; refuses one that does not exist rather than
    /// creating an empty one (which would "verify").
    pub async fn open(settings: Settings) -> Result<Self, AdminError> {
        if let Some(path) = settings.store.file()
            && !path.is_file()
        {
            return Err(AdminError::NoStore {
                path: path.display().to_string(),
            });
        }
        let store = store::open(&settings.store).await?;
        Ok(Self { settings, store })
    }

    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The audit key, unsealed through the KEK, with the KEK provider that unsealed it (it
    /// also holds the chain heads it witnessed); `None` when the store holds no audit key (a
    /// vault that never started, or a removed key). The HSM is opened only when there is one.
    async fn audit_key(&self) -> Result<Option<Unsealed>, AdminError> {
        if self.store.get_system_secret(AUDIT_KEY_NAME).await?.is_none() {
            return Ok(None);
        }
        let keyring = kek::open_keyring(&self.settings.kek, self.settings.kek_previous.as_ref()).await?;
        let kek = Arc::clone(keyring.current());
        let clock: SharedClock = Arc::new(SystemClock);
        // A key is stored, so this only unseals it.
        let key = system_secret::load_or_create(self.store(), &keyring, &clock, AUDIT_KEY_NAME).await?;
        Ok(Some(Unsealed { key, kek }))
    }
}

/// What unsealing the audit key opened.
struct Unsealed {
    key: SecretBytes,
    /// The open KEK provider: the witness of each node's chain head lives there.
    kek: Arc<dyn KekProvider>,
}

/// One node's chain, verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeReport {
    pub node: String,
    #[serde(flatten)]
    pub report: Report,
}

/// The whole trail, verified. Serialises as the `GET /v1/audit/verify` report (over every
/// node: `checked` is the sum, the first failing node gives `first_bad_seq` and `reason`),
/// plus `node` (that failing node) and the per-node `nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    #[serde(flatten)]
    pub report: Report,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    pub nodes: Vec<NodeReport>,
}

impl Verification {
    fn of(nodes: Vec<NodeReport>) -> Self {
        let checked = nodes.iter().map(|n| n.report.checked).sum();
        let failed = nodes.iter().find(|n| !n.report.ok);
        let report = Report {
            ok: failed.is_none(),
            checked,
            first_bad_seq: failed.and_then(|n| n.report.first_bad_seq),
            reason: failed.and_then(|n| n.report.reason.clone()),
            unanchored: nodes.iter().map(|n| n.report.unanchored).sum(),
        };
        Self {
            report,
            node: failed.map(|n| n.node.clone()),
            nodes,
        }
    }
}

/// `sigvault audit accept-truncation --events N`: gives up the `events` events of this
/// node that the store holds past the end of the event file, recording the decision in the
/// trail (see [`accept_truncation`]). The one offline command that writes the trail; the
/// vault must be stopped.
pub async fn audit_accept_truncation(vault: &OfflineVault, events: u64) -> Result<Accepted, AdminError> {
    let unsealed = vault.audit_key().await?.ok_or(AdminError::NoAuditKey)?;
    let store: Arc<dyn AuditStore> = vault.store.clone();
    let now = unix_ms(SystemClock.now());
    let settings = vault.settings.audit.clone();
    Ok(accept_truncation(store, unsealed.key, settings, events, &operator(), now, unsealed.kek).await?)
}

/// Who runs an offline command, as the trail names them: the local user.
fn operator() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let user = std::env::var("USER").unwrap_or_default();
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if user.is_empty() {
        format!("local-operator:uid={uid}")
    } else {
        format!("local-operator:{user}:uid={uid}")
    }
}

/// Verifies the chain of every node the store, the event file or the anchor file names
/// (and of the configured node), each against the store and the head the HSM witnessed for
/// it, and against the event file and the anchors when those hold its events or it is the
/// configured node (see [`verify_trail`]; another node of a cluster keeps its files on its
/// own machine, where its own `audit verify` checks them). Witnesses are looked up for
/// those nodes only, by name: the token may serve other vaults, so its other witnesses are
/// none of this trail's business (and a node other than the configured one that every sink
/// lost is not looked for). A trail that holds events but whose audit key is gone fails at
/// its first event: nothing in it can be authenticated.
pub async fn audit_verify(
    vault: &OfflineVault,
    progress: &mut (dyn Progress + Send),
) -> Result<Verification, AdminError> {
    let audit = &vault.settings.audit;
    let recorded = recorded_nodes(vault.store(), &audit.file, &audit.anchor_file).await?;
    let mut nodes = recorded.nodes.clone();
    nodes.insert(audit.node.clone());
    // This node's event file and anchors hold its own events (and those of any name it ran
    // under before); another node's files are on that node's machine.
    let mut local = recorded.in_files.clone();
    local.insert(audit.node.clone());
    let Some(Unsealed { key, kek }) = vault.audit_key().await? else {
        return Ok(without_audit_key(nodes, recorded.any));
    };
    progress.start(vault.store.count_audit(&AuditFilter::default()).await?);
    let mut reports = Vec::with_capacity(nodes.len());
    let mut before = 0u64;
    let mut outcome = Ok(());
    for node in nodes {
        let verified = verify_node(
            vault,
            &key,
            kek.as_ref(),
            &node,
            local.contains(&node),
            &mut |checked| progress.advance_to(before + checked),
        )
        .await;
        match verified {
            Ok(report) => {
                before += report.checked;
                reports.push(NodeReport { node, report });
            }
            Err(e) => {
                outcome = Err(e.into());
                break;
            }
        }
    }
    progress.finish();
    outcome.map(|()| Verification::of(reports))
}

/// One node's chain: its witness is read from the HSM first, then the sinks are walked
/// (see [`verify_trail`] for why in that order); the event file and anchors only when they
/// are `local` (this node's).
async fn verify_node(
    vault: &OfflineVault,
    key: &SecretBytes,
    kek: &dyn KekProvider,
    node: &str,
    local: bool,
    progress: &mut (dyn FnMut(u64) + Send),
) -> Result<Report, VerifyError> {
    let witnessed = witness::read(kek, node).await?;
    let audit = &vault.settings.audit;
    if !local {
        return verify_stored_trail(vault.store(), key.expose_secret(), node, witnessed, progress).await;
    }
    verify_trail(
        vault.store(),
        key.expose_secret(),
        node,
        &audit.file,
        &audit.anchor_file,
        witnessed,
        progress,
    )
    .await
}

fn without_audit_key(nodes: BTreeSet<String>, any_event: bool) -> Verification {
    let report = if any_event {
        Report {
            ok: false,
            checked: 0,
            first_bad_seq: Some(1),
            reason: Some("the store holds no audit key, so no event can be authenticated".into()),
            unanchored: 0,
        }
    } else {
        Report {
            ok: true,
            checked: 0,
            first_bad_seq: None,
            reason: None,
            unanchored: 0,
        }
    };
    Verification::of(
        nodes
            .into_iter()
            .map(|node| NodeReport {
                node,
                report: report.clone(),
            })
            .collect(),
    )
}

/// The nodes a trail names, and whether it holds anything at all.
struct Recorded {
    nodes: BTreeSet<String>,
    /// The nodes the event file or the anchor file names.
    in_files: BTreeSet<String>,
    any: bool,
}

async fn recorded_nodes(store: &dyn AuditStore, file: &Path, anchor_file: &Path) -> Result<Recorded, AdminError> {
    let mut nodes: BTreeSet<String> = store.audit_nodes().await?.into_iter().collect();
    let mut any = !nodes.is_empty();
    let mut in_files = BTreeSet::new();
    let event_node = |line: &str| AuditEvent::parse_line(line).ok().map(|(event, _)| event.node);
    let anchor_node = |line: &str| sink::parse_anchor(line).map(|(node, _)| node);
    for (path, node_of) in [
        (file, &event_node as &dyn Fn(&str) -> Option<String>),
        (anchor_file, &anchor_node),
    ] {
        let (found, has_lines) = nodes_in(path, node_of).map_err(|source| AdminError::Read {
            path: path.display().to_string(),
            source,
        })?;
        any |= has_lines;
        in_files.extend(found);
    }
    nodes.extend(in_files.iter().cloned());
    Ok(Recorded { nodes, in_files, any })
}

/// The nodes named by the lines of one sink file (lines that do not parse name none; the
/// verification reports them), and whether it has any line. A missing file, or one that is
/// not a regular file (a device), has none.
fn nodes_in(path: &Path, node_of: &dyn Fn(&str) -> Option<String>) -> io::Result<(BTreeSet<String>, bool)> {
    let mut nodes = BTreeSet::new();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((nodes, false)),
        Err(e) => return Err(e),
    };
    if !file.metadata()?.is_file() {
        return Ok((nodes, false));
    }
    let mut any = false;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        any = true;
        if let Some(node) = node_of(&line) {
            nodes.insert(node);
        }
    }
    Ok((nodes, any))
}

/// The events an export selects: `since` included, `until` excluded.
pub fn time_window(since: Option<OffsetDateTime>, until: Option<OffsetDateTime>) -> Result<AuditFilter, AdminError> {
    if let (Some(since), Some(until)) = (since, until)
        && since > until
    {
        return Err(AdminError::Window {
            since: crate::timefmt::rfc3339(since),
            until: crate::timefmt::rfc3339(until),
        });
    }
    Ok(AuditFilter {
        since_ms: since.map(unix_ms),
        until_ms: until.map(unix_ms),
        ..AuditFilter::default()
    })
}

/// Writes every event `filter` selects to `out` as the event file's records
/// (`{"event":…,"mac":"…"}` lines, so the MACs still chain), in (node, seq) order, a page
/// of the store at a time. Returns how many were written.
pub async fn audit_export(
    store: &dyn AuditStore,
    filter: &AuditFilter,
    out: &mut dyn Write,
    progress: &mut (dyn Progress + Send),
) -> Result<u64, AdminError> {
    progress.start(store.count_audit(filter).await?);
    let written = export_pages(store, filter, out, progress).await;
    progress.finish();
    written
}

async fn export_pages(
    store: &dyn AuditStore,
    filter: &AuditFilter,
    out: &mut dyn Write,
    progress: &mut (dyn Progress + Send),
) -> Result<u64, AdminError> {
    let mut written = 0u64;
    let mut after: Option<(String, u64)> = None;
    loop {
        let cursor = after.as_ref().map(|(node, seq)| (node.as_str(), *seq));
        let page = store.query_audit(filter, cursor, EXPORT_PAGE).await?;
        for (event, mac) in &page {
            out.write_all(&event.line(mac)).map_err(AdminError::Write)?;
        }
        written += page.len() as u64;
        progress.advance_to(written);
        match page.last() {
            Some((last, _)) if page.len() == EXPORT_PAGE as usize => after = Some((last.node.clone(), last.seq)),
            _ => break,
        }
    }
    out.flush().map_err(AdminError::Write)?;
    Ok(written)
}

/// As [`audit_export`], into the file `path`, which appears only when complete: the events
/// go to `<path>.partial`, are made durable, and that file is renamed to `path`.
pub async fn audit_export_to_file(
    store: &dyn AuditStore,
    filter: &AuditFilter,
    path: &Path,
    progress: &mut (dyn Progress + Send),
) -> Result<u64, AdminError> {
    let file_err = |source: io::Error| AdminError::WriteFile {
        path: path.display().to_string(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| file_err(io::Error::new(io::ErrorKind::InvalidInput, "not a file name")))?;
    let mut partial_name = name.to_os_string();
    partial_name.push(".partial");
    let partial = path.with_file_name(partial_name);
    let mut out = BufWriter::new(File::create(&partial).map_err(file_err)?);
    let result = match audit_export(store, filter, &mut out, progress).await {
        Ok(written) => finish_file(out, &partial, path).map(|()| written).map_err(file_err),
        Err(AdminError::Write(source)) => Err(file_err(source)),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn finish_file(out: BufWriter<File>, partial: &Path, path: &Path) -> io::Result<()> {
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    std::fs::rename(partial, path)
}

#[cfg(test)]
mod tests;
