//! `sigvault kek migrate`: moves a vault from one root of trust to another (SoftHSM2 in a
//! pilot → a network HSM or AWS KMS in production) by rewriting the `[kek]` sections of its
//! config file, after proving both providers work.
//!
//! A migration makes the target `[kek]` (new records are sealed under it) and the old
//! provider `[kek.previous]` (its records stay readable); once the vault runs the new file,
//! its rewrap job moves every record under the target, and `GET /v1/sys/kek` shows the old
//! provider's count fall to zero. `--stage` only adds the target as `[kek.previous]`: in a
//! cluster every node first learns to read the target's records (a rolling restart), so
//! that no node meets a record it cannot open while the others switch.
//!
//! The file is rewritten only when the result parses back to exactly the intended sections
//! and validates as a whole; the original is kept beside it
//! (`<file>.before-kek-migrate`). Comments inside the `[kek…]` sections are not kept (the
//! sections are written anew at the end of the file); everything else is untouched.

use std::io::Write;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::AdminError;
use crate::config::{self, Mode, Overrides, RawKekProvider, Settings};
use crate::kek;
use crate::store;

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// Only staged: the target was added as `[kek.previous]`.
    pub staged: bool,
    /// The `kek_id` new records are sealed under once the vault runs the new file.
    pub current_kek_id: String,
    /// The `kek_id`s the vault can open records of once it runs the new file.
    pub kek_ids: Vec<String>,
    /// Sealed records not yet under `current_kek_id` (the rewrap job's work).
    pub records_to_move: u64,
    /// Where the original file was kept.
    pub backup: PathBuf,
}

/// Why a migration was refused (nothing was written).
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("the target provider is the one the vault already uses")]
    SameProvider,
    #[error(
        "{records} sealed records are still under the provider of [kek.previous] ({kek_ids}): the rewrap job has not finished moving them; run `sigvault kek status` and migrate again once it shows none"
    )]
    PreviousInUse { records: u64, kek_ids: String },
    #[error(
        "the config sets `kek` in a form this command cannot rewrite (dotted keys, an inline table, or a line inside a multi-line string that looks like a [kek] header): write it as [kek] sections, or edit it by hand"
    )]
    Unrewritable,
    #[error(
        "{0} is set: it would override the provider the file names once rewritten; unset SIGVAULT_KEK__* variables (and remove them from the service's environment) and put the values in the [kek] sections"
    )]
    EnvOverride(String),
    #[error("{path} changed while the providers were checked; nothing was written: run the command again")]
    ChangedMeanwhile { path: String },
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl MigrateError {
    /// The exit code of `sigvault kek migrate`: 1 refused (the vault's state says no), 2 a
    /// bad file, setting or argument, 5 a provider or the store could not be reached.
    pub fn exit_code(&self) -> u8 {
        match self {
            MigrateError::SameProvider | MigrateError::PreviousInUse { .. } | MigrateError::ChangedMeanwhile { .. } => {
                1
            }
            MigrateError::File { .. } | MigrateError::Unrewritable | MigrateError::EnvOverride(_) => 2,
            MigrateError::Admin(AdminError::Kek(e)) if e.is_unavailable() => 5,
            MigrateError::Admin(AdminError::Store(_)) => 5,
            MigrateError::Admin(_) => 2,
        }
    }
}

impl From<config::ConfigError> for MigrateError {
    fn from(e: config::ConfigError) -> Self {
        MigrateError::Admin(e.into())
    }
}

impl From<kek::KekError> for MigrateError {
    fn from(e: kek::KekError) -> Self {
        MigrateError::Admin(e.into())
    }
}

impl From<store::StoreError> for MigrateError {
    fn from(e: store::StoreError) -> Self {
        MigrateError::Admin(e.into())
    }
}

