//! `[ratelimit]`: where the API-key and failed-authentication limits count
//! ([`crate::ratelimit`]).
//!
//! - `backend`: `local` (the default; each node counts on its own) or `redis`.
//! - `redis_url`: required with `redis`; `redis://` or `rediss://` (TLS). It may hold a
//!   password, so no message quotes it (nor a part of it).
//! - `namespace`: the keys' prefix after `sigvault:` (default `default`), so two vaults
//!   sharing one Redis do not share counts; 1 to 64 of `A-Z a-z 0-9 . _ -`.
//! - `on_redis_error`: `deny` (the default: refuse, as rate limited) or `local` (this node
//!   decides alone) while Redis fails or is slower than `redis_timeout`.
//! - `redis_timeout`: 10ms to 10s, default 1s; `<n>ms` or a duration (`2s`), as the other
//!   sub-second settings (`audit.sync_interval`) are written.
//!
//! Without the `ratelimit-redis` feature `backend = "redis"` is refused here, with a line
//! saying so.

use std::time::Duration;

use super::raw::RawRateLimit;
use super::sections::millis;
use super::{ConfigError, invalid};
use crate::ratelimit::{Backend, DEFAULT_NAMESPACE, DEFAULT_REDIS_TIMEOUT, OnRedisError, RateLimitSettings, RedisUrl};

pub(super) fn ratelimit_settings(raw: RawRateLimit) -> Result<RateLimitSettings, ConfigError> {
    let on_redis_error = match raw.on_redis_error.as_deref() {
        None => OnRedisError::Deny,
        Some(text) => {
            OnRedisError::parse(text).ok_or_else(|| invalid("ratelimit.on_redis_error", "must be deny or local"))?
        }
    };
    let redis_timeout = millis(
        "ratelimit.redis_timeout",
        raw.redis_timeout.as_deref(),
        DEFAULT_REDIS_TIMEOUT,
    )?;
    if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&redis_timeout) {
        return Err(invalid("ratelimit.redis_timeout", "must be between 10ms and 10s"));
    }
    let namespace = raw.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let namespace_ok = !namespace.is_empty()
        && namespace.len() <= 64
        && namespace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !namespace_ok {
        return Err(invalid(
            "ratelimit.namespace",
            "must be 1 to 64 characters of A-Z a-z 0-9 . _ -",
        ));
    }
    if let Some(url) = &raw.redis_url {
        check_url(url)?;
    }
    let backend = match raw.backend.as_deref() {
        None | Some("local") => Backend::Local,
        Some("redis") if cfg!(not(feature = "ratelimit-redis")) => {
            return Err(invalid(
                "ratelimit.backend",
                "`redis` is not supported by this build (built without the `ratelimit-redis` feature)",
            ));
        }
        Some("redis") => {
            let url = raw.redis_url.ok_or_else(|| {
                invalid(
                    "ratelimit.redis_url",
                    "required with backend = \"redis\" (redis://HOST:PORT or rediss://HOST:PORT)",
                )
            })?;
            Backend::Redis {
                url: RedisUrl::new(url),
                namespace,
            }
        }
        Some(other) => {
            return Err(invalid(
                "ratelimit.backend",
                format!(
                    "`{}` is not one of local, redis",
                    other.chars().take(32).collect::<String>()
                ),
            ));
        }
    };
    Ok(RateLimitSettings {
        backend,
        on_redis_error,
        redis_timeout,
    })
}

