//! The fault-injecting PKCS#11 module (`testing/pkcs11-fault`) for tests that make the HSM
//! fail under a running vault: [`fault_module`] builds it (once per test run, into its own
//! target directory beside ours: the `cargo test` that runs us holds our own target
//! directory's lock), and a [`FaultControl`] commands it from the test, through the control
//! file its `PKCS11_FAULT_CONTROL` names in the vault's process. The real SoftHSM2 module
//! stays behind it. Never used by tests that do not inject faults.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use super::module_path;

/// The built fault module, `libpkcs11_fault.so`.
pub fn fault_module() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        let target_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .join("pkcs11-fault");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--locked", "--quiet", "-p", "pkcs11-fault", "--target-dir"])
            .arg(&target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for testing/pkcs11-fault");
        assert!(status.success(), "building testing/pkcs11-fault failed: {status}");
        let module = target_dir.join("debug").join("libpkcs11_fault.so");
        assert!(module.exists(), "{} was not built", module.display());
        module
    })
}

/// The faults of one vault's HSM, written to its control file.
pub struct FaultControl {
    path: PathBuf,
}

impl FaultControl {
    /// A control file at `path` with no faults in it.
    pub fn new(path: PathBuf) -> Self {
        let control = Self { path };
        control.clear();
        control
    }

    /// The environment that puts the fault module, with this control file and the real
    /// SoftHSM2 behind it, under a `sigvault` child process.
    pub fn vault_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("SIGVAULT_KEK__PKCS11__MODULE", fault_module().display().to_string()),
            ("PKCS11_FAULT_TARGET", module_path().display().to_string()),
            ("PKCS11_FAULT_CONTROL", self.path.display().to_string()),
        ]
    }

    /// Every later call of `function` (`C_UnwrapKey`, or `*` for every session and slot
    /// call) fails with `code` (`CKR_DEVICE_REMOVED`, …), until cleared.
    pub fn fail(&self, function: &str, code: &str) {
        self.write(&format!("{function} {code}\n"));
    }

    /// Every later call of `function` waits inside the module until cleared.
    pub fn hang(&self, function: &str) {
        self.write(&format!("{function} hang\n"));
    }

    /// No more faults: calls go through, and hung calls go on.
    pub fn clear(&self) {
        self.write("");
    }

    /// Replaces the file whole, so the module never reads half a rule.
    fn write(&self, rules: &str) {
        let next = self.path.with_extension("next");
        std::fs::write(&next, rules).expect("write the fault control file");
        std::fs::rename(&next, &self.path).expect("replace the fault control file");
    }
}
