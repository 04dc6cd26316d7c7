//! Config merging and validation, from files and environments written here.

use super::*;
use secrecy::ExposeSecret;
use std::time::Duration as StdDuration;
use time::Duration;

use crate::kek::pkcs11::Pkcs11Settings;
use crate::tls::{ClientAuth, TlsFiles};

fn temp(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sv-config-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn dev_dir_with_pin() -> PathBuf {
    let dir = temp("dev");
    std::fs::write(dir.join("hsm-pin"), "1234\n").unwrap();
    dir
}

fn load_dev(dir: &Path, vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.to_path_buf()),
    };
    let e = env(vars);
    Settings::from_raw(Mode::Dev, merge(None, &e, &overrides)?, &e)
}

#[test]
fn dev_mode_fills_every_default_from_the_data_dir() {
    let dir = dev_dir_with_pin();
    let s = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/x/libsofthsm2.so")]).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8200");
    assert_eq!(
        s.store,
        StoreSettings::Sqlite {
            path: dir.join("sigvault.db")
        }
    );
    let Pkcs11Settings {
        module,
        token_label,
        pin,
        sessions,
        call_timeout,
    } = s.kek.pkcs11().unwrap();
    assert_eq!(module, &PathBuf::from("/x/libsofthsm2.so"));
    assert_eq!(token_label, "sigvault-dev");
    assert_eq!(
        pin.expose_secret(),
        "1234",
        "the trailing newline is not part of the PIN"
    );
    assert_eq!(*sessions, 4);
    assert_eq!(*call_timeout, std::time::Duration::from_secs(5));
    assert_eq!(s.cache.ttl, Duration::hours(1));
    assert_eq!(s.cache.max_staleness, Duration::seconds(5));
    assert_eq!(s.limits, Limits::default());
    assert_eq!(s.audit.hsm_anchor_interval, std::time::Duration::from_secs(10));
    assert!(s.root_token.is_none());
}

#[test]
fn the_hsm_anchor_interval_is_a_duration_string_of_at_most_an_hour() {
    let dir = dev_dir_with_pin();
    let module = ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so");
    let s = load_dev(&dir, &[module, ("SIGVAULT_AUDIT__HSM_ANCHOR_INTERVAL", "1h")]).unwrap();
    assert_eq!(s.audit.hsm_anchor_interval, std::time::Duration::from_secs(3600));
    let s = load_dev(&dir, &[module, ("SIGVAULT_AUDIT__HSM_ANCHOR_INTERVAL", "1s")]).unwrap();
    assert_eq!(s.audit.hsm_anchor_interval, std::time::Duration::from_secs(1));
    for bad in ["61m", "0s", "10", "ten seconds"] {
        let err = load_dev(&dir, &[module, ("SIGVAULT_AUDIT__HSM_ANCHOR_INTERVAL", bad)]).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("audit.hsm_anchor_interval: "), "{bad}: `{text}`");
    }
}

#[test]
fn the_hsm_call_timeout_is_a_duration_from_100ms_to_10m() {
    let dir = dev_dir_with_pin();
    let module = ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so");
    for (text, expected) in [("100ms", 100), ("1500ms", 1500), ("2s", 2000), ("10m", 600_000)] {
        let s = load_dev(&dir, &[module, ("SIGVAULT_KEK__PKCS11__CALL_TIMEOUT", text)]).unwrap();
        let timeout = s.kek.pkcs11().unwrap().call_timeout;
        assert_eq!(timeout, std::time::Duration::from_millis(expected), "{text}");
    }
    for bad in ["99ms", "0s", "11m", "5", "soon"] {
        let err = load_dev(&dir, &[module, ("SIGVAULT_KEK__PKCS11__CALL_TIMEOUT", bad)]).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("kek.pkcs11.call_timeout: "), "{bad}: `{text}`");
    }
}

