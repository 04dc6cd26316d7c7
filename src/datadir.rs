//! A data dir that cannot be misused: one server at a time holds it, and a start that fails
//! leaves it as it was.
//!
//! [`DataDirLock`] is an exclusive `flock` on `<data dir>/sigvault.lock` (and on a lock file
//! beside a SQLite store kept outside the data dir), held for the life of the serving
//! process; a second server exits at once with one line naming the holder's pid. The offline
//! readers (`sigvault audit verify`, `export`) take no lock: they work on a live vault.
//! `sigvault audit accept-truncation` changes the trail, so it takes the lock (the vault must
//! be stopped).
//!
//! [`StartGuard`] remembers what the data dir held before a start; until the start is
//! [`StartGuard::committed`], dropping it removes what the start created (the whole dir when
//! it did not exist), so a failed first start — a port in use, a module that does not load —
//! leaves no half-made data dir that the next start would take for a broken vault.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The lock file's name inside a data dir.
pub const LOCK_FILE: &str = "sigvault.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "{} is in use by another sigvault ({holder}); stop it first, or give this one its own data dir",
        .dir.display()
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot lock {}: {source}", .path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data dir {}: not a directory", .path.display())]
    NotADirectory { path: PathBuf },
    #[error("data dir {}: cannot create or read it: {source}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Exclusive locks held while serving; released when dropped (or when the process ends,
/// however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _files: Vec<File>,
}

impl DataDirLock {
    /// Locks `dir` (which must exist), writing this process's pid into the lock file for the
    /// message a second server prints.
    pub fn acquire(dir: &Path) -> Result<Self, DataDirError> {
        Ok(Self {
            _files: vec![lock_one(&dir.join(LOCK_FILE), dir)?],
        })
    }

