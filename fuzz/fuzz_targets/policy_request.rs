//! The Cedar request built from a request's values (`policy::request`) and the decision made
//! with the shipped policies (`PolicyEngine::decide`, with its memory of decisions).
//!
//! Input: text, one fact per line (unknown lines are ignored); a line `---` starts a second
//! request:
//!
//! ```text
//! principal payments        group service          via mtls
//! action Sign               key payments.webhook   owner payments   tag env=prod
//! credential SVAK…  / apikey ak_…  (then: principal-of <name>)  / collection keys
//! ip ::ffff:127.0.0.1       tls                    mtls             now 1790000000
//! ```
//!
//! Properties: the Cedar request builds from any values (else the request would be denied
//! whatever the policies say); a remembered decision is the decision made afresh, for the
//! first request and for a second one decided after it (two requests never share a memory
//! slot); an allow names a policy of the set.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sigvault::audit::action::Action;
use sigvault::auth::{Principal, Via};
use sigvault::fuzzing::{policy_evaluate, policy_facts};
use sigvault::policy::{self, PolicyEngine, Resource};

const ACTIONS: [Action; 49] = [
    Action::CreateKey,
    Action::ListKeys,
    Action::GetKey,
    Action::UpdateKey,
    Action::ScheduleKeyDeletion,
    Action::CancelKeyDeletion,
    Action::RotateKey,
    Action::ImportKeyPlaintext,
    Action::ImportKeyWrapped,
    Action::ExportKey,
    Action::BackupKey,
    Action::RestoreKey,
    Action::Sign,
    Action::Verify,
    Action::Encrypt,
    Action::Decrypt,
    Action::ReEncrypt,
    Action::GenerateDataKey,
    Action::WrapKey,
    Action::UnwrapKey,
    Action::ReadAudit,
    Action::VerifyAudit,
    Action::ReadComplianceReport,
    Action::ReadMetrics,
    Action::CreateToken,
    Action::ReadToken,
    Action::RevokeToken,
    Action::WhoAmI,
    Action::ReloadPolicies,
    Action::CreateCredential,
    Action::ImportCredential,
    Action::ListCredentials,
    Action::GetCredential,
    Action::UpdateCredential,
    Action::DeleteCredential,
    Action::ReadCredentialActivity,
    Action::VerifySigV4,
    Action::DeriveSigningKey,
    Action::CreateApiKey,
    Action::GetApiKey,
    Action::UpdateApiKey,
    Action::RevokeApiKey,
    Action::RerollApiKey,
    Action::VerifyApiKey,
    Action::ReadWrappingKey,
    Action::RotateWrappingKey,
    Action::RequestApproval,
    Action::ApproveRequest,
    Action::ReadApprovals,
];

/// The collections the API names.
const COLLECTIONS: [&str; 12] = [
    "keys",
    "metrics",
    "wrapping-key",
    "approvals",
    "audit",
    "reports",
    "tokens",
    "policies",
    "self",
    "credentials",
    "sigv4",
    "apikeys",
];

enum Target {
    Key,
    Credential,
    ApiKey,
    Collection(&'static str),
}

struct Request {
    principal: Principal,
    action: Action,
    target: Target,
    name: String,
    owner: String,
    tags: BTreeMap<String, String>,
    source_ip: Option<IpAddr>,
    tls: bool,
    mtls: bool,
    now: i64,
}

impl Request {
    fn parse(text: &str) -> Self {
        let mut r = Request {
            principal: Principal {
                name: String::new(),
                groups: Vec::new(),
                via: Via::Token,
            },
            action: Action::Sign,
            target: Target::Collection("keys"),
            name: String::new(),
            owner: String::new(),
            tags: BTreeMap::new(),
            source_ip: None,
            tls: false,
            mtls: false,
            now: 0,
        };
        for line in text.lines() {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "principal" => r.principal.name = rest.to_owned(),
                "group" => r.principal.groups.push(rest.to_owned()),
                "via" => r.principal.via = if rest == "mtls" { Via::Mtls } else { Via::Token },
                "action" => {
                    if let Some(a) = ACTIONS.iter().find(|a| a.as_str() == rest) {
                        r.action = *a;
                    }
                }
                "key" | "credential" | "apikey" => {
                    r.target = match word {
                        "key" => Target::Key,
                        "credential" => Target::Credential,
                        _ => Target::ApiKey,
                    };
                    r.name = rest.to_owned();
                }
                "collection" => {
                    if let Some(c) = COLLECTIONS.iter().find(|c| **c == rest) {
                        r.target = Target::Collection(c);
                    }
                }
                "owner" | "principal-of" => r.owner = rest.to_owned(),
                "tag" => {
                    let (k, v) = rest.split_once('=').unwrap_or((rest, ""));
                    r.tags.insert(k.to_owned(), v.to_owned());
                }
                "ip" => r.source_ip = rest.parse().ok(),
                "tls" => r.tls = true,
                "mtls" => r.mtls = true,
                "now" => r.now = rest.parse().unwrap_or(0),
                _ => {}
            }
        }
        r
    }

    fn resource(&self) -> Resource<'_> {
        match self.target {
            Target::Key => Resource::Key {
                name: &self.name,
                owner: &self.owner,
                tags: &self.tags,
            },
            Target::Credential => Resource::Credential {
                id: &self.name,
                principal: &self.owner,
            },
            Target::ApiKey => Resource::ApiKey {
                id: &self.name,
                principal: &self.owner,
            },
            Target::Collection(name) => Resource::Collection(name),
        }
    }

    /// Decides with the engine's memory and afresh; they must agree.
    fn decide(&self, engine: &PolicyEngine) {
        let facts = policy_facts(self.source_ip, self.tls, self.mtls, self.now);
        let resource = self.resource();
        let fresh = policy_evaluate(engine, &self.principal, self.action, &resource, facts)
            .unwrap_or_else(|e| panic!("the Cedar request does not build: {e}"));
        let remembered = engine.decide(&self.principal, self.action, &resource, facts);
        assert_eq!(remembered, fresh, "the memory of decisions answered another request");
        if fresh.allowed {
            let policy = fresh.policy.as_deref().expect("an allow names its policy");
            assert!(engine.snapshot().ids().iter().any(|id| id == policy), "{policy}");
        }
    }
}

fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let policies = policy::load(None).expect("the shipped policies compile");
        PolicyEngine::new(policies, None).expect("the engine starts")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, second) = match text.split_once("\n---\n") {
        Some((first, second)) => (first, Some(second)),
        None => (text, None),
    };
    let engine = engine();
    Request::parse(first).decide(engine);
    if let Some(second) = second {
        Request::parse(second).decide(engine);
    }
});
