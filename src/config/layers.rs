//! The layers a raw configuration is merged from: the TOML file, then
//! `SIGVAULT_<SECTION>__<KEY>` environment variables, then command-line overrides. Each layer
//! is checked on its own, so an error names the file line or the variable it came from.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::raw::RawConfig;
use super::{ConfigError, invalid};
// A Redis URL may hold a password: TOML's messages quote the line they stopped at.
use crate::ratelimit::redact_userinfo;

/// Environment variables that carry secrets or other meanings, not config keys.
const RESERVED_ENV: &[&str] = &[
    "SIGVAULT_ROOT_TOKEN",
    "SIGVAULT_KEK__PKCS11__PIN",
    "SIGVAULT_LOG",
    // A client's, not the server's: the line `sigvault dev` prints for a shell to export
    // (a server or `audit verify` started from that shell must not take them for settings).
    "SIGVAULT_ADDR",
    "SIGVAULT_TOKEN",
    // The other client settings of the commands that call a running vault (`sigvault kek`).
    "SIGVAULT_TOKEN_FILE",
    "SIGVAULT_CACERT",
    "SIGVAULT_CLIENT_CERT",
    "SIGVAULT_CLIENT_KEY",
];
const ENV_PREFIX: &str = "SIGVAULT_";

/// Command-line values that override file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

/// Reads the file (if any), applies `env` and `overrides`, and returns the merged raw
/// config. `env` is passed in (not read here) so tests control it.
pub fn merge(file: Option<&Path>, env: &[(String, String)], overrides: &Overrides) -> Result<RawConfig, ConfigError> {
    let table = match file {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    merge_layers(table, env, overrides)
}

/// [`merge`] of a config file's text (`shown` names it in errors), without overrides.
pub fn merge_text(text: &str, shown: &str, env: &[(String, String)]) -> Result<RawConfig, ConfigError> {
    merge_layers(parse_file(text, shown)?, env, &Overrides::default())
}

/// [`merge`] of a file already read into `table` (by [`parse_file`]).
pub(crate) fn merge_layers(
    mut table: Table,
    env: &[(String, String)],
    overrides: &Overrides,
) -> Result<RawConfig, ConfigError> {
    for (var, value) in env {
        let Some(path) = env_key_path(var) else { continue };
        let layer = env_layer(var, &path, value)?;
        deep_merge(&mut table, layer);
    }
    if let Some(listen) = &overrides.listen {
        table.insert("listen".into(), Value::String(listen.clone()));
    }
    if let Some(dir) = &overrides.data_dir {
        table.insert("data_dir".into(), Value::String(dir.display().to_string()));
    }
    table
        .try_into()
        .map_err(|e| invalid("config", redact_userinfo(&e.to_string())))
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.display().to_string(),
        source,
    })?;
    parse_file(&text, &path.display().to_string())
}

/// The text of a config file as the table to merge; errors name `shown` as the file.
pub(crate) fn parse_file(text: &str, shown: &str) -> Result<Table, ConfigError> {
    let file_err = |e: toml::de::Error| ConfigError::File {
        path: shown.to_owned(),
        message: redact_userinfo(e.to_string().trim_end()).replace('\n', " "),
    };
    // Deserialising into the typed form first reports unknown keys and wrong types with
    // their line; the untyped table is what gets merged.
    toml::from_str::<RawConfig>(text).map_err(file_err)?;
    toml::from_str::<Table>(text).map_err(file_err)
}

/// `SIGVAULT_KEK__PKCS11__MODULE` → `["kek", "pkcs11", "module"]`; `None` for variables
/// that are not config keys.
fn env_key_path(var: &str) -> Option<Vec<String>> {
    if RESERVED_ENV.contains(&var) || var.starts_with("SIGVAULT_TEST_") {
        return None;
    }
    let rest = var.strip_prefix(ENV_PREFIX)?;
    Some(rest.split("__").map(str::to_ascii_lowercase).collect())
}

/// One environment variable as a one-key table, checked on its own so an error names it.
/// The value is tried as a string first, then as a TOML literal (numbers, booleans).
fn env_layer(var: &str, path: &[String], value: &str) -> Result<Table, ConfigError> {
    let mut candidates = vec![Value::String(value.to_owned())];
    if let Ok(parsed) = toml::from_str::<Table>(&format!("v = {value}"))
        && let Some(v) = parsed.get("v")
    {
        candidates.push(v.clone());
    }
    let mut last_error = String::new();
    for candidate in candidates {
        let layer = nest(path, candidate);
        match layer.clone().try_into::<RawConfig>() {
            Ok(_) => return Ok(layer),
            Err(e) => last_error = redact_userinfo(e.to_string().trim_end()).replace('\n', " "),
        }
    }
    Err(ConfigError::Env {
        var: var.to_owned(),
        message: last_error,
    })
}

fn nest(path: &[String], value: Value) -> Table {
    let mut value = value;
    for key in path.iter().skip(1).rev() {
        let mut t = Table::new();
        t.insert(key.clone(), value);
        value = Value::Table(t);
    }
    let mut top = Table::new();
    if let Some(first) = path.first() {
        top.insert(first.clone(), value);
    }
    top
}

fn deep_merge(into: &mut Table, from: Table) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Table(existing)), Value::Table(incoming)) => deep_merge(existing, incoming),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}