    /// Also locks a SQLite store kept outside `dir` (by `<store>.lock` beside it): two data
    /// dirs naming one database are one vault too. A store inside `dir` is covered already.
    pub fn add_sqlite_store(&mut self, store: &Path, dir: &Path) -> Result<(), DataDirError> {
        let inside = store.parent().is_some_and(|parent| absolute(parent) == absolute(dir));
        if !inside {
            let mut name = store.as_os_str().to_owned();
            name.push(".lock");
            self._files.push(lock_one(Path::new(&name), store)?);
        }
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// Locks `path` (created 0600 when missing) for `what` (the data dir or the store).
fn lock_one(path: &Path, what: &Path) -> Result<File, DataDirError> {
    let lock_err = |source| DataDirError::Lock {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(lock_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder = match file.read_to_string(&mut text) {
                Ok(_) if text.trim().parse::<u32>().is_ok() => format!("pid {}", text.trim()),
                _ => format!("lock {}", path.display()),
            };
            return Err(DataDirError::InUse {
                dir: what.to_path_buf(),
                holder,
            });
        }
        Err(TryLockError::Error(e)) => return Err(lock_err(e)),
    }
    // Only the holder writes the pid; a failure here costs only the message's detail.
    let _ = file.set_len(0).and_then(|()| {
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
    });
    Ok(file)
}

/// What a data dir held before a start, to undo what a failed first start created.
#[derive(Debug)]
pub struct StartGuard {
    dir: PathBuf,
    existed: bool,
    before: BTreeSet<std::ffi::OsString>,
    committed: bool,
}

impl StartGuard {
    /// Creates `dir` (mode 0700) when missing and locks it ([`DataDirLock::acquire`]). The
    /// guard undoes only what this process made under its own lock: a start refused because
    /// another server holds the dir touches nothing.
    pub fn create_locked(dir: &Path) -> Result<(Self, DataDirLock), DataDirError> {
        let create_err = |source| DataDirError::Create {
            path: dir.to_path_buf(),
            source,
        };
        let existed = dir.exists();
        if existed && !dir.is_dir() {
            return Err(DataDirError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        if !existed {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(create_err)?;
        }
        let lock = DataDirLock::acquire(dir)?;
        let before = fs::read_dir(dir)
            .map_err(create_err)?
            .filter_map(|entry| entry.ok().map(|e| e.file_name()))
            .filter(|name| name != LOCK_FILE)
            .collect();
        let guard = Self {
            dir: dir.to_path_buf(),
            existed,
            before,
            committed: false,
        };
        Ok((guard, lock))
    }

    /// Whether the data dir held nothing before this start (a first start).
    pub fn was_empty(&self) -> bool {
        self.before.is_empty()
    }

    /// The start succeeded: keep everything.
    pub fn committed(mut self) {
        self.committed = true;
    }

    /// Takes back a failed first start. A dir that held anything before is left alone: what
    /// a later start adds (SQLite's WAL, say) may hold committed data.
    fn undo(&self) {
        if !self.existed {
            let _ = fs::remove_dir_all(&self.dir);
            return;
        }
        if !self.was_empty() {
            return;
        }
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            if entry.file_name() == LOCK_FILE {
                continue;
            }
            let path = entry.path();
            let _ = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
        }
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if !self.committed {
            self.undo();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct Temp(PathBuf);

    impl Temp {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn temp() -> Temp {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sv-datadir-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }

    #[test]
    fn a_second_lock_on_a_data_dir_is_refused_with_the_holders_pid() {
        let dir = temp();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        match DataDirLock::acquire(dir.path()) {
            Err(DataDirError::InUse { holder, .. }) => assert_eq!(holder, format!("pid {}", std::process::id())),
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        assert!(DataDirLock::acquire(dir.path()).is_ok(), "released on drop");
    }

    #[test]
    fn a_sqlite_store_outside_the_data_dir_is_locked_too() {
        let dir = temp();
        let other = temp();
        let store = other.path().join("shared.db");
        let mut held = DataDirLock::acquire(dir.path()).unwrap();
        held.add_sqlite_store(&store, dir.path()).unwrap();
        let second_dir = temp();
        let mut second = DataDirLock::acquire(second_dir.path()).unwrap();
        assert!(matches!(
            second.add_sqlite_store(&store, second_dir.path()),
            Err(DataDirError::InUse { .. })
        ));
        assert!(other.path().join("shared.db.lock").exists());
        // Inside the data dir the data dir's lock covers it: no second file.
        let inside = temp();
        let mut lock = DataDirLock::acquire(inside.path()).unwrap();
        lock.add_sqlite_store(&inside.path().join("sigvault.db"), inside.path())
            .unwrap();
        assert!(!inside.path().join("sigvault.db.lock").exists());
    }

    #[test]
    fn a_failed_first_start_removes_the_data_dir_it_created() {
        let parent = temp();
        let dir = parent.path().join("vault");
        let (guard, lock) = StartGuard::create_locked(&dir).unwrap();
        assert!(guard.was_empty());
        fs::write(dir.join("sigvault.db"), b"x").unwrap();
        drop(guard);
        drop(lock);
        assert!(!dir.exists());
    }

    #[test]
    fn a_failed_first_start_in_an_empty_dir_removes_what_it_made() {
        let dir = temp();
        let (guard, _lock) = StartGuard::create_locked(dir.path()).unwrap();
        assert!(guard.was_empty());
        fs::create_dir(dir.path().join("tokens")).unwrap();
        fs::write(dir.path().join("tokens/t"), b"t").unwrap();
        drop(guard);
        assert!(dir.path().exists());
        assert!(!dir.path().join("tokens").exists());
    }

    #[test]
    fn a_failed_start_of_a_vault_that_was_started_before_changes_nothing() {
        let dir = temp();
        fs::write(dir.path().join("sigvault.db"), b"k").unwrap();
        let (guard, _lock) = StartGuard::create_locked(dir.path()).unwrap();
        assert!(!guard.was_empty());
        fs::write(dir.path().join("sigvault.db-wal"), b"w").unwrap();
        drop(guard);
        assert!(dir.path().join("sigvault.db").exists());
        assert!(dir.path().join("sigvault.db-wal").exists());
    }

    #[test]
    fn a_start_refused_by_the_lock_leaves_the_holders_dir_alone() {
        let dir = temp();
        let (_first, _lock) = StartGuard::create_locked(dir.path()).unwrap();
        fs::write(dir.path().join("tokens"), b"t").unwrap();
        assert!(matches!(
            StartGuard::create_locked(dir.path()),
            Err(DataDirError::InUse { .. })
        ));
        assert!(dir.path().join("tokens").exists());
    }

    #[test]
    fn a_committed_start_keeps_everything() {
        let parent = temp();
        let dir = parent.path().join("vault");
        let (guard, _lock) = StartGuard::create_locked(&dir).unwrap();
        fs::write(dir.join("sigvault.db"), b"x").unwrap();
        guard.committed();
        assert!(dir.join("sigvault.db").exists());
    }
}
