//! Process hardening applied once at startup, before any secret is loaded: no core dumps
//! (a core file of a vault is a plaintext copy of its cache) and no ptrace attach by
//! unprivileged processes, and files created private to the service user. Locking of secret pages is done per buffer in
//! [`crate::secret::SecretBytes`].

/// What the kernel granted; logged by startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    pub core_dumps_disabled: bool,
    pub(crate) not_dumpable: bool,
}

/// Files this process creates (database, WAL, tokens, PIN files) are private to its user.
const UMASK: libc::mode_t = 0o077;

/// Sets `RLIMIT_CORE` to zero, marks the process non-dumpable and sets a private umask.
pub fn harden_process() -> Hardening {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(UMASK) };
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on this process with valid, owned arguments.
    let core_dumps_disabled = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } == 0;
    // SAFETY: as above; PR_SET_DUMPABLE takes an integer flag.
    let not_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    Hardening {
        core_dumps_disabled,
        not_dumpable,
    }
}

/// The most bytes this process may lock in memory, or `None` when unlimited.
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reading this process's limit into a valid, owned struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 || lim.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(lim.rlim_cur)
}

/// Creates `path` with mode 0600, refusing to follow or replace an existing file, writes
/// `bytes` and syncs them: for PIN files and configs that must be private whatever the umask.
pub(crate) fn create_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_dumps_are_off_after_hardening() {
        let h = harden_process();
        assert!(h.core_dumps_disabled);
        let mut lim = libc::rlimit {
            rlim_cur: 1,
            rlim_max: 1,
        };
        // SAFETY: reading this process's limit into a valid struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, 0);
    }
}
