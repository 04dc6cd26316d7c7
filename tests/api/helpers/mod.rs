//! The black-box suite's harness, one concept per module: [`app`] (a sigvault in-process,
//! [`spawn_app`]), [`process`] (the real binary: [`spawn_dev`], [`run_binary`] with a
//! deadline), [`reply`] (an HTTP answer as a [`Reply`]), [`audit`] (reading the trail, the
//! event of a request id), [`dump`] (searching a copied database and files for secrets),
//! [`raw_store`] (the database outside sigvault, either backend), [`store`] (which backend
//! the suite runs on) and [`fault`] (the fault-injecting PKCS#11 module between a vault and
//! SoftHSM2). Everything is re-exported here, so tests import `crate::helpers::…`. A helper
//! asserts only what it needs to go on (a request was sent, a file exists) and, when its name
//! says so (`assert_…`, `Run::refused_line`), the check it is named for: nothing hidden.

mod app;
mod audit;
mod custody;
mod dump;
mod fault;
mod moto;
mod process;
mod proxy;
mod raw_store;
mod reply;
mod store;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;

pub use app::{AppHome, TestApp, module_path, softhsm_conf, spawn_app, spawn_app_in};
pub use custody::{custodian_key, spki_fingerprint, unwrap_export, wrap_for_import};
pub use dump::{
    Needle, assert_dump_holds_no_secret, database_copy, database_files, encodings, found, found_needles,
    live_database_copy, random_bytes,
};
pub use fault::FaultControl;
pub use moto::{MOTO_CREDENTIALS, MOTO_REGION, MotoServer};
pub use process::{DevProcess, Run, own_softhsm_conf, run_binary, spawn_dev, spawn_sigvault, stderr_log};
pub use proxy::CutProxy;
pub use raw_store::{RawStore, RawValue};
pub use reply::Reply;
pub(crate) use store::sqlite_only;
pub use store::{copy_postgres_database, fresh_postgres_database, on_sqlite, postgres_admin_url, store_url};

pub const ROOT_TOKEN: &str = "svt_test-root-token-0123456789";
pub const USER_PIN: &str = "test-user-pin";
pub const SO_PIN: &str = "test-so-pin";

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("valid base64")
}

pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}-{tag}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A fresh, empty directory under the target dir (kept after the test for inspection).
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(tag));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Polls `check` every 50 ms until it holds; fails the test naming `what` when `seconds` of
/// real time pass first.
pub async fn eventually<F, Fut>(what: &str, seconds: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {seconds} s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The records `GET /v1/sys/kek` counts under `kek_id` (0 when it names none).
pub fn records_under(status: &serde_json::Value, kek_id: &str) -> u64 {
    status["records"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["kek_id"] == kek_id)
        .and_then(|row| row["records"].as_u64())
        .unwrap_or(0)
}
