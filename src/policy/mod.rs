//! Who may do what: Cedar policies over the vocabulary of `policies/schema.cedarschema`.
//!
//! A policy directory holds `schema.cedarschema` (optional: the built-in schema otherwise)
//! and `*.cedar` files. [`compile`] parses each file, validates it against the schema in
//! strict mode, and names every problem by `file:line:column`. Each policy's id is its
//! `@id("…")` annotation, or `<file>#<n>` without one; the deciding policy's id goes into
//! the audit trail.
//!
//! [`PolicyEngine`] holds the compiled set behind a lock as an `Arc` snapshot: a request
//! takes one snapshot and decides with it, so a reload (SIGHUP, `POST
//! /v1/sys/policies/reload`) is seen whole or not at all, and an invalid set never replaces
//! a valid one. Decisions follow Cedar: a matching `forbid` wins, else a matching `permit`
//! allows, else deny.
//!
//! Without a configured directory the server uses the policies shipped in `policies/`,
//! compiled into the binary ([`PolicySource::builtin`]).

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request,
    RestrictedExpression,
};

use crate::audit::action::Action;
use crate::auth::Principal;

mod compile;

pub use compile::{PolicyErrors, PolicySource, Problem, SCHEMA_FILE, compile, load};

/// Most decisions a policy set remembers; the memory is cleared when full.
const MAX_REMEMBERED_DECISIONS: usize = 65_536;

/// A compiled, validated policy set, with the decisions it has made.
///
/// A decision depends only on the set and the request's inputs (principal, groups, via,
/// action, resource with owner and tags, source address, TLS flags, and the time in whole
/// seconds), so the set remembers it under exactly those inputs: a steady stream of
/// identical requests costs one evaluation per second, not one per request. A reload
/// builds a new set with an empty memory.
pub struct Policies {
    set: PolicySet,
    ids: Vec<String>,
    decisions: RwLock<HashMap<Vec<u8>, Decision>>,
}

impl Policies {
    fn new(set: PolicySet, ids: Vec<String>) -> Self {
        Self {
            set,
            ids,
            decisions: RwLock::new(HashMap::new()),
        }
    }

    /// How many policies the set holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The policies' ids, in file order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }
}

/// What a request is about, as policies see it.
#[derive(Debug, Clone)]
pub enum Resource<'a> {
    /// A signing key (for creation and import of a new key: the key as requested).
    Key {
        name: &'a str,
        owner: &'a str,
        tags: &'a BTreeMap<String, String>,
    },
    /// A SigV4 credential (for creation and import: as requested).
    Credential { id: &'a str, principal: &'a str },
    /// A bearer API key (for creation: as requested).
    ApiKey { id: &'a str, principal: &'a str },
    /// "keys", "audit", "reports", "tokens", "policies", "self", "credentials", "sigv4".
    Collection(&'static str),
}

/// The facts of the request besides who, what and on what.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts {
    pub source_ip: Option<IpAddr>,
    pub tls: bool,
    pub mtls: bool,
    pub now_unix_s: i64,
}

/// A decision and the policy that made it (none for a deny no policy matched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub policy: Option<String>,
}

/// Every input of a decision, length-prefixed so no two requests share an encoding.
fn decision_key(principal: &Principal, action: Action, resource: &Resource<'_>, facts: RequestFacts) -> Vec<u8> {
    fn push(out: &mut Vec<u8>, field: &[u8]) {
        out.extend_from_slice(&(field.len() as u64).to_le_bytes());
        out.extend_from_slice(field);
    }
    let mut out = Vec::with_capacity(128);
    push(&mut out, principal.name.as_bytes());
    push(&mut out, &(principal.groups.len() as u64).to_le_bytes());
    for group in &principal.groups {
        push(&mut out, group.as_bytes());
    }
    push(&mut out, principal.via.as_str().as_bytes());
    push(&mut out, action.as_str().as_bytes());
    match resource {
        Resource::Key { name, owner, tags } => {
            push(&mut out, b"key");
            push(&mut out, name.as_bytes());
            push(&mut out, owner.as_bytes());
            push(&mut out, &(tags.len() as u64).to_le_bytes());
            for (k, v) in tags.iter() {
                push(&mut out, k.as_bytes());
                push(&mut out, v.as_bytes());
            }
        }
        Resource::ApiKey { id, principal } => {
            push(&mut out, b"apikey");
            push(&mut out, id.as_bytes());
            push(&mut out, principal.as_bytes());
        }
        Resource::Credential { id, principal } => {
            push(&mut out, b"credential");
            push(&mut out, id.as_bytes());
            push(&mut out, principal.as_bytes());
        }
        Resource::Collection(name) => {
            push(&mut out, b"collection");
            push(&mut out, name.as_bytes());
        }
    }
    match facts.source_ip {
        None => push(&mut out, &[]),
        Some(IpAddr::V4(ip)) => push(&mut out, &ip.octets()),
        Some(IpAddr::V6(ip)) => push(&mut out, &ip.octets()),
    }
    push(&mut out, &[u8::from(facts.tls), u8::from(facts.mtls)]);
    push(&mut out, &facts.now_unix_s.to_le_bytes());
    out
}

struct Types {
    principal: EntityTypeName,
    group: EntityTypeName,
    key: EntityTypeName,
    credential: EntityTypeName,
    api_key: EntityTypeName,
    collection: EntityTypeName,
    action: EntityTypeName,
}