#[test]
fn environment_overrides_the_file_and_keeps_types() {
    let dir = dev_dir_with_pin();
    let file = dir.join("sigvault.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:9000\"\n[kek.pkcs11]\nsessions = 2\nmodule = \"/m.so\"\n",
    )
    .unwrap();
    let e = env(&[
        ("SIGVAULT_LISTEN", "0.0.0.0:8300"),
        ("SIGVAULT_INSECURE_HTTP", "true"),
        ("SIGVAULT_KEK__PKCS11__SESSIONS", "8"),
        ("SIGVAULT_KEK__PKCS11__TOKEN_LABEL", "123"),
        ("SIGVAULT_CACHE__TTL", "5m"),
        ("SIGVAULT_ROOT_TOKEN", "a-root-token-of-some-length"),
        ("SIGVAULT_KEK__PKCS11__PIN", "from-env"),
        // What the export line of `sigvault dev` sets for clients: not settings.
        ("SIGVAULT_ADDR", "http://127.0.0.1:8200"),
        ("SIGVAULT_TOKEN", "svt_client-side"),
        ("SIGVAULT_TOKEN_FILE", "/home/ops/.sigvault-token"),
        ("SIGVAULT_CACERT", "/etc/sigvault/ca.pem"),
        ("UNRELATED", "x"),
    ]);
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.clone()),
    };
    let s = Settings::from_raw(Mode::Dev, merge(Some(&file), &e, &overrides).unwrap(), &e).unwrap();
    assert_eq!(s.listen.to_string(), "0.0.0.0:8300");
    assert!(s.insecure_http, "a boolean from the environment");
    let Pkcs11Settings {
        token_label,
        pin,
        sessions,
        module,
        call_timeout: _,
    } = s.kek.pkcs11().unwrap();
    assert_eq!(*sessions, 8);
    assert_eq!(token_label, "123", "a numeric-looking value still fills a string key");
    assert_eq!(
        module,
        &PathBuf::from("/m.so"),
        "file values survive where env is silent"
    );
    assert_eq!(pin.expose_secret(), "from-env");
    assert_eq!(s.cache.ttl, Duration::minutes(5));
    assert_eq!(
        s.root_token.as_ref().map(|t| t.expose_secret().to_owned()),
        Some("a-root-token-of-some-length".into())
    );
}

#[test]
fn connection_limits_come_from_the_environment_and_default_when_unset() {
    let dir = dev_dir_with_pin();
    let defaults = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")])
        .unwrap()
        .limits;
    assert_eq!(
        (
            defaults.idle_timeout,
            defaults.max_pipelined_bytes,
            defaults.write_timeout
        ),
        (StdDuration::from_secs(30), 65_536, StdDuration::from_secs(30))
    );
    let set = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_LIMITS__IDLE_TIMEOUT", "5s"),
            ("SIGVAULT_LIMITS__MAX_PIPELINED_BYTES", "16384"),
        ],
    )
    .unwrap()
    .limits;
    assert_eq!(
        (set.idle_timeout, set.max_pipelined_bytes),
        (StdDuration::from_secs(5), 16_384)
    );
}

#[test]
fn dual_control_is_off_by_default_and_set_from_its_section() {
    let dir = dev_dir_with_pin();
    let defaults = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]).unwrap();
    assert_eq!(
        (defaults.approvals.quorum, defaults.approvals.ttl),
        (1, time::Duration::hours(1))
    );
    let set = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_CUSTODIAN__QUORUM", "2"),
            ("SIGVAULT_CUSTODIAN__APPROVAL_TTL", "15m"),
        ],
    )
    .unwrap();
    assert_eq!(
        (set.approvals.quorum, set.approvals.ttl),
        (2, time::Duration::minutes(15))
    );
}

#[test]
fn api_key_fingerprint_settings_default_as_sigv4_s_and_come_from_their_own_section() {
    use crate::model::OnNewFingerprint;
    let dir = dev_dir_with_pin();
    let defaults = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]).unwrap();
    assert_eq!(
        (defaults.apikeys.on_new_fingerprint, defaults.apikeys.max_fingerprints),
        (defaults.sigv4.on_new_fingerprint, defaults.sigv4.max_fingerprints),
    );
    assert_eq!(defaults.apikeys.on_new_fingerprint, OnNewFingerprint::Record);
    let set = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_APIKEYS__ON_NEW_FINGERPRINT", "deactivate"),
            ("SIGVAULT_APIKEYS__MAX_FINGERPRINTS", "8"),
        ],
    )
    .unwrap();
    assert_eq!(
        (set.apikeys.on_new_fingerprint, set.apikeys.max_fingerprints),
        (OnNewFingerprint::Deactivate, 8)
    );
    assert_eq!(
        set.sigv4.on_new_fingerprint,
        OnNewFingerprint::Record,
        "the sections are apart"
    );
}

