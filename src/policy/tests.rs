//! Decisions of the shipped policies, compile errors, reloads and the decision memory.

use std::path::Path;

use super::compile::line_col;
use super::*;
use crate::auth::Via;

fn principal(name: &str, groups: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        via: Via::Token,
    }
}

fn engine() -> PolicyEngine {
    PolicyEngine::new(load(None).unwrap(), None).unwrap()
}

fn facts(ip: &str, tls: bool) -> RequestFacts {
    RequestFacts {
        source_ip: Some(ip.parse().unwrap()),
        tls,
        mtls: false,
        now_unix_s: 1_800_000_000,
    }
}

fn key<'a>(name: &'a str, owner: &'a str, tags: &'a BTreeMap<String, String>) -> Resource<'a> {
    Resource::Key { name, owner, tags }
}

#[test]
fn the_shipped_policies_compile_with_their_ids() {
    let policies = load(None).unwrap();
    for id in [
        "admin-all",
        "service-sign-verify-own-keys",
        "custodian-manage-keys",
        "auditor-read-audit-and-reports",
        "plaintext-import-needs-tls",
    ] {
        assert!(policies.ids().iter().any(|i| i == id), "{id} in {:?}", policies.ids());
    }
    let from_dir = load(Some(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")))).unwrap();
    assert_eq!(from_dir.ids(), policies.ids(), "the binary ships exactly policies/");
}

#[test]
fn a_service_uses_only_keys_it_owns_or_of_its_namespace() {
    let e = engine();
    let tags = BTreeMap::new();
    let svc = principal("payments", &["service"]);
    let lo = facts("127.0.0.1", false);
    let allowed = e.decide(&svc, Action::Sign, &key("other-key", "payments", &tags), lo);
    assert_eq!(
        allowed,
        Decision {
            allowed: true,
            policy: Some("service-sign-verify-own-keys".into())
        }
    );
    assert!(
        e.decide(&svc, Action::Verify, &key("payments.webhook", "root", &tags), lo)
            .allowed
    );
    let denied = e.decide(&svc, Action::Sign, &key("billing.webhook", "billing", &tags), lo);
    assert_eq!(
        denied,
        Decision {
            allowed: false,
            policy: None
        }
    );
    assert!(
        !e.decide(&svc, Action::RotateKey, &key("payments.webhook", "payments", &tags), lo)
            .allowed
    );
    assert!(
        !e.decide(&svc, Action::ReadAudit, &Resource::Collection("audit"), lo)
            .allowed
    );
    assert!(
        e.decide(&svc, Action::WhoAmI, &Resource::Collection("self"), lo)
            .allowed
    );
}

#[test]
fn forbid_wins_over_the_admins_permit() {
    let e = engine();
    let tags = BTreeMap::new();
    let admin = principal("root", &["admin"]);
    let import = key("k", "root", &tags);
    assert!(
        e.decide(&admin, Action::ImportKeyPlaintext, &import, facts("127.0.0.1", false))
            .allowed
    );
    assert!(
        e.decide(&admin, Action::ImportKeyPlaintext, &import, facts("10.1.2.3", true))
            .allowed
    );
    let denied = e.decide(&admin, Action::ImportKeyPlaintext, &import, facts("10.1.2.3", false));
    assert_eq!(
        denied,
        Decision {
            allowed: false,
            policy: Some("plaintext-import-needs-tls".into())
        }
    );
}

#[test]
fn tags_are_visible_to_policies() {
    let dir = temp_dir("tags");
    std::fs::write(
        dir.join("tags.cedar"),
        "@id(\"team-a\")\npermit (principal, action == Sigvault::Action::\"Sign\", resource is Sigvault::Key)\n\
         when { resource.hasTag(\"team\") && resource.getTag(\"team\") == \"a\" };\n",
    )
    .unwrap();
    let e = PolicyEngine::new(load(Some(&dir)).unwrap(), Some(dir)).unwrap();
    let who = principal("x", &[]);
    let team_a: BTreeMap<String, String> = [("team".to_owned(), "a".to_owned())].into();
    let team_b: BTreeMap<String, String> = [("team".to_owned(), "b".to_owned())].into();
    let lo = facts("127.0.0.1", false);
    assert!(e.decide(&who, Action::Sign, &key("k", "o", &team_a), lo).allowed);
    assert!(!e.decide(&who, Action::Sign, &key("k", "o", &team_b), lo).allowed);
    assert!(
        !e.decide(&who, Action::Sign, &key("k", "o", &BTreeMap::new()), lo)
            .allowed
    );
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sv-policy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn syntax_and_schema_errors_name_file_and_line() {
    let dir = temp_dir("errors");
    std::fs::write(
        dir.join("a.cedar"),
        "// ok\n@id(\"fine\")\npermit (principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(dir.join("b.cedar"), "\n\npermit (principal, action, resource)\n").unwrap();
    std::fs::write(
        dir.join("c.cedar"),
        "\n@id(\"typo\")\npermit (principal, action == Sigvault::Action::\"Sing\", resource);\n",
    )
    .unwrap();
    let errors = load(Some(&dir)).err().unwrap().0;
    let b = errors
        .iter()
        .find(|p| p.file.ends_with("b.cedar"))
        .expect("syntax error reported");
    assert_eq!(b.line, 3, "{b}");
    let c = errors
        .iter()
        .find(|p| p.file.ends_with("c.cedar"))
        .expect("schema error reported");
    assert_eq!(c.line, 3, "{c}");
    assert!(c.message.contains("Sing"), "{c}");
    assert!(!errors.iter().any(|p| p.file.ends_with("a.cedar")));
}

#[test]
fn a_failed_reload_keeps_the_old_set_and_a_good_one_replaces_it() {
    let dir = temp_dir("reload");
    std::fs::write(dir.join("all.cedar"), "permit (principal, action, resource);\n").unwrap();
    let e = PolicyEngine::new(load(Some(&dir)).unwrap(), Some(dir.clone())).unwrap();
    let who = principal("x", &[]);
    let lo = facts("127.0.0.1", false);
    let sign = |e: &PolicyEngine| e.decide(&who, Action::Sign, &key("k", "o", &BTreeMap::new()), lo);
    assert_eq!(sign(&e).policy.as_deref(), Some("all.cedar#1"));
    std::fs::write(dir.join("all.cedar"), "permit (principal, action, resource").unwrap();
    assert!(e.reload().is_err());
    assert!(sign(&e).allowed, "the old set stays in force");
    std::fs::write(dir.join("all.cedar"), "forbid (principal, action, resource);\n").unwrap();
    assert_eq!(e.reload().unwrap(), 1);
    assert_eq!(
        sign(&e),
        Decision {
            allowed: false,
            policy: Some("all.cedar#1".into())
        }
    );
}

#[test]
fn remembered_decisions_follow_every_input() {
    let e = engine();
    let tags = BTreeMap::new();
    let svc = principal("payments", &["service"]);
    let lo = facts("127.0.0.1", false);
    for _ in 0..3 {
        assert!(e.decide(&svc, Action::Sign, &key("payments.a", "x", &tags), lo).allowed);
        assert!(!e.decide(&svc, Action::Sign, &key("billing.a", "x", &tags), lo).allowed);
        assert!(
            e.decide(&svc, Action::Sign, &key("billing.a", "payments", &tags), lo)
                .allowed
        );
        assert!(
            !e.decide(
                &principal("payments", &[]),
                Action::Sign,
                &key("payments.a", "x", &tags),
                lo
            )
            .allowed
        );
        assert!(
            !e.decide(&svc, Action::RotateKey, &key("payments.a", "x", &tags), lo)
                .allowed
        );
    }
    let admin = principal("root", &["admin"]);
    let import = key("k", "root", &tags);
    for _ in 0..2 {
        assert!(e.decide(&admin, Action::ImportKeyPlaintext, &import, lo).allowed);
        assert!(
            !e.decide(&admin, Action::ImportKeyPlaintext, &import, facts("10.0.0.1", false))
                .allowed
        );
        assert!(
            e.decide(&admin, Action::ImportKeyPlaintext, &import, facts("10.0.0.1", true))
                .allowed
        );
    }
    assert_ne!(
        decision_key(&svc, Action::Sign, &key("ab", "c", &tags), lo),
        decision_key(&svc, Action::Sign, &key("a", "bc", &tags), lo),
        "fields are delimited"
    );
}

#[test]
fn line_col_counts_from_one() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab", 99), (1, 3));
}

#[test]
fn a_caller_on_a_dual_stack_listener_is_decided_by_its_ipv4_address() {
    // A listener on `[::]` sees IPv4 callers as IPv4-mapped IPv6 addresses, which Cedar's
    // `ip()` refuses to parse: every such request was denied, whatever the policies said.
    let e = engine();
    let tags = BTreeMap::new();
    let admin = principal("root", &["admin"]);
    let import = |ip: &str| {
        e.decide(
            &admin,
            Action::ImportKeyPlaintext,
            &key("k", "root", &tags),
            facts(ip, false),
        )
    };
    assert_eq!(
        import("::ffff:127.0.0.1"),
        Decision {
            allowed: true,
            policy: Some("admin-all".into())
        },
        "the IPv4 loopback, reached through a dual-stack socket"
    );
    assert_eq!(
        import("::ffff:10.0.0.1"),
        Decision {
            allowed: false,
            policy: Some("plaintext-import-needs-tls".into())
        },
        "not loopback: plaintext needs TLS"
    );
    let sign = e.decide(
        &admin,
        Action::Sign,
        &key("k", "root", &tags),
        facts("::ffff:10.0.0.1", false),
    );
    assert!(sign.allowed, "{sign:?}");
}