impl Types {
    fn new() -> Result<Self, String> {
        let parse = |s: &str| EntityTypeName::from_str(s).map_err(|e| e.to_string());
        Ok(Self {
            principal: parse("Sigvault::Principal")?,
            group: parse("Sigvault::Group")?,
            key: parse("Sigvault::Key")?,
            credential: parse("Sigvault::Credential")?,
            api_key: parse("Sigvault::ApiKey")?,
            collection: parse("Sigvault::Collection")?,
            action: parse("Sigvault::Action")?,
        })
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

/// The current policy set and how to decide with it (see module docs).
pub struct PolicyEngine {
    current: RwLock<Arc<Policies>>,
    dir: Option<PathBuf>,
    authorizer: Authorizer,
    types: Types,
}

impl PolicyEngine {
    pub fn new(policies: Policies, dir: Option<PathBuf>) -> Result<Self, String> {
        Ok(Self {
            current: RwLock::new(Arc::new(policies)),
            dir,
            authorizer: Authorizer::new(),
            types: Types::new()?,
        })
    }

    /// The set requests decide with now.
    pub fn snapshot(&self) -> Arc<Policies> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Re-reads the directory; the new set replaces the old one only when it compiles.
    /// Returns how many policies are in force.
    pub fn reload(&self) -> Result<usize, PolicyErrors> {
        let fresh = load(self.dir.as_deref())?;
        let count = fresh.len();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(count)
    }

    /// Decides one request with the current set.
    pub fn decide(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource<'_>,
        facts: RequestFacts,
    ) -> Decision {
        let policies = self.snapshot();
        let key = decision_key(principal, action, resource, facts);
        if let Some(known) = policies
            .decisions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return known.clone();
        }
        match self.evaluate(&policies, principal, action, resource, facts) {
            Ok(decision) => {
                let mut decisions = policies.decisions.write().unwrap_or_else(PoisonError::into_inner);
                if decisions.len() >= MAX_REMEMBERED_DECISIONS {
                    decisions.clear();
                }
                decisions.insert(key, decision.clone());
                decision
            }
            Err(e) => {
                tracing::error!(error = %e, action = action.as_str(), "policy request could not be built; denied");
                Decision {
                    allowed: false,
                    policy: None,
                }
            }
        }
    }

    fn evaluate(
        &self,
        policies: &Policies,
        principal: &Principal,
        action: Action,
        resource: &Resource<'_>,
        facts: RequestFacts,
    ) -> Result<Decision, String> {
        let t = &self.types;
        let principal_uid = Types::uid(&t.principal, &principal.name);
        let principal_entity = Entity::new(
            principal_uid.clone(),
            [
                (
                    "name".to_owned(),
                    RestrictedExpression::new_string(principal.name.clone()),
                ),
                (
                    "via".to_owned(),
                    RestrictedExpression::new_string(principal.via.as_str().to_owned()),
                ),
            ]
            .into(),
            principal.groups.iter().map(|g| Types::uid(&t.group, g)).collect(),
        )
        .map_err(|e| e.to_string())?;
        let (resource_uid, resource_entity) = match resource {
            Resource::Key { name, owner, tags } => {
                let uid = Types::uid(&t.key, name);
                let namespace = name.split_once('.').map_or(*name, |(ns, _)| ns);
                let entity = Entity::new_with_tags(
                    uid.clone(),
                    [
                        ("name".to_owned(), RestrictedExpression::new_string((*name).to_owned())),
                        (
                            "owner".to_owned(),
                            RestrictedExpression::new_string((*owner).to_owned()),
                        ),
                        (
                            "namespace".to_owned(),
                            RestrictedExpression::new_string(namespace.to_owned()),
                        ),
                    ],
                    [],
                    tags.iter()
                        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
                )
                .map_err(|e| e.to_string())?;
                (uid, entity)
            }
            Resource::Credential { id, principal } | Resource::ApiKey { id, principal } => {
                let ty = if matches!(resource, Resource::ApiKey { .. }) {
                    &t.api_key
                } else {
                    &t.credential
                };
                let uid = Types::uid(ty, id);
                let entity = Entity::new(
                    uid.clone(),
                    [
                        ("id".to_owned(), RestrictedExpression::new_string((*id).to_owned())),
                        (
                            "principal".to_owned(),
                            RestrictedExpression::new_string((*principal).to_owned()),
                        ),
                    ]
                    .into(),
                    [].into(),
                )
                .map_err(|e| e.to_string())?;
                (uid, entity)
            }
            Resource::Collection(name) => {
                let uid = Types::uid(&t.collection, name);
                (uid.clone(), Entity::with_uid(uid))
            }
        };
        let ip = facts.source_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let context = Context::from_pairs([
            ("source_ip".to_owned(), RestrictedExpression::new_ip(ip.to_string())),
            ("tls".to_owned(), RestrictedExpression::new_bool(facts.tls)),
            ("mtls".to_owned(), RestrictedExpression::new_bool(facts.mtls)),
            ("now".to_owned(), RestrictedExpression::new_long(facts.now_unix_s)),
        ])
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities([principal_entity, resource_entity], None).map_err(|e| e.to_string())?;
        let request = Request::new(
            principal_uid,
            Types::uid(&t.action, action.as_str()),
            resource_uid,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let response = self.authorizer.is_authorized(&request, &policies.set, &entities);
        for error in response.diagnostics().errors() {
            tracing::warn!(error = %error, "a policy failed to evaluate and was skipped");
        }
        let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
        reasons.sort();
        Ok(Decision {
            allowed: response.decision() == cedar_policy::Decision::Allow,
            policy: reasons.into_iter().next(),
        })
    }
}

#[cfg(test)]
mod tests {
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
}