/// Rewrites `config_file` so that the provider `target_file` names becomes current (or, with
/// `stage`, readable only); see the module documentation. `env` is the process environment
/// (its `SIGVAULT_*` overrides and secrets apply as for `serve`).
pub async fn kek_migrate(
    config_file: &Path,
    target_file: &Path,
    stage: bool,
    env: &[(String, String)],
) -> Result<Migrated, MigrateError> {
    // A `SIGVAULT_KEK__…` variable would apply to whichever provider the rewritten file
    // names (a PIN meant for the old token, say); the rewrite must be the whole truth.
    if let Some((var, _)) = env.iter().find(|(k, _)| k.starts_with("SIGVAULT_KEK__")) {
        return Err(MigrateError::EnvOverride(var.clone()));
    }
    let text = read(config_file)?;
    let table = parse(config_file, &text)?;
    let target = target_section(target_file)?;
    let settings = Settings::from_raw(
        Mode::Serve,
        config::merge(Some(config_file), env, &Overrides::default())?,
        env,
    )?;

    let kek_table = table.get("kek").and_then(Value::as_table).cloned().unwrap_or_default();
    let current = provider_of(&kek_table, config_file)?;
    let previous = match kek_table.get("previous") {
        Some(value) => Some(provider_from(value.clone(), config_file, "[kek.previous]")?),
        None => None,
    };
    if same_provider(&current, &target) {
        return Err(MigrateError::SameProvider);
    }
    // The provider a migration drops from the file must hold no record any more.
    let dropped = match &previous {
        Some(p) if same_provider(p, &target) => None,
        Some(_) => settings.kek_previous.as_ref(),
        None => None,
    };
    let store = store::open(&settings.store).await?;
    if let Some(dropped) = dropped {
        let provider = kek::open(dropped).await?;
        let ids = provider.kek_ids();
        let records: u64 = store
            .kek_usage()
            .await?
            .iter()
            .filter(|(id, _)| ids.contains(id))
            .map(|(_, n)| n)
            .sum();
        if records > 0 {
            return Err(MigrateError::PreviousInUse {
                records,
                kek_ids: ids.join(", "),
            });
        }
    }

    let mut new_kek = Table::new();
    let (now_current, now_previous) = if stage { (current, target) } else { (target, current) };
    for (key, value) in section_table(&now_current) {
        new_kek.insert(key, value);
    }
    if let Some(rate) = kek_table.get("rewrap_rate") {
        new_kek.insert("rewrap_rate".into(), rate.clone());
    }
    new_kek.insert("previous".into(), Value::Table(section_table(&now_previous)));

    let new_text = rewrite(&text, &new_kek)?;
    let written = parse(config_file, &new_text)?;
    if written.get("kek").and_then(Value::as_table) != Some(&new_kek) {
        return Err(MigrateError::Unrewritable);
    }
    // Both providers of the new file open and pass their self-tests before anything is
    // written (each wraps and unwraps a throwaway key).
    let raw = config::merge_text(&new_text, &config_file.display().to_string(), env)?;
    let new_settings = Settings::from_raw(Mode::Serve, raw, env)?;
    let keyring = kek::open_keyring(&new_settings.kek, new_settings.kek_previous.as_ref()).await?;
    let current_kek_id = keyring.current().current_kek_id();
    // Without `--stage` the keyring's previous provider is the old `[kek]`: a target that is
    // the same token or key under other settings holds the same KEK, so it appears twice.
    if !stage && keyring.kek_ids().iter().filter(|id| **id == current_kek_id).count() > 1 {
        return Err(MigrateError::SameProvider);
    }
    let records_to_move = store
        .kek_usage()
        .await?
        .iter()
        .filter(|(id, _)| *id != current_kek_id)
        .map(|(_, n)| n)
        .sum();

    let backup = backup_path(config_file, crate::clock::unix_ms(time::OffsetDateTime::now_utc()));
    write_atomically(config_file, &backup, &text, &new_text)?;
    Ok(Migrated {
        staged: stage,
        current_kek_id,
        kek_ids: keyring.kek_ids(),
        records_to_move,
        backup,
    })
}

fn read(path: &Path) -> Result<String, MigrateError> {
    std::fs::read_to_string(path).map_err(|e| MigrateError::File {
        path: path.display().to_string(),
        message: format!("cannot read it: {e}"),
    })
}

fn parse(path: &Path, text: &str) -> Result<Table, MigrateError> {
    text.parse::<Table>().map_err(|e| MigrateError::File {
        path: path.display().to_string(),
        message: format!("not valid TOML: {}", e.message()),
    })
}

