//! `docker-compose.yml`: the file validates (the `docker-compose` tool, or `docker compose`),
//! and its cluster topology — two nodes on PostgreSQL, the KEK in a KMS (moto), rate limits in
//! Redis, haproxy in front — runs here as processes from the same config files the compose
//! file mounts (`deploy/compose/node-a.toml`, `node-b.toml`, `haproxy.cfg`), with only the
//! addresses and data dirs overridden through the environment, as a container would differ.
//! No Docker engine runs on the test machines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    MOTO_CREDENTIALS, MotoServer, ROOT_TOKEN, b64, fresh_postgres_database, run_binary, spawn_sigvault, temp_dir,
    unique,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_compose_file_validates_and_mounts_files_that_exist() {
    let compose = repo().join("docker-compose.yml");
    // docker-compose (Debian's package, what scripts/test.sh installs) or the compose plugin.
    let output = Command::new("docker-compose")
        .arg("-f")
        .arg(&compose)
        .args(["config", "-q"])
        .output()
        .or_else(|_| {
            Command::new("docker")
                .args(["compose", "-f"])
                .arg(&compose)
                .args(["config", "-q"])
                .output()
        })
        .expect("docker-compose or docker compose (scripts/test.sh installs docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose.yml does not validate: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every file the compose file mounts from the repository exists, and every sigvault config
    // among them is one `sigvault serve` accepts.
    let text = std::fs::read_to_string(&compose).expect("docker-compose.yml");
    let mounted: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- ./"))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(mounted.len() >= 4, "{mounted:?}");
    for file in mounted {
        assert!(
            repo().join(file).is_file(),
            "docker-compose.yml mounts {file}, which is missing"
        );
    }
    assert!(repo().join("Dockerfile").is_file());
    assert!(repo().join("deploy/compose/entrypoint.sh").is_file());
}

/// haproxy (Debian's package) on `haproxy.cfg`, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy(bind: &str, node_a: &str, node_b: &str, log: &Path) -> Haproxy {
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(repo().join("deploy/compose/haproxy.cfg"))
        .env("LB_BIND", bind)
        .env("NODE_A", node_a)
        .env("NODE_B", node_b)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(log).expect("haproxy log")))
        .spawn()
        .expect("haproxy (scripts/test.sh installs it)");
    Haproxy(child)
}

#[tokio::test]
async fn the_compose_topology_as_processes_signs_and_verifies_through_the_load_balancer() {
    let root = temp_dir("compose");
    let kms = MotoServer::start();
    kms.create_key_with_alias("alias/sigvault").await;
    let database = fresh_postgres_database();
    let namespace = unique("compose");
    let kms_url = kms.url();
    let env_for = |node: &str| -> Vec<(String, String)> {
        let data = root.join(node);
        std::fs::create_dir_all(&data).expect("data dir");
        let mut env: Vec<(String, String)> = MOTO_CREDENTIALS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.extend(
            [
                ("SIGVAULT_LISTEN", "127.0.0.1:0".to_owned()),
                ("SIGVAULT_DATA_DIR", data.display().to_string()),
                ("SIGVAULT_STORE__URL", database.clone()),
                ("SIGVAULT_KEK__AWS_KMS__ENDPOINT_URL", kms_url.clone()),
                ("SIGVAULT_RATELIMIT__REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
                ("SIGVAULT_RATELIMIT__NAMESPACE", namespace.clone()),
                ("SIGVAULT_ROOT_TOKEN", ROOT_TOKEN.to_owned()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    };
    let config = |name: &str| repo().join("deploy/compose").join(name).display().to_string();

    // The compose file's `init` service: `sigvault init` with node A's config.
    let mut init_env = env_for("init");
    init_env.push(("SIGVAULT_AUDIT__NODE".into(), "init".into()));
    let pairs: Vec<(&str, &str)> = init_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let init = run_binary(&["init", "--config", &config("node-a.toml")], &pairs);
    assert_eq!(init.code, Some(0), "init: {}", init.stderr);

    let a_env = env_for("node-a");
    let a_pairs: Vec<(&str, &str)> = a_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let a = spawn_sigvault(
        &["serve", "--config", &config("node-a.toml")],
        &a_pairs,
        &root.join("a.log"),
    );
    let b_env = env_for("node-b");
    let b_pairs: Vec<(&str, &str)> = b_env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let b = spawn_sigvault(
        &["serve", "--config", &config("node-b.toml")],
        &b_pairs,
        &root.join("b.log"),
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let bind = format!("127.0.0.1:{port}");
    let _lb = haproxy(&bind, &a.addr, &b.addr, &root.join("haproxy.log"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let lb = |path: &str| format!("http://{bind}{path}");

    // haproxy puts a node in rotation once its health check passes.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = client.get(lb("/v1/sys/health")).send().await.ok();
        if up.is_some_and(|r| r.status() == StatusCode::OK) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load balancer did not answer within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let r = client
        .post(lb("/v1/keys"))
        .bearer_auth(ROOT_TOKEN)
        .json(&json!({"name": "through-the-lb", "algorithm": "hmac-sha256"}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
    // Round robin: consecutive requests land on both nodes; each signs and verifies what the
    // other signed.
    for i in 0..6 {
        let message = b64(format!("message {i}").as_bytes());
        let r = client
            .post(lb("/v1/keys/through-the-lb/sign"))
            .bearer_auth(ROOT_TOKEN)
            .json(&json!({"message": message}))
            .send()
            .await
            .expect("sign");
        assert_eq!(r.status(), StatusCode::OK);
        let signed: serde_json::Value = r.json().await.expect("json");
        let r = client
            .post(lb("/v1/keys/through-the-lb/verify"))
            .bearer_auth(ROOT_TOKEN)
            .json(&json!({"message": message, "signature": signed["signature"]}))
            .send()
            .await
            .expect("verify");
        assert_eq!(r.status(), StatusCode::OK);
        let verified: serde_json::Value = r.json().await.expect("json");
        assert_eq!(verified["valid"], true, "{verified}");
    }
    // Round robin alternates the nodes, so one signs and the other verifies: each node's
    // access log shows requests on the key.
    for (node, log) in [("node-a", "a.log"), ("node-b", "b.log")] {
        let text = std::fs::read_to_string(root.join(log)).unwrap_or_default();
        assert!(
            text.contains("path=/v1/keys/through-the-lb/"),
            "{node} served no request on the key: the balancer did not spread them"
        );
    }
    drop((a, b, kms));
}
