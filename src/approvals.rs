//! Dual control (`[custodian] quorum = N`, PCI DSS 3.6.1): with N ≥ 2 the dangerous
//! operations ([`GATED`]) run only with an approval request that N distinct principals of the
//! `custodian` group stand behind — the requester (when a custodian) and the others who
//! approved it. The requester cannot approve their own request; a request expires
//! `approval_ttl` after it was made; the operation runs with it once, by the requester, for
//! exactly the action and resource it names. Requests live in the store, so they survive
//! restarts and every node sees them; a use is a conditional update on the row's revision,
//! so two nodes cannot both spend one.
//!
//! This module decides; `api::approvals` records every step in the audit trail.

use std::sync::Arc;

use time::Duration;

use crate::audit::action::Action;
use crate::auth::Principal;
use crate::clock::SharedClock;
use crate::store::{ApprovalRecord, ApprovalStore, StoreError};

/// The group whose members' approvals count.
pub const CUSTODIAN_GROUP: &str = "custodian";

/// The operations that need an approval when dual control is on.
pub const GATED: [Action; 7] = [
    Action::ExportKey,
    Action::ImportKeyPlaintext,
    Action::ImportKeyWrapped,
    Action::ScheduleKeyDeletion,
    Action::RetireKek,
    Action::RotateWrappingKey,
    Action::ReloadPolicies,
];

/// Longest `reason` accepted.
const MAX_REASON: usize = 1024;
/// Longest resource accepted (a KMS ARN `kek_id` fits).
const MAX_RESOURCE: usize = 2100;
/// At most this many requests a listing returns.
pub const MAX_LIST: u32 = 1000;
/// How many times a change is retried when another writer changed the request meanwhile.
const ATTEMPTS: usize = 8;

/// `[custodian]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalSettings {
    /// Distinct custodians an operation of [`GATED`] needs; 1 turns dual control off.
    pub quorum: u32,
    /// How long a request stays usable after it was made.
    pub ttl: Duration,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        Self {
            quorum: 1,
            ttl: Duration::hours(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The request is malformed (400).
    #[error("{0}")]
    Invalid(String),
    /// No request of that id (404).
    #[error("no approval request '{0}'")]
    NotFound(String),
    /// The caller may not do this step (403): approving their own request, or one they
    /// approved already, or approving without being a custodian.
    #[error("{0}")]
    Forbidden(String),
    /// The operation needs an approval it does not have (403 `APPROVAL_REQUIRED`): none
    /// given, not enough approvals yet, expired, used, or for another operation or caller.
    #[error("{0}")]
    Required(String),
    /// The request can no longer be approved (409): expired or used.
    #[error("{0}")]
    Closed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random generator failed")]
    Random,
}

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    /// Fewer approvals than the quorum.
    Pending,
    /// Enough approvals: the requester may run the operation with it, once.
    Approved,
    Used,
    Expired,
}

impl ApprovalState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Used => "used",
            ApprovalState::Expired => "expired",
        }
    }
}

fn is_custodian(p: &Principal) -> bool {
    p.groups.iter().any(|g| g == CUSTODIAN_GROUP)
}

/// The gated action named `name`.
fn gated(name: &str) -> Option<Action> {
    GATED.into_iter().find(|a| a.as_str() == name)
}

/// Whether `resource` is one `action` can be asked for on.
fn check_resource(action: Action, resource: &str) -> Result<(), ApprovalError> {
    let ok = match action {
        Action::ExportKey | Action::ImportKeyPlaintext | Action::ImportKeyWrapped | Action::ScheduleKeyDeletion => {
            resource
                .strip_prefix("key:")
                .is_some_and(|name| crate::keys::model::validate_name(name).is_ok())
        }
        Action::RetireKek => resource
            .strip_prefix("kek:")
            .is_some_and(|id| !id.is_empty() && id.len() <= MAX_RESOURCE && !id.chars().any(char::is_control)),
        Action::RotateWrappingKey => resource == "wrapping-key",
        Action::ReloadPolicies => resource == "policies",
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ApprovalError::Invalid(format!(
            "resource `{resource}` is not one {} is asked for on (key:<name>, kek:<kek_id>, wrapping-key or policies, as the action takes)",
            action.as_str()
        )))
    }
}

pub struct ApprovalService {
    store: Arc<dyn ApprovalStore>,
    clock: SharedClock,
    settings: ApprovalSettings,
}

impl ApprovalService {
    pub fn new(store: Arc<dyn ApprovalStore>, clock: SharedClock, settings: ApprovalSettings) -> Self {
        Self { store, clock, settings }
    }

    pub fn quorum(&self) -> u32 {
        self.settings.quorum
    }

    /// Whether `action` needs an approval here.
    pub fn gates(&self, action: Action) -> bool {
        self.settings.quorum >= 2 && GATED.contains(&action)
    }

    /// The custodians standing behind `r`.
    pub fn count(r: &ApprovalRecord) -> u32 {
        let approvers = u32::try_from(r.approvers.len()).unwrap_or(u32::MAX);
        approvers.saturating_add(u32::from(r.requester_counts))
    }