#[test]
fn command_line_overrides_win_over_environment() {
    let dir = dev_dir_with_pin();
    let e = env(&[
        ("SIGVAULT_LISTEN", "0.0.0.0:1"),
        ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
    ]);
    let overrides = Overrides {
        listen: Some("127.0.0.1:2".into()),
        data_dir: Some(dir),
    };
    let s = Settings::from_raw(Mode::Dev, merge(None, &e, &overrides).unwrap(), &e).unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:2");
}

#[test]
fn checking_a_config_reads_no_pin_file_but_catches_bad_values() {
    let dir = temp("check");
    let e = env(&[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]);
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.join("not-yet-created")),
    };
    check(Mode::Dev, &merge(None, &e, &overrides).unwrap(), &e).unwrap();
    let e = env(&[
        ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
        ("SIGVAULT_LOG_LEVEL", "loud"),
    ]);
    let err = check(Mode::Dev, &merge(None, &e, &overrides).unwrap(), &e)
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("log_level:"), "{err}");
}

#[test]
fn plain_http_off_loopback_needs_an_explicit_opt_in() {
    let dir = dev_dir_with_pin();
    let err = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_LISTEN", "0.0.0.0:8200"),
        ],
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .starts_with("listen: 0.0.0.0:8200 is not a loopback address"),
        "{err}"
    );
    for loopback in ["127.0.0.1:8200", "[::1]:8200"] {
        assert!(
            load_dev(
                &dir,
                &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"), ("SIGVAULT_LISTEN", loopback)]
            )
            .is_ok()
        );
    }
    let opted_in = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_LISTEN", "0.0.0.0:8200"),
            ("SIGVAULT_INSECURE_HTTP", "true"),
        ],
    );
    assert!(opted_in.unwrap().insecure_http);
}

fn tls_env(files: &TlsFiles) -> Vec<(&'static str, String)> {
    let path = |p: &Path| p.display().to_string();
    let mut vars = vec![
        ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so".to_owned()),
        ("SIGVAULT_TLS__CERT_FILE", path(&files.cert_file)),
        ("SIGVAULT_TLS__KEY_FILE", path(&files.key_file)),
    ];
    if let Some(ca) = &files.client_ca_file {
        vars.push(("SIGVAULT_TLS__CLIENT_CA_FILE", path(ca)));
    }
    vars
}

fn load_dev_owned(dir: &Path, vars: &[(&str, String)]) -> Result<Settings, ConfigError> {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    load_dev(dir, &pairs)
}

#[test]
fn tls_comes_from_the_environment_like_every_section_and_lifts_the_loopback_rule() {
    let dir = dev_dir_with_pin();
    let files = crate::tls::test_pki::write(&dir);
    let mut vars = tls_env(&files);
    vars.extend([
        ("SIGVAULT_LISTEN", "0.0.0.0:8443".to_owned()),
        ("SIGVAULT_TLS__CLIENT_AUTH", "required".to_owned()),
        (
            "SIGVAULT_TLS__DEFAULT_CLIENT_GROUPS",
            r#"["service", "auditor"]"#.to_owned(),
        ),
        (
            "SIGVAULT_TLS__CLIENT_GROUPS",
            r#"{ "spiffe://example.org/ops" = ["custodian"] }"#.to_owned(),
        ),
    ]);
    let s = load_dev_owned(&dir, &vars).unwrap();
    assert!(!s.insecure_http, "TLS needs no opt-in off loopback");
    let tls = s.tls.expect("[tls] from the environment");
    assert_eq!(tls.client_auth, ClientAuth::Required);
    let groups = |name: &str| tls.client_groups.principal(name).map(|p| p.groups);
    assert_eq!(groups("spiffe://example.org/ops"), Some(vec!["custodian".to_owned()]));
    assert_eq!(
        groups("client.example.org"),
        Some(vec!["service".to_owned(), "auditor".to_owned()])
    );

    let plain = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]).unwrap();
    assert!(plain.tls.is_none(), "no [tls], plain HTTP");
}

