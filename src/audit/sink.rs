//! The two append-only files of the audit trail: the JSON-lines event file and the anchor
//! file (one `node seq mac-hex` line per committed batch, so a truncated event file — or a
//! truncated store — is caught by comparing against the last anchored head).
//!
//! Plain blocking I/O: the anchor file is appended from tokio's blocking pool (the event file
//! is written by [`super::writer`]'s own log); the readers serve recovery and verification.
//! An append that fails is cut back off the file, so a failed append leaves nothing behind.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::chain::Head;
use super::event::{AuditEvent, hex, unhex};

/// How far back from the end of a file the tail reader looks for the last line.
const TAIL_WINDOW: u64 = 64 * 1024;

/// An append-only file, reopened after a failure so a repaired path recovers by itself.
pub(crate) struct AppendFile {
    path: PathBuf,
    file: Option<File>,
}

impl AppendFile {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            file: None,
        }
    }

    /// Current length, or `None` for something that is not a regular file (e.g. a device).
    #[cfg(test)]
    fn len(&mut self) -> std::io::Result<Option<u64>> {
        let meta = self.open()?.metadata()?;
        Ok(meta.is_file().then_some(meta.len()))
    }

    fn open(&mut self) -> std::io::Result<&File> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)?;
            self.file = Some(file);
        }
        self.file.as_ref().ok_or_else(|| std::io::Error::other("file not open"))
    }

    /// Appends `bytes` and syncs them. On failure cuts the file back to its length before
    /// the append (when it is a regular file) and closes it for a later reopen.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let result = (|| {
            let file = self.open()?;
            let meta = file.metadata()?;
            let before = meta.is_file().then_some(meta.len());
            let written = (|| {
                let mut f = file;
                f.write_all(bytes)?;
                f.sync_data()
            })();
            if written.is_err()
                && let Some(len) = before
            {
                let _ = file.set_len(len);
                let _ = file.sync_data();
            }
            written
        })();
        if result.is_err() {
            self.file = None;
        }
        result
    }
}

/// The last complete line of a regular file (an incomplete last line, from a crash in
/// mid-write, is ignored), or `None` when the file is missing, empty or not regular.
pub(crate) fn last_line(path: &Path) -> std::io::Result<Option<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(None);
    }
    let start = meta.len().saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(TAIL_WINDOW).read_to_end(&mut tail)?;
    let complete = match tail.iter().rposition(|b| *b == b'\n') {
        Some(end) => tail.get(..end).unwrap_or_default(),
        None => return Ok(None),
    };
    let line = match complete.iter().rposition(|b| *b == b'\n') {
        Some(nl) => complete.get(nl + 1..).unwrap_or_default(),
        None => complete,
    };
    Ok(Some(String::from_utf8_lossy(line).into_owned()))
}

/// Cuts an incomplete last line (a crash in mid-append) off a regular file.
pub(crate) fn drop_partial_line(path: &Path) -> std::io::Result<()> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() || meta.len() == 0 {
        return Ok(());
    }
    let start = meta.len().saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    (&mut file).take(TAIL_WINDOW).read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(nl) => start + nl as u64 + 1,
        None => start,
    };
    file.set_len(keep)?;
    file.sync_data()
}

/// One line of the event file: its number and the parsed event with its MAC, or why it
/// does not parse.
pub(crate) type FileLine = (usize, Result<(AuditEvent, Vec<u8>), String>);

/// Every event line of the JSON-lines file, in file order.
///
/// A last line without its newline is left out: a write a crash (or a power loss) cut short,
/// never acknowledged — the next start cuts it off.
pub(crate) fn read_events(path: &Path) -> std::io::Result<Vec<FileLine>> {
    let Some(file) = open_regular(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    for number in 1.. {
        line.clear();
        if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            break;
        }
        let text = line.trim_end_matches('\n');
        if !text.is_empty() {
            out.push((number, AuditEvent::parse_line(text)));
        }
    }
    Ok(out)
}

/// Opens `path` for reading when it is a regular file; `None` when it is missing or is
/// something else (a device such as `/dev/full` would read forever).
fn open_regular(path: &Path) -> std::io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) if f.metadata()?.is_file() => Ok(Some(f)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One anchor line: `node seq mac-hex`.
pub fn anchor_line(node: &str, head: &Head) -> String {
    format!("{node} {} {}\n", head.seq, hex(&head.mac))
}

/// Parses an anchor line into `(node, head)`.
pub(crate) fn parse_anchor(line: &str) -> Option<(String, Head)> {
    let mut parts = line.split(' ');
    let node = parts.next()?.to_owned();
    let seq = parts.next()?.parse().ok()?;
    let mac = unhex(parts.next()?)?;
    parts.next().is_none().then_some((node, Head { seq, mac }))
}

/// Every anchored head of `node`, in file order.
pub(crate) fn read_anchors(path: &Path, node: &str) -> std::io::Result<Vec<Result<Head, String>>> {
    let Some(file) = open_regular(path)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        match parse_anchor(&line) {
            Some((n, head)) if n == node => out.push(Ok(head)),
            Some(_) => {}
            None => out.push(Err(format!(
                "malformed anchor line `{}`",
                line.chars().take(80).collect::<String>()
            ))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sv-sink-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("f")
    }

    #[test]
    fn appends_are_read_back_and_the_last_complete_line_is_found() {
        let path = temp("append");
        let mut f = AppendFile::new(&path);
        f.append(b"one\ntwo\n").unwrap();
        f.append(b"three\n").unwrap();
        assert_eq!(last_line(&path).unwrap().as_deref(), Some("three"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"partial")
            .unwrap();
        assert_eq!(last_line(&path).unwrap().as_deref(), Some("three"));
        assert_eq!(read_events(&path).unwrap().len(), 3, "the torn line is not read");
        drop_partial_line(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_failed_append_to_a_full_device_reports_an_error() {
        let mut f = AppendFile::new(Path::new("/dev/full"));
        assert!(f.append(b"x\n").is_err());
        assert_eq!(f.len().unwrap(), None);
        assert_eq!(last_line(Path::new("/dev/full")).unwrap(), None);
        assert!(
            read_events(Path::new("/dev/zero")).unwrap().is_empty(),
            "a device is not read"
        );
        assert!(read_anchors(Path::new("/dev/zero"), "n").unwrap().is_empty());
    }

    #[test]
    fn anchor_lines_round_trip() {
        let head = Head {
            seq: 42,
            mac: vec![1, 2, 255],
        };
        let line = anchor_line("n1", &head);
        assert_eq!(line, "n1 42 0102ff\n");
        assert_eq!(parse_anchor(line.trim_end()), Some(("n1".into(), head)));
        assert_eq!(parse_anchor("n1 x 00"), None);
        assert_eq!(parse_anchor("n1 1 00 extra"), None);
    }
}