/// The provider of `--to`: a file holding a `[kek]` section (a whole config, or only that
/// section); its `rewrap_rate` and `previous`, if any, are not part of the provider.
fn target_section(path: &Path) -> Result<RawKekProvider, MigrateError> {
    let table = parse(path, &read(path)?)?;
    let kek = table
        .get("kek")
        .and_then(Value::as_table)
        .ok_or_else(|| MigrateError::File {
            path: path.display().to_string(),
            message: "has no [kek] section naming the target provider".into(),
        })?;
    provider_of(kek, path)
}

/// The provider settings of a `[kek]` table (its `provider`, `pkcs11` and `aws_kms`).
fn provider_of(kek: &Table, path: &Path) -> Result<RawKekProvider, MigrateError> {
    let mut section = Table::new();
    for key in ["provider", "pkcs11", "aws_kms"] {
        if let Some(value) = kek.get(key) {
            section.insert(key.into(), value.clone());
        }
    }
    provider_from(Value::Table(section), path, "[kek]")
}

fn provider_from(value: Value, path: &Path, what: &str) -> Result<RawKekProvider, MigrateError> {
    value.try_into().map_err(|e: toml::de::Error| MigrateError::File {
        path: path.display().to_string(),
        message: format!("{what}: {}", e.message()),
    })
}

/// Whether two sections name the same provider (the provider name defaults to `pkcs11`).
fn same_provider(a: &RawKekProvider, b: &RawKekProvider) -> bool {
    let name = |p: &RawKekProvider| p.provider.clone().unwrap_or_else(|| "pkcs11".into());
    name(a) == name(b) && a.pkcs11 == b.pkcs11 && a.aws_kms == b.aws_kms
}

/// A provider section as a TOML table (absent fields left out).
fn section_table(provider: &RawKekProvider) -> Table {
    match Value::try_from(provider) {
        Ok(Value::Table(table)) => table,
        _ => Table::new(),
    }
}

/// `text` without its `[kek]` and `[kek.*]` tables, with `kek` written anew at its end.
fn rewrite(text: &str, kek: &Table) -> Result<String, MigrateError> {
    let mut kept = String::with_capacity(text.len());
    let mut in_kek = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            let name = trimmed.trim_start_matches('[').trim_start();
            in_kek = name.strip_prefix("kek").is_some_and(|rest| {
                let rest = rest.trim_start();
                rest.starts_with(']') || rest.starts_with('.')
            });
        }
        if !in_kek {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let without: Table = kept.parse().map_err(|_| MigrateError::Unrewritable)?;
    // Everything but `kek` must read exactly as before (a line inside a multi-line string
    // that looked like a header would otherwise have been cut).
    let mut original: Table = text.parse().map_err(|_| MigrateError::Unrewritable)?;
    original.remove("kek");
    if without.contains_key("kek") || without != original {
        return Err(MigrateError::Unrewritable);
    }
    let mut wrapper = Table::new();
    wrapper.insert("kek".into(), Value::Table(kek.clone()));
    let section = toml::to_string(&wrapper).map_err(|_| MigrateError::Unrewritable)?;
    let mut out = kept.trim_end().to_owned();
    if !out.is_empty() {
        out.push_str("\n\n");
    }
    out.push_str("# Written by `sigvault kek migrate`.\n");
    out.push_str(&section);
    Ok(out)
}

/// `<file>.before-kek-migrate-<unix ms>`: one per run, so a staged run and the switch after
/// it each keep the file they replaced.
fn backup_path(config_file: &Path, now_ms: i64) -> PathBuf {
    let mut name = config_file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".before-kek-migrate-{now_ms}"));
    config_file.with_file_name(name)
}