    pub fn state(&self, r: &ApprovalRecord) -> ApprovalState {
        if r.used_at_ms.is_some() {
            ApprovalState::Used
        } else if self.clock.now_ms() >= r.expires_at_ms {
            ApprovalState::Expired
        } else if Self::count(r) >= self.settings.quorum {
            ApprovalState::Approved
        } else {
            ApprovalState::Pending
        }
    }

    /// Asks for `action` on `resource`. A custodian's request counts as their approval.
    pub async fn request(
        &self,
        caller: &Principal,
        action: &str,
        resource: &str,
        reason: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let action = gated(action).ok_or_else(|| {
            let names: Vec<&str> = GATED.iter().map(|a| a.as_str()).collect();
            ApprovalError::Invalid(format!(
                "action `{action}` needs no approval (those that do: {})",
                names.join(", ")
            ))
        })?;
        check_resource(action, resource)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(ApprovalError::Invalid(format!(
                "reason must be 1 to {MAX_REASON} bytes of text without control characters"
            )));
        }
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|_| ApprovalError::Random)?;
        let now = self.clock.now_ms();
        let ttl_ms = i64::try_from(self.settings.ttl.whole_milliseconds()).unwrap_or(i64::MAX);
        let record = ApprovalRecord {
            id: format!("apr_{}", base16ct::lower::encode_string(&raw)),
            action: action.as_str().to_owned(),
            resource: resource.to_owned(),
            reason: reason.to_owned(),
            requested_by: caller.name.clone(),
            requester_counts: is_custodian(caller),
            approvers: Vec::new(),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(ttl_ms),
            used_at_ms: None,
            revision: 0,
        };
        self.store.insert_approval(&record).await?;
        Ok(record)
    }

    pub async fn get(&self, id: &str) -> Result<ApprovalRecord, ApprovalError> {
        self.store
            .get_approval(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_owned()))
    }

    /// Requests made within the validity window (older ones can no longer be used), newest
    /// first.
    pub async fn list(&self, limit: u32) -> Result<Vec<ApprovalRecord>, ApprovalError> {
        let ttl_ms = i64::try_from(self.settings.ttl.whole_milliseconds()).unwrap_or(i64::MAX);
        let since = self.clock.now_ms().saturating_sub(ttl_ms);
        Ok(self.store.list_approvals(since, limit.clamp(1, MAX_LIST)).await?)
    }

    /// Adds `caller`'s approval to request `id`.
    pub async fn approve(&self, id: &str, caller: &Principal) -> Result<ApprovalRecord, ApprovalError> {
        if !is_custodian(caller) {
            return Err(ApprovalError::Forbidden(format!(
                "only members of the {CUSTODIAN_GROUP} group approve requests"
            )));
        }
        for _ in 0..ATTEMPTS {
            let current = self.get(id).await?;
            if current.requested_by == caller.name {
                return Err(ApprovalError::Forbidden(
                    "the requester cannot approve their own request".into(),
                ));
            }
            if current.approvers.contains(&caller.name) {
                return Err(ApprovalError::Forbidden(format!(
                    "{} approved this request already",
                    caller.name
                )));
            }
            match self.state(&current) {
                ApprovalState::Used => return Err(ApprovalError::Closed(format!("request '{id}' was used"))),
                ApprovalState::Expired => return Err(ApprovalError::Closed(format!("request '{id}' expired"))),
                ApprovalState::Pending | ApprovalState::Approved => {}
            }
            let mut next = current;
            next.approvers.push(caller.name.clone());
            next.revision = next.revision.saturating_add(1);
            if self.store.update_approval(&next).await? {
                return Ok(next);
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// Spends request `id` on `action` over `resource` by `caller`: it must name exactly
    /// them, be the caller's own, have the quorum, and be neither expired nor used. Once
    /// this returns, no other call (on any node) can spend it.
    pub async fn consume(
        &self,
        id: &str,
        caller: &Principal,
        action: Action,
        resource: &str,
    ) -> Result<ApprovalRecord, ApprovalError> {
        let required = ApprovalError::Required;
        for _ in 0..ATTEMPTS {
            let current = match self.store.get_approval(id).await? {
                Some(r) => r,
                None => return Err(required(format!("no approval request '{id}'"))),
            };
            if current.action != action.as_str() || current.resource != resource {
                return Err(required(format!(
                    "approval '{id}' is for {} on {}, not {} on {resource}",
                    current.action,
                    current.resource,
                    action.as_str()
                )));
            }
            if current.requested_by != caller.name {
                return Err(required(format!(
                    "approval '{id}' was requested by {}: only the requester runs it",
                    current.requested_by
                )));
            }
            match self.state(&current) {
                ApprovalState::Used => return Err(required(format!("approval '{id}' was used already"))),
                ApprovalState::Expired => return Err(required(format!("approval '{id}' expired"))),
                ApprovalState::Pending => {
                    return Err(required(format!(
                        "approval '{id}' has {} of the {} custodians it needs",
                        Self::count(&current),
                        self.settings.quorum
                    )));
                }
                ApprovalState::Approved => {}
            }
            let mut next = current;
            next.used_at_ms = Some(self.clock.now_ms());
            next.revision = next.revision.saturating_add(1);
            if self.store.update_approval(&next).await? {
                return Ok(next);
            }
        }
        Err(StoreError::Conflict.into())
    }
}
