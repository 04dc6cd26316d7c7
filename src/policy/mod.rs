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
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use cedar_policy::{Authorizer, PolicySet};

use crate::audit::action::Action;
use crate::auth::Principal;

mod compile;
mod request;
#[cfg(test)]
mod tests;

use request::Types;

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
    pub(crate) now_unix_s: i64,
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

    /// Decides with `policies` without consulting or filling its memory of decisions.
    pub(crate) fn evaluate(
        &self,
        policies: &Policies,
        principal: &Principal,
        action: Action,
        resource: &Resource<'_>,
        facts: RequestFacts,
    ) -> Result<Decision, String> {
        let (request, entities) = self.types.request(principal, action, resource, facts)?;
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