#[test]
fn tls_in_a_config_file_defaults_to_no_client_auth_and_the_service_group() {
    let dir = dev_dir_with_pin();
    let files = crate::tls::test_pki::write(&dir);
    let file = dir.join("sigvault.toml");
    std::fs::write(
        &file,
        format!(
            "[kek.pkcs11]\nmodule = \"/m.so\"\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            files.cert_file.display(),
            files.key_file.display()
        ),
    )
    .unwrap();
    let overrides = Overrides {
        listen: None,
        data_dir: Some(dir.clone()),
    };
    let s = Settings::from_raw(Mode::Dev, merge(Some(&file), &[], &overrides).unwrap(), &[]).unwrap();
    let tls = s.tls.expect("[tls] from the file");
    assert_eq!(tls.client_auth, ClientAuth::None);
    assert_eq!(
        tls.client_groups.principal("x").map(|p| p.groups),
        Some(vec!["service".to_owned()])
    );
}

#[test]
fn every_bad_tls_value_is_reported_with_its_key_also_when_only_checking() {
    let dir = dev_dir_with_pin();
    let files = crate::tls::test_pki::write(&dir);
    let good = tls_env(&files);
    let with = |extra: &[(&'static str, &str)]| {
        let mut vars = good.clone();
        for (k, v) in extra {
            vars.retain(|(key, _)| key != k);
            vars.push((k, (*v).to_owned()));
        }
        vars
    };
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            with(&[("SIGVAULT_TLS__CERT_FILE", "/nonexistent/cert.pem")]),
            "tls.cert_file: cannot read",
        ),
        (
            vec![
                ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so".to_owned()),
                ("SIGVAULT_TLS__CLIENT_AUTH", "none".to_owned()),
            ],
            "tls.cert_file: required",
        ),
        (
            good.iter()
                .filter(|(k, _)| *k != "SIGVAULT_TLS__KEY_FILE")
                .cloned()
                .collect(),
            "tls.key_file: required",
        ),
        (with(&[("SIGVAULT_TLS__CLIENT_AUTH", "sometimes")]), "tls.client_auth:"),
        (
            good.iter()
                .filter(|(k, _)| *k != "SIGVAULT_TLS__CLIENT_CA_FILE")
                .cloned()
                .chain([("SIGVAULT_TLS__CLIENT_AUTH", "optional".to_owned())])
                .collect(),
            "tls.client_auth:",
        ),
        (with(&[("SIGVAULT_TLS__CLIENT_AUTH", "none")]), "tls.client_ca_file:"),
        (
            with(&[
                ("SIGVAULT_TLS__CLIENT_AUTH", "required"),
                ("SIGVAULT_TLS__DEFAULT_CLIENT_GROUPS", r#"["a b"]"#),
            ]),
            "tls.default_client_groups:",
        ),
        (
            with(&[
                ("SIGVAULT_TLS__CLIENT_AUTH", "required"),
                ("SIGVAULT_TLS__CLIENT_GROUPS", r#"{ "spiffe://x/y" = [""] }"#),
            ]),
            "tls.client_groups:",
        ),
    ];
    for (vars, expected) in cases {
        let text = load_dev_owned(&dir, &vars)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            text.starts_with(expected),
            "{vars:?}: expected `{expected}…`, got `{text}`"
        );
        assert!(!text.contains('\n'), "{text}");
        let pairs: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let overrides = Overrides {
            listen: None,
            data_dir: Some(dir.join("not-yet-created")),
        };
        let checked = check(Mode::Dev, &merge(None, &pairs, &overrides).unwrap(), &pairs)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            checked.starts_with(expected),
            "check: expected `{expected}…`, got `{checked}`"
        );
    }
}

#[test]
fn an_unknown_environment_key_is_named() {
    let err = merge(None, &env(&[("SIGVAULT_BOGUS", "1")]), &Overrides::default())
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(text.starts_with("environment variable SIGVAULT_BOGUS:"), "{text}");
    assert!(text.contains("bogus"), "{text}");
}