/// Keeps `old` at `backup`, then replaces `path` with `new` by a rename (a crash leaves the
/// old file or the new one, never half of one). Both files are created with no access for
/// anyone but the owner, then given the original's mode, owner and group (a config readable
/// only by the vault's user stays so, and the vault can still read it when root ran this).
/// `path` must still hold `old` just before the rename: an edit made meanwhile is not lost.
/// A symlink is followed: its target is replaced.
fn write_atomically(path: &Path, backup: &Path, old: &str, new: &str) -> Result<(), MigrateError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let err = |what: &Path, e: std::io::Error| MigrateError::File {
        path: what.display().to_string(),
        message: format!("cannot write it: {e}"),
    };
    let target = std::fs::canonicalize(path).map_err(|e| err(path, e))?;
    let meta = std::fs::metadata(&target).map_err(|e| err(path, e))?;
    let write = |to: &Path, text: &str| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)?;
        file.write_all(text.as_bytes())?;
        std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        file.set_permissions(std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        file.sync_all()
    };
    write(backup, old).map_err(|e| err(backup, e))?;
    let mut tmp_name = target.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".kek-migrate-tmp");
    let tmp = target.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let replaced = write(&tmp, new).map_err(|e| err(&tmp, e)).and_then(|()| {
        if std::fs::read_to_string(&target).map_err(|e| err(path, e))? != old {
            return Err(MigrateError::ChangedMeanwhile {
                path: path.display().to_string(),
            });
        }
        std::fs::rename(&tmp, &target).map_err(|e| err(path, e))
    });
    if replaced.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return replaced;
    }
    if let Some(dir) = target.parent()
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_replaces_only_the_kek_sections_and_keeps_the_rest() {
        let text = "listen = \"127.0.0.1:8200\"\n# keep me\n[kek]\nprovider = \"pkcs11\"\n\n[kek.pkcs11]\nmodule = \"/m.so\"\n\n[store]\nbackend = \"sqlite\"\n[kek.previous]\nprovider = \"aws-kms\"\n";
        let mut kek = Table::new();
        kek.insert("provider".into(), Value::String("aws-kms".into()));
        let out = rewrite(text, &kek).unwrap();
        let table: Table = out.parse().unwrap();
        assert_eq!(table.get("kek").and_then(Value::as_table), Some(&kek));
        assert!(out.contains("# keep me") && out.contains("[store]") && out.contains("backend = \"sqlite\""));
        assert!(!out.contains("/m.so"), "{out}");
    }

    #[test]
    fn kek_as_dotted_keys_or_an_inline_table_is_not_rewritten() {
        let kek = Table::new();
        for text in ["kek.provider = \"pkcs11\"\n", "kek = { provider = \"pkcs11\" }\n"] {
            assert!(matches!(rewrite(text, &kek), Err(MigrateError::Unrewritable)), "{text}");
        }
    }

    #[test]
    fn providers_compare_by_name_and_section() {
        let pkcs11 = |label: &str| RawKekProvider {
            provider: None,
            pkcs11: Some(config::RawPkcs11 {
                token_label: Some(label.into()),
                ..config::RawPkcs11::default()
            }),
            aws_kms: None,
        };
        assert!(same_provider(&pkcs11("a"), &pkcs11("a")));
        let mut named = pkcs11("a");
        named.provider = Some("pkcs11".into());
        assert!(same_provider(&pkcs11("a"), &named), "pkcs11 is the default name");
        assert!(!same_provider(&pkcs11("a"), &pkcs11("b")));
    }

    #[test]
    fn a_multi_line_string_line_that_looks_like_a_kek_header_is_not_cut() {
        let text = "motd = \"\"\"\n[kek.pkcs11]\nnot a table\n\"\"\"\n[kek]\nprovider = \"pkcs11\"\n";
        assert!(matches!(rewrite(text, &Table::new()), Err(MigrateError::Unrewritable)));
    }

    #[test]
    fn the_file_is_replaced_with_its_mode_and_a_backup_unless_it_changed_meanwhile() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sv-migrate-write-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("sigvault.toml");
        std::fs::write(&file, "old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let backup = backup_path(&file, 1);
        write_atomically(&file, &backup, "old", "new").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "old");
        for f in [&file, &backup] {
            assert_eq!(std::fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        }
        // A backup is never overwritten, and an edit made since the file was read wins.
        assert!(write_atomically(&file, &backup, "new", "newer").is_err());
        let err = write_atomically(&file, &backup_path(&file, 2), "stale", "newer").unwrap_err();
        assert!(matches!(err, MigrateError::ChangedMeanwhile { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "new");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("-tmp"))
            .collect();
        assert!(left.is_empty(), "no temporary file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
