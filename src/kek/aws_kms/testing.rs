//! A real KMS-compatible server for tests: moto's `moto_server`, one process per test on a
//! free 127.0.0.1 port, killed when dropped. `scripts/test.sh` installs moto into
//! `target/moto` (a venv); `SIGVAULT_TEST_MOTO_SERVER` names another `moto_server`.
//!
//! moto keeps keys only in memory and does not refuse a disabled key; a test makes KMS stop
//! answering by pausing the process ([`MotoServer::pause`]) or killing it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

use super::{AwsKmsKek, AwsKmsSettings};

pub(crate) const REGION: &str = "eu-west-1";

/// The `moto_server` the tests run.
fn moto_server() -> PathBuf {
    std::env::var_os("SIGVAULT_TEST_MOTO_SERVER").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/moto/bin/moto_server")),
        PathBuf::from,
    )
}

/// Static test credentials (moto checks none; the real chain is not consulted).
pub(crate) fn credentials() -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(Credentials::new("testing", "testing", None, None, "sigvault-tests"))
}

/// A running `moto_server`.
pub(crate) struct MotoServer {
    child: Child,
    pub addr: SocketAddr,
}

impl MotoServer {
    /// Starts a server on a free port and waits until it answers.
    pub(crate) fn start() -> Self {
        let path = moto_server();
        assert!(
            path.exists(),
            "{} is missing: run scripts/test.sh (it installs moto into target/moto) or set SIGVAULT_TEST_MOTO_SERVER",
            path.display()
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {} within 30 s",
                server.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An SDK client of this server, for what a test sets up (keys, aliases).
    pub(crate) async fn client(&self) -> Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.url())
            .credentials_provider(credentials())
            .http_client(super::http_client())
            .build();
        Client::from_conf(config)
    }

    /// A new symmetric key's ARN.
    pub(crate) async fn create_key(&self) -> String {
        let out = self.client().await.create_key().send().await.unwrap();
        out.key_metadata().unwrap().arn().unwrap().to_owned()
    }

    /// Stops the process answering (SIGSTOP): connections open, nothing is answered.
    pub(crate) fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused process answer again.
    pub(crate) fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: a signal to the child this value owns, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // A paused process must be let go before it can die of SIGKILL's reaping.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Provider settings for `key_id` on `endpoint`.
pub(crate) fn settings(endpoint: &str, key_id: &str) -> AwsKmsSettings {
    AwsKmsSettings {
        key_id: key_id.to_owned(),
        region: REGION.to_owned(),
        endpoint_url: Some(endpoint.to_owned()),
        call_timeout: Duration::from_secs(5),
        max_concurrency: 8,
    }
}

/// A provider on `key_id` of `server`, with the test credentials.
pub(crate) async fn provider(server: &MotoServer, key_id: &str) -> AwsKmsKek {
    AwsKmsKek::open_with(settings(&server.url(), key_id), Some(credentials()))
        .await
        .unwrap()
}
