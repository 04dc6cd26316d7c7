//! The real `sigvault` binary as a child process: [`spawn_dev`] for a `sigvault dev` that
//! serves until stopped, [`run_binary`] for a command expected to exit on its own. Every
//! wait has a deadline, so a regression that hangs the binary fails its test instead of
//! hanging the suite. Children never see the suite's `SOFTHSM2_CONF` unless a test gives it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;

use super::Reply;

/// How long a command given to [`run_binary`] may run before it is killed.
const RUN_DEADLINE: Duration = Duration::from_secs(60);
/// How long [`spawn_dev`] waits for the "listening on" line.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long one [`DevProcess::request`] may take.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// How long [`DevProcess::stop`] waits for a clean exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// A `sigvault dev` child process.
pub struct DevProcess {
    pub child: Child,
    pub addr: String,
    /// `http` or `https`, as the "listening on" line said.
    pub scheme: &'static str,
    pub stdout_lines: Vec<String>,
}

/// Starts the real binary with `sigvault dev --data-dir DIR --listen 127.0.0.1:0` and waits
/// for its "listening on" line (`http://` or, with `[tls]`, `https://`).
pub fn spawn_dev(data_dir: &Path, extra_env: &[(&str, &str)]) -> DevProcess {
    let args = [
        OsStr::new("dev"),
        OsStr::new("--listen"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        data_dir.as_os_str(),
    ];
    spawn_sigvault(&args, extra_env, &stderr_log(data_dir))
}

/// Starts the real binary with `args` (a command that serves: `dev`, `serve`), its stderr
/// in `log`, and waits for its "listening on" line. `SOFTHSM2_CONF` is removed unless
/// `extra_env` sets it.
pub fn spawn_sigvault<S: AsRef<OsStr>>(args: &[S], extra_env: &[(&str, &str)], log: &Path) -> DevProcess {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigvault"));
    cmd.args(args)
        .env_remove("SOFTHSM2_CONF")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(std::fs::File::create(log).expect("stderr log")));
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sigvault dev");
    // Read on a thread of its own (and drained after "listening on"), so the wait for the
    // line has a deadline and a chatty child never blocks on a full pipe.
    let stdout = child.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            // The receiver is gone once the server listens; the rest is drained unread.
            let _ = lines_tx.send(line);
        }
    });
    let deadline = Instant::now() + START_DEADLINE;
    let mut lines = Vec::new();
    loop {
        let line = match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => line,
            Err(waited) => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match waited {
                    std::sync::mpsc::RecvTimeoutError::Timeout => format!("did not listen within {START_DEADLINE:?}"),
                    std::sync::mpsc::RecvTimeoutError::Disconnected => "exited before listening".to_owned(),
                };
                panic!("sigvault {why}: {}", std::fs::read_to_string(log).unwrap_or_default());
            }
        };
        lines.push(line.clone());
        let listening = [("http", "listening on http://"), ("https", "listening on https://")]
            .into_iter()
            .find_map(|(scheme, prefix)| line.strip_prefix(prefix).map(|addr| (scheme, addr.to_owned())));
        if let Some((scheme, addr)) = listening {
            return DevProcess {
                child,
                addr,
                scheme,
                stdout_lines: lines,
            };
        }
    }
}

/// Where `spawn_dev` sends the child's stderr (beside the data dir, not in it).
pub fn stderr_log(data_dir: &Path) -> PathBuf {
    data_dir.with_extension("stderr.log")
}

impl DevProcess {
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// `method path` with `token` as bearer and `body` as JSON, on a fresh connection.
    pub async fn request(&self, method: Method, path: &str, token: &str, body: Option<Value>) -> Reply {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_DEADLINE)
            .build()
            .expect("HTTP client");
        let mut req = client.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        Reply::of(req).await
    }

    /// Creates the HMAC-SHA256 key `name` as root (`ROOT_TOKEN`), asserting 201.
    pub async fn create_key(&self, name: &str) {
        let r = self
            .request(
                Method::POST,
                "/v1/keys",
                super::ROOT_TOKEN,
                Some(serde_json::json!({"name": name, "algorithm": "hmac-sha256"})),
            )
            .await;
        assert_eq!(r.status, reqwest::StatusCode::CREATED, "{}", r.body);
    }

    /// Whether the process has a handler for `signal` (Linux `/proc/PID/status`, `SigCgt`):
    /// `listening on` is printed before the handlers exist.
    pub fn catches(&self, signal: i32) -> bool {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & (1 << (signal - 1)) != 0)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(status.success(), "sigvault dev exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("sigvault dev did not stop within {STOP_DEADLINE:?} of SIGTERM");
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one run of the binary did.
pub struct Run {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `sigvault: error:` lines of stderr.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("sigvault: error:"))
            .collect()
    }

    /// Asserts a refused start: a non-zero exit, no panic, nothing served, and exactly one
    /// `sigvault: error:` line, which it returns.
    #[track_caller]
    pub fn refused_line(&self) -> String {
        let Run { code, stdout, stderr } = self;
        assert_ne!(
            *code,
            Some(0),
            "the start is refused (non-zero exit); stdout: {stdout}; stderr: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "a refused start does not panic: {stderr}");
        assert!(
            !stdout.contains("listening on"),
            "a refused start serves nothing: {stdout}"
        );
        match self.error_lines()[..] {
            [line] => line.to_owned(),
            _ => panic!("exactly one `sigvault: error:` line: {stderr}"),
        }
    }
}

/// Runs the binary with `args` and `env` (stdin closed) to its exit, for commands expected
/// to exit on their own: startup failures, `policy check`, `audit verify`. It is killed
/// after [`RUN_DEADLINE`], so a regression that makes such a command start serving fails
/// its test instead of hanging the suite.
pub fn run_binary<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigvault"));
    cmd.args(args)
        .env_remove("SOFTHSM2_CONF")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    let mut child = cmd.spawn().expect("run sigvault");
    // Drained on their own threads: a child blocked on a full pipe would never exit.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + RUN_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "sigvault {shown:?} was expected to exit but still ran after {RUN_DEADLINE:?}: {}",
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        code: status.code(),
        stdout: stdout.join().expect("stdout"),
        stderr: stderr.join().expect("stderr"),
    }
}

/// A SoftHSM2 module configuration of a vault's own under `dir` (`dir/softhsm2.conf`, its
/// token directory `dir/tokens`), for a child given it as `SOFTHSM2_CONF`; returns its path.
pub fn own_softhsm_conf(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("tokens")).expect("token dir");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            dir.join("tokens").display()
        ),
    )
    .expect("softhsm2.conf");
    conf
}
