//! moto's KMS server as a child process, for the black-box tests of the AWS KMS provider:
//! one per test on a free 127.0.0.1 port (moto keeps keys in memory only), killed when
//! dropped. `scripts/test.sh` installs moto into `target/moto`; `SIGVAULT_TEST_MOTO_SERVER`
//! names another `moto_server`. A test makes KMS stop answering by pausing the process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};

/// The region every test key lives in.
pub const MOTO_REGION: &str = "eu-west-1";
/// What the vault processes get as `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`: moto checks
/// no credentials, but the SDK's chain must find some.
pub const MOTO_CREDENTIALS: [(&str, &str); 2] =
    [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")];

pub struct MotoServer {
    child: Child,
    pub addr: SocketAddr,
}

impl MotoServer {
    /// Starts `moto_server` on a free port and waits until it listens.
    pub fn start() -> Self {
        let path = std::env::var_os("SIGVAULT_TEST_MOTO_SERVER").map_or_else(
            || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/moto/bin/moto_server")),
            PathBuf::from,
        );
        assert!(
            path.exists(),
            "{} is missing: run scripts/test.sh (it installs moto)",
            path.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(&path)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new symmetric KMS key, with `alias` pointing at it; its ARN.
    pub async fn create_key_with_alias(&self, alias: &str) -> String {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(MOTO_REGION))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .build();
        let client = aws_sdk_kms::Client::from_conf(config);
        let key = client.create_key().send().await.expect("CreateKey");
        let arn = key.key_metadata().and_then(|m| m.arn()).expect("ARN").to_owned();
        client
            .create_alias()
            .alias_name(alias)
            .target_key_id(&arn)
            .send()
            .await
            .expect("CreateAlias");
        arn
    }

    /// KMS stops answering: connections are accepted by the kernel, nothing replies.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child by pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