#[test]
fn a_wrongly_typed_environment_value_is_named() {
    let err = merge(
        None,
        &env(&[("SIGVAULT_KEK__PKCS11__SESSIONS", "many")]),
        &Overrides::default(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .starts_with("environment variable SIGVAULT_KEK__PKCS11__SESSIONS:"),
        "{err}"
    );
}

#[test]
fn an_unknown_file_key_is_named_with_its_file() {
    let dir = temp("file");
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:1\"\n[store]\nurl = \"sqlite:///x\"\npasword = \"x\"\n",
    )
    .unwrap();
    let err = merge(Some(&file), &[], &Overrides::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(err.contains("pasword"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
}

#[test]
fn a_missing_file_is_named() {
    let err = merge(
        Some(Path::new("/nonexistent/sigvault.toml")),
        &[],
        &Overrides::default(),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .starts_with("cannot read config file /nonexistent/sigvault.toml"),
        "{err}"
    );
}

#[test]
fn serve_mode_requires_the_hsm_settings() {
    let dir = temp("serve");
    let e = env(&[("SIGVAULT_DATA_DIR", dir.to_str().unwrap())]);
    let err = Settings::from_raw(Mode::Serve, merge(None, &e, &Overrides::default()).unwrap(), &e)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "kek.pkcs11.module: required: the path of the PKCS#11 module"
    );
    let e = env(&[
        ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
        ("SIGVAULT_KEK__PKCS11__TOKEN_LABEL", "t"),
    ]);
    let err = Settings::from_raw(Mode::Serve, merge(None, &e, &Overrides::default()).unwrap(), &e)
        .err()
        .unwrap();
    assert!(err.to_string().starts_with("kek.pkcs11.pin_file: required"), "{err}");
}

#[test]
fn every_bad_value_is_reported_with_its_key() {
    let dir = dev_dir_with_pin();
    let cases: &[(&str, &str, &str)] = &[
        ("SIGVAULT_LISTEN", "nonsense", "listen:"),
        ("SIGVAULT_LOG_LEVEL", "loud", "log_level:"),
        ("SIGVAULT_STORE__URL", "mysql://x", "store.url:"),
        ("SIGVAULT_STORE__URL", "sqlite://", "store.url:"),
        ("SIGVAULT_STORE__URL", "postgres://", "store.url:"),
        ("SIGVAULT_STORE__URL", "postgres://u:p@h/d x", "store.url:"),
        ("SIGVAULT_KEK__PROVIDER", "vault", "kek.provider:"),
        ("SIGVAULT_KEK__PKCS11__SESSIONS", "0", "kek.pkcs11.sessions:"),
        (
            "SIGVAULT_KEK__PKCS11__TOKEN_LABEL",
            "this-label-is-longer-than-thirty-two-bytes",
            "kek.pkcs11.token_label:",
        ),
        (
            "SIGVAULT_KEK__PKCS11__PIN_FILE",
            "/nonexistent/pin",
            "kek.pkcs11.pin_file:",
        ),
        ("SIGVAULT_CACHE__TTL", "forever", "cache.ttl:"),
        ("SIGVAULT_CACHE__MAX_ENTRIES", "0", "cache.max_entries:"),
        ("SIGVAULT_CACHE__MAX_STALENESS", "2h", "cache.max_staleness:"),
        ("SIGVAULT_CACHE__MAX_STALENESS", "0s", "cache.max_staleness:"),
        (
            "SIGVAULT_KEYS__DEFAULT_PENDING_DAYS",
            "40",
            "keys.default_pending_days:",
        ),
        (
            "SIGVAULT_KEYS__USAGE_FLUSH_INTERVAL",
            "1h",
            "keys.usage_flush_interval:",
        ),
        ("SIGVAULT_LIMITS__MAX_BODY_BYTES", "10", "limits.max_body_bytes:"),
        (
            "SIGVAULT_LIMITS__MAX_SIGN_BODY_BYTES",
            "1024",
            "limits.max_sign_body_bytes:",
        ),
        ("SIGVAULT_LIMITS__MAX_BATCH_ITEMS", "0", "limits.max_batch_items:"),
        ("SIGVAULT_LIMITS__MAX_CONNECTIONS", "0", "limits.max_connections:"),
        (
            "SIGVAULT_LIMITS__MAX_CONNECTIONS_PER_ADDRESS",
            "5000",
            "limits.max_connections_per_address:",
        ),
        ("SIGVAULT_LIMITS__WRITE_TIMEOUT", "500ms", "limits.write_timeout:"),
        ("SIGVAULT_LIMITS__WRITE_TIMEOUT", "1h", "limits.write_timeout:"),
        ("SIGVAULT_LIMITS__IDLE_TIMEOUT", "0s", "limits.idle_timeout:"),
        ("SIGVAULT_LIMITS__IDLE_TIMEOUT", "11m", "limits.idle_timeout:"),
        (
            "SIGVAULT_LIMITS__MAX_PIPELINED_BYTES",
            "8192",
            "limits.max_pipelined_bytes:",
        ),
        (
            "SIGVAULT_LIMITS__MAX_PIPELINED_BYTES",
            "2097152",
            "limits.max_pipelined_bytes:",
        ),
        ("SIGVAULT_ROOT_TOKEN", "short", "SIGVAULT_ROOT_TOKEN:"),
        ("SIGVAULT_AUDIT__NODE", "a b", "audit.node:"),
        (
            "SIGVAULT_AUDIT__HSM_ANCHOR_INTERVAL",
            "2h",
            "audit.hsm_anchor_interval:",
        ),
        ("SIGVAULT_REPORT__CRYPTOPERIOD", "12h", "report.cryptoperiod:"),
        (
            "SIGVAULT_SIGV4__ON_NEW_FINGERPRINT",
            "ignore",
            "sigv4.on_new_fingerprint:",
        ),
        ("SIGVAULT_SIGV4__MAX_FINGERPRINTS", "0", "sigv4.max_fingerprints:"),
        (
            "SIGVAULT_APIKEYS__ON_NEW_FINGERPRINT",
            "ignore",
            "apikeys.on_new_fingerprint:",
        ),
        ("SIGVAULT_APIKEYS__MAX_FINGERPRINTS", "0", "apikeys.max_fingerprints:"),
        (
            "SIGVAULT_APIKEYS__MAX_FINGERPRINTS",
            "10001",
            "apikeys.max_fingerprints:",
        ),
        ("SIGVAULT_CUSTODIAN__QUORUM", "0", "custodian.quorum:"),
        ("SIGVAULT_CUSTODIAN__QUORUM", "17", "custodian.quorum:"),
        ("SIGVAULT_CUSTODIAN__APPROVAL_TTL", "30s", "custodian.approval_ttl:"),
        ("SIGVAULT_CUSTODIAN__APPROVAL_TTL", "8d", "custodian.approval_ttl:"),
        ("SIGVAULT_COMPAT__TRANSIT_MOUNT", "keys", "compat.transit_mount:"),
        ("SIGVAULT_COMPAT__TRANSIT_MOUNT", "a/../b", "compat.transit_mount:"),
        ("SIGVAULT_COMPAT__TRANSIT_MOUNT", "a/b/c/d/e", "compat.transit_mount:"),
        ("SIGVAULT_COMPAT__KMS_PATH", "kms", "compat.kms_path:"),
        ("SIGVAULT_COMPAT__KMS_PATH", "/v1/kms", "compat.kms_path:"),
        ("SIGVAULT_COMPAT__KMS_PATH", "/a b", "compat.kms_path:"),
        ("SIGVAULT_LOG__FORMAT", "xml", "log.format:"),
        ("SIGVAULT_METRICS__LISTEN", "nope", "metrics.listen:"),
        ("SIGVAULT_METRICS__LISTEN", "8.8.8.8:9464", "metrics.listen:"),
        ("SIGVAULT_METRICS__LISTEN", "127.0.0.1:8200", "metrics.listen:"),
    ];
    for (var, value, expected) in cases {
        let err = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"), (var, value)]).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains(expected), "{var}={value}: got `{text}`");
    }
}

#[test]
fn a_postgres_url_selects_the_postgres_store_and_its_password_is_never_shown() {
    let dir = dev_dir_with_pin();
    let url = "postgres://vault:s3cret-pw@db.internal:5432/sigvault";
    let s = load_dev(&dir, &[("SIGVAULT_STORE__URL", url)]).unwrap();
    assert_eq!(s.store, StoreSettings::Postgres { url: url.into() });
    assert_eq!(s.store.file(), None, "no file for offline tools to look for");
    let shown = format!("{:?}", s.store);
    assert!(!shown.contains("s3cret-pw"), "{shown}");
    assert!(shown.contains("db.internal"), "{shown}");
    let err = load_dev(&dir, &[("SIGVAULT_STORE__URL", "mongodb://vault:s3cret-pw@h/d")])
        .err()
        .unwrap()
        .to_string();
    assert!(err.starts_with("store.url:") && !err.contains("s3cret-pw"), "{err}");
}

fn load_serve(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let dir = temp("serve-kms");
    let mut all = vec![("SIGVAULT_DATA_DIR", dir.to_str().unwrap())];
    all.extend_from_slice(vars);
    let e = env(&all);
    Settings::from_raw(Mode::Serve, merge(None, &e, &Overrides::default())?, &e)
}

#[test]
fn the_aws_kms_provider_takes_its_key_region_and_endpoint_and_defaults_the_rest() {
    let s = load_serve(&[
        ("SIGVAULT_KEK__PROVIDER", "aws-kms"),
        ("SIGVAULT_KEK__AWS_KMS__KEY_ID", "alias/sigvault"),
        ("SIGVAULT_KEK__AWS_KMS__REGION", "eu-west-1"),
    ])
    .unwrap();
    let KekSettings::AwsKms(kms) = &s.kek else {
        panic!("not the KMS provider")
    };
    assert_eq!(kms.key_id, "alias/sigvault");
    assert_eq!(kms.region, "eu-west-1");
    assert_eq!(kms.endpoint_url, None);
    assert_eq!(kms.call_timeout, crate::kek::aws_kms::DEFAULT_CALL_TIMEOUT);
    assert_eq!(kms.max_concurrency, crate::kek::aws_kms::DEFAULT_MAX_CONCURRENCY);
    assert!(s.kek.pkcs11().is_none());

    let s = load_serve(&[
        ("SIGVAULT_KEK__PROVIDER", "aws-kms"),
        (
            "SIGVAULT_KEK__AWS_KMS__KEY_ID",
            "arn:aws:kms:eu-west-1:111122223333:key/k",
        ),
        ("SIGVAULT_KEK__AWS_KMS__REGION", "eu-west-1"),
        ("SIGVAULT_KEK__AWS_KMS__ENDPOINT_URL", "http://127.0.0.1:4566"),
        ("SIGVAULT_KEK__AWS_KMS__CALL_TIMEOUT", "750ms"),
        ("SIGVAULT_KEK__AWS_KMS__MAX_CONCURRENCY", "4"),
    ])
    .unwrap();
    let KekSettings::AwsKms(kms) = &s.kek else {
        panic!("not the KMS provider")
    };
    assert_eq!(kms.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
    assert_eq!(kms.call_timeout, StdDuration::from_millis(750));
    assert_eq!(kms.max_concurrency, 4);
}

#[test]
fn every_bad_aws_kms_value_is_reported_with_its_key() {
    let base = [
        ("SIGVAULT_KEK__PROVIDER", "aws-kms"),
        ("SIGVAULT_KEK__AWS_KMS__KEY_ID", "alias/sigvault"),
        ("SIGVAULT_KEK__AWS_KMS__REGION", "eu-west-1"),
    ];
    let cases: &[(&str, &str, &str)] = &[
        ("SIGVAULT_KEK__AWS_KMS__KEY_ID", "", "kek.aws_kms.key_id:"),
        (
            "SIGVAULT_KEK__AWS_KMS__KEY_ID",
            "alias/with space",
            "kek.aws_kms.key_id:",
        ),
        ("SIGVAULT_KEK__AWS_KMS__REGION", "eu west", "kek.aws_kms.region:"),
        (
            "SIGVAULT_KEK__AWS_KMS__ENDPOINT_URL",
            "ftp://x",
            "kek.aws_kms.endpoint_url:",
        ),
        (
            "SIGVAULT_KEK__AWS_KMS__CALL_TIMEOUT",
            "10ms",
            "kek.aws_kms.call_timeout:",
        ),
        (
            "SIGVAULT_KEK__AWS_KMS__CALL_TIMEOUT",
            "soon",
            "kek.aws_kms.call_timeout:",
        ),
        (
            "SIGVAULT_KEK__AWS_KMS__MAX_CONCURRENCY",
            "0",
            "kek.aws_kms.max_concurrency:",
        ),
        (
            "SIGVAULT_KEK__AWS_KMS__MAX_CONCURRENCY",
            "5000",
            "kek.aws_kms.max_concurrency:",
        ),
    ];
    for (key, value, expected) in cases {
        let mut vars: Vec<(&str, &str)> = base.iter().filter(|(k, _)| k != key).copied().collect();
        vars.push((key, value));
        let err = load_serve(&vars)
            .err()
            .unwrap_or_else(|| panic!("{key}={value} accepted"));
        assert!(err.to_string().starts_with(expected), "{key}={value}: {err}");
    }
    for missing in ["SIGVAULT_KEK__AWS_KMS__KEY_ID", "SIGVAULT_KEK__AWS_KMS__REGION"] {
        let vars: Vec<(&str, &str)> = base.iter().filter(|(k, _)| *k != missing).copied().collect();
        let err = load_serve(&vars).err().unwrap();
        assert!(err.to_string().contains("required"), "{missing}: {err}");
    }
}

#[test]
fn a_previous_provider_is_read_with_explicit_values_and_its_errors_name_the_section() {
    let dir = temp("previous");
    let pin = dir.join("old-pin");
    std::fs::write(&pin, "4321\n").unwrap();
    let file = dir.join("sigvault.toml");
    let write = |previous: &str| {
        std::fs::write(
            &file,
            format!(
                "data_dir = \"{}\"\n[kek]\nprovider = \"aws-kms\"\n[kek.aws_kms]\nkey_id = \"alias/k\"\nregion = \"eu-west-1\"\n{previous}",
                dir.display()
            ),
        )
        .unwrap();
    };
    let load = || {
        let e = env(&[("SIGVAULT_KEK__PKCS11__PIN", "the-current-providers-pin")]);
        Settings::from_raw(Mode::Serve, merge(Some(&file), &e, &Overrides::default())?, &e)
    };

    write("");
    assert!(load().unwrap().kek_previous.is_none());

    write(&format!(
        "[kek.previous]\nprovider = \"pkcs11\"\n[kek.previous.pkcs11]\nmodule = \"/old.so\"\ntoken_label = \"old\"\npin_file = \"{}\"\n",
        pin.display()
    ));
    let s = load().unwrap();
    let old = s
        .kek_previous
        .as_ref()
        .and_then(KekSettings::pkcs11)
        .expect("a PKCS#11 previous provider");
    assert_eq!(
        (old.module.to_str(), old.token_label.as_str()),
        (Some("/old.so"), "old")
    );
    assert_eq!(
        old.pin.expose_secret(),
        "4321",
        "its own PIN file, never [kek]'s variable"
    );
    assert!(matches!(s.kek, KekSettings::AwsKms(_)));

    // No dev defaults and no PIN from the environment: each missing value is named, in the
    // section.
    write(
        "[kek.previous]\nprovider = \"pkcs11\"\n[kek.previous.pkcs11]\nmodule = \"/old.so\"\ntoken_label = \"old\"\n",
    );
    let err = load().err().expect("refused").to_string();
    assert!(
        err.starts_with("kek.previous: kek.pkcs11.pin_file: required")
            && err.ends_with("(in the [kek.previous] section)"),
        "{err}"
    );
    write("[kek.previous]\nprovider = \"vault\"\n");
    assert!(
        load()
            .err()
            .expect("refused")
            .to_string()
            .starts_with("kek.previous: kek.provider: unknown provider")
    );
    write("[kek.previous]\nrewrap_rate = 5\n");
    let err = load().err().expect("refused").to_string();
    assert!(err.contains("rewrap_rate"), "only [kek] has a rate: {err}");
}

#[test]
fn the_compatible_apis_are_on_by_default_and_each_can_move_or_be_turned_off() {
    let dir = dev_dir_with_pin();
    let s = load_dev(&dir, &[("SIGVAULT_KEK__PKCS11__MODULE", "/m.so")]).unwrap();
    assert_eq!(s.transit_mount.as_deref(), Some("transit"));
    assert_eq!(s.kms_path.as_deref(), Some("/"));
    let s = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_COMPAT__TRANSIT_MOUNT", "/secret/transit/"),
            ("SIGVAULT_COMPAT__KMS_PATH", "/kms"),
        ],
    )
    .unwrap();
    assert_eq!(s.transit_mount.as_deref(), Some("secret/transit"));
    assert_eq!(s.kms_path.as_deref(), Some("/kms"));
    let s = load_dev(
        &dir,
        &[
            ("SIGVAULT_KEK__PKCS11__MODULE", "/m.so"),
            ("SIGVAULT_COMPAT__TRANSIT_MOUNT", ""),
            ("SIGVAULT_COMPAT__KMS_PATH", ""),
        ],
    )
    .unwrap();
    assert_eq!((s.transit_mount, s.kms_path), (None, None));
}