/// A `redis://` or `rediss://` URL with a host, that the Redis client accepts (with the
/// feature). Errors never quote it.
fn check_url(url: &str) -> Result<(), ConfigError> {
    const KEY: &str = "ratelimit.redis_url";
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| {
            invalid(
                KEY,
                "must be a redis:// or rediss:// URL (the value is not shown: it may hold a password)",
            )
        })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid(KEY, "names no host (expected redis://HOST:PORT)"));
    }
    #[cfg(feature = "ratelimit-redis")]
    {
        use redis::IntoConnectionInfo as _;
        // The client's own error may quote the URL: only that it failed is said.
        url.into_connection_info().map_err(|_| {
            invalid(
                KEY,
                "is not a valid Redis URL (the value is not shown: it may hold a password)",
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Mode, Overrides, Settings, merge};
    use crate::ratelimit::{Backend, OnRedisError};
    use std::time::Duration;

    const PASSWORD: &str = "hunter2-s3cret";

    fn load(vars: &[(&str, &str)]) -> Result<Settings, super::ConfigError> {
        // A directory per call: tests run in parallel, and a PIN file being rewritten reads
        // empty.
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sv-config-ratelimit-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hsm-pin"), "1234\n").unwrap();
        let mut e: Vec<(String, String)> = vec![("SIGVAULT_KEK__PKCS11__MODULE".into(), "/m.so".into())];
        e.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let overrides = Overrides {
            listen: None,
            data_dir: Some(dir.clone()),
        };
        let settings = merge(None, &e, &overrides).and_then(|raw| Settings::from_raw(Mode::Dev, raw, &e));
        let _ = std::fs::remove_dir_all(&dir);
        settings
    }

    fn error(vars: &[(&str, &str)]) -> String {
        match load(vars) {
            Ok(_) => panic!("accepted: {vars:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_default_is_local_deny_and_one_second() {
        let s = load(&[]).unwrap().ratelimit;
        assert!(matches!(s.backend, Backend::Local));
        assert_eq!(s.on_redis_error, OnRedisError::Deny);
        assert_eq!(s.redis_timeout, Duration::from_secs(1));
    }

    #[cfg(feature = "ratelimit-redis")]
    #[test]
    fn redis_comes_from_the_environment_and_its_password_is_never_shown() {
        let url = format!("redis://app:{PASSWORD}@127.0.0.1:6379/2");
        let s = load(&[
            ("SIGVAULT_RATELIMIT__BACKEND", "redis"),
            ("SIGVAULT_RATELIMIT__REDIS_URL", &url),
            ("SIGVAULT_RATELIMIT__NAMESPACE", "vault-a"),
            ("SIGVAULT_RATELIMIT__ON_REDIS_ERROR", "local"),
            ("SIGVAULT_RATELIMIT__REDIS_TIMEOUT", "250ms"),
        ])
        .unwrap()
        .ratelimit;
        assert_eq!(s.on_redis_error, OnRedisError::Local);
        assert_eq!(s.redis_timeout, Duration::from_millis(250));
        let Backend::Redis { url: got, namespace } = &s.backend else {
            panic!("{s:?}")
        };
        assert_eq!(got.expose(), url);
        assert_eq!(namespace, "vault-a");
        let shown = format!("{s:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("127.0.0.1:6379"), "{shown}");
        let s = load(&[
            ("SIGVAULT_RATELIMIT__BACKEND", "redis"),
            ("SIGVAULT_RATELIMIT__REDIS_URL", "rediss://cache.internal:6380"),
            ("SIGVAULT_RATELIMIT__REDIS_TIMEOUT", "2s"),
        ])
        .unwrap()
        .ratelimit;
        assert_eq!(s.redis_timeout, Duration::from_secs(2));
        assert!(matches!(&s.backend, Backend::Redis { namespace, .. } if namespace == "default"));
    }

    #[cfg(not(feature = "ratelimit-redis"))]
    #[test]
    fn redis_is_refused_without_the_feature() {
        let text = error(&[
            ("SIGVAULT_RATELIMIT__BACKEND", "redis"),
            ("SIGVAULT_RATELIMIT__REDIS_URL", "redis://127.0.0.1:6379"),
        ]);
        assert!(
            text.starts_with("ratelimit.backend: ") && text.contains("ratelimit-redis"),
            "{text}"
        );
    }

    #[test]
    fn every_bad_value_is_named_and_no_password_shown() {
        let with_password = format!("redis://:{PASSWORD}@");
        let http = format!("http://u:{PASSWORD}@127.0.0.1:6379");
        let bad_port = format!("redis://:{PASSWORD}@127.0.0.1:notaport");
        let redis = ("SIGVAULT_RATELIMIT__BACKEND", "redis");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![("SIGVAULT_RATELIMIT__BACKEND", "memcached")],
                "ratelimit.backend: ",
            ),
            (vec![("SIGVAULT_RATELIMIT__BACKEND", "")], "ratelimit.backend: "),
            // Without the feature, `redis` itself is refused first.
            (
                vec![redis],
                if cfg!(feature = "ratelimit-redis") {
                    "ratelimit.redis_url: "
                } else {
                    "ratelimit.backend: "
                },
            ),
            (
                vec![redis, ("SIGVAULT_RATELIMIT__REDIS_URL", &http)],
                "ratelimit.redis_url: ",
            ),
            (
                vec![redis, ("SIGVAULT_RATELIMIT__REDIS_URL", &with_password)],
                "ratelimit.redis_url: ",
            ),
            (
                vec![redis, ("SIGVAULT_RATELIMIT__REDIS_URL", "127.0.0.1:6379")],
                "ratelimit.redis_url: ",
            ),
            (
                vec![("SIGVAULT_RATELIMIT__ON_REDIS_ERROR", "allow")],
                "ratelimit.on_redis_error: ",
            ),
            (
                vec![("SIGVAULT_RATELIMIT__REDIS_TIMEOUT", "5ms")],
                "ratelimit.redis_timeout: ",
            ),
            (
                vec![("SIGVAULT_RATELIMIT__REDIS_TIMEOUT", "11s")],
                "ratelimit.redis_timeout: ",
            ),
            (
                vec![("SIGVAULT_RATELIMIT__REDIS_TIMEOUT", "soon")],
                "ratelimit.redis_timeout: ",
            ),
            (vec![("SIGVAULT_RATELIMIT__NAMESPACE", "a:b")], "ratelimit.namespace: "),
            (vec![("SIGVAULT_RATELIMIT__NAMESPACE", "")], "ratelimit.namespace: "),
            (
                vec![("SIGVAULT_RATELIMIT__PASSWORD", PASSWORD)],
                "environment variable SIGVAULT_RATELIMIT__PASSWORD",
            ),
        ];
        #[cfg(feature = "ratelimit-redis")]
        let cases = {
            let mut cases = cases;
            cases.push((
                vec![redis, ("SIGVAULT_RATELIMIT__REDIS_URL", &bad_port)],
                "ratelimit.redis_url: ",
            ));
            cases
        };
        #[cfg(not(feature = "ratelimit-redis"))]
        let _ = &bad_port;
        for (vars, prefix) in cases {
            let text = error(&vars);
            assert!(text.starts_with(prefix), "{vars:?}: `{text}`");
            assert!(!text.contains(PASSWORD), "{vars:?}: `{text}`");
        }
    }

    #[test]
    fn a_file_line_quoting_the_url_does_not_show_its_password() {
        let text = format!("[ratelimit]\nbackend = \"redis\"\nredis_url = redis://:{PASSWORD}@127.0.0.1:6379\n");
        let err = super::super::layers::parse_file(&text, "sigvault.toml").err().unwrap();
        let shown = err.to_string();
        assert!(shown.starts_with("config file sigvault.toml: "), "{shown}");
        assert!(!shown.contains(PASSWORD), "{shown}");
        let text = format!("[ratelimit]\nredis_url = \"redis://:{PASSWORD}@127.0.0.1:6379\"\nbogus = 1\n");
        let shown = super::super::layers::parse_file(&text, "f").err().unwrap().to_string();
        assert!(shown.contains("bogus") && !shown.contains(PASSWORD), "{shown}");
        let raw: super::RawRateLimit = toml::from_str(&format!("redis_url = \"redis://:{PASSWORD}@h\"")).unwrap();
        let shown = format!("{raw:?}");
        assert!(!shown.contains(PASSWORD) && shown.contains("redis://***@h"), "{shown}");
    }

    #[cfg(feature = "ratelimit-redis")]
    #[test]
    fn the_example_file_s_commented_section_is_valid_once_uncommented() {
        let example = include_str!("../../config/sigvault.example.toml");
        let section: String = example
            .lines()
            .skip_while(|line| *line != "# [ratelimit]")
            .take_while(|line| !line.is_empty())
            .filter(|line| !line.starts_with("#  "))
            .map(|line| format!("{}\n", line.trim_start_matches("# ")))
            .collect();
        assert!(section.starts_with("[ratelimit]\nbackend = \"redis\""), "{section}");
        let table = super::super::layers::parse_file(&section, "example").unwrap();
        let raw = super::super::layers::merge_layers(table, &[], &Overrides::default()).unwrap();
        let s = super::ratelimit_settings(raw.ratelimit.unwrap()).unwrap();
        assert!(matches!(&s.backend, Backend::Redis { namespace, .. } if namespace == "payments-vault"));
        assert_eq!(s.redis_timeout, Duration::from_millis(250));
    }
}
