//! The compatible APIs, driven by the clients users already run: hvac (Vault's Python
//! client) against the Transit-compatible routes. The clients come from the venv
//! `scripts/test.sh` makes under `target/moto`.

mod kms;
mod metrics;
mod transit;

use std::path::PathBuf;

/// Runs the Python `script` with `args` in the clients' venv, off the runtime's threads (the
/// vault under test answers on them), and returns its standard output, trimmed. A script
/// that fails fails the test with its standard error.
pub async fn run_client(script: &'static str, args: Vec<String>) -> String {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin/python");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&python)
            .arg("-c")
            .arg(script)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/test.sh once to make the venv)", python.display()))
    })
    .await
    .expect("the client ran");
    assert!(
        out.status.success(),
        "the client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
