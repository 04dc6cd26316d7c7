//! A signing key as the API shows it: its settings, state and per-version counts, times
//! in RFC 3339. Built from what the key service returns; it must never carry key material
//! (a [`KeyDetails`] holds none).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::from_unix_ms;
use crate::keys::KeyDetails;
use crate::timefmt::{format_duration, rfc3339};

/// The JSON of one key.
#[derive(Serialize)]
pub(super) struct KeyJson {
    name: String,
    algorithm: &'static str,
    boundary: &'static str,
    owner: String,
    tags: BTreeMap<String, String>,
    state: &'static str,
    latest_version: u32,
    min_verify_version: u32,
    min_encryption_version: u32,
    deletion_allowed: bool,
    exportable: bool,
    origin: &'static str,
    auto_rotate_period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deletion_due_at: Option<String>,
    created_at: String,
    versions: Vec<VersionJson>,
}

#[derive(Serialize)]
struct VersionJson {
    version: u32,
    created_at: String,
    sign_count: u64,
    verify_count: u64,
    last_used_at: Option<String>,
}

/// The JSON of `d`.
pub(super) fn key_json(d: KeyDetails) -> KeyJson {
    let r = d.record;
    KeyJson {
        auto_rotate_period: r
            .auto_rotate_period_s
            .map(|s| format_duration(time::Duration::seconds(s))),
        deletion_due_at: r.deletion_due_ms.map(|ms| rfc3339(from_unix_ms(ms))),
        created_at: rfc3339(from_unix_ms(r.created_at_ms)),
        versions: d
            .versions
            .into_iter()
            .map(|v| VersionJson {
                version: v.version,
                created_at: rfc3339(from_unix_ms(v.created_at_ms)),
                sign_count: v.sign_count,
                verify_count: v.verify_count,
                last_used_at: v.last_used_at_ms.map(|ms| rfc3339(from_unix_ms(ms))),
            })
            .collect(),
        name: r.name,
        algorithm: r.algorithm.as_str(),
        boundary: r.boundary.as_str(),
        owner: r.owner,
        tags: r.tags,
        state: r.state.as_str(),
        latest_version: r.latest_version,
        min_verify_version: r.min_verify_version,
        min_encryption_version: r.min_encryption_version,
        deletion_allowed: r.deletion_allowed,
        exportable: r.exportable,
        origin: r.origin.as_str(),
    }
}
