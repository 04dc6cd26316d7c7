//! Verifying a signed request against the credential it names, and handing out the derived
//! key of one scope. Every refusal is one of docs/API.md's codes; errors are failures of the vault
//! (KEK, store), never of the request.

use time::{Date, OffsetDateTime};
use zeroize::Zeroizing;

use super::{
    CredentialError, CredentialRecord, CredentialResult, CredentialService, CredentialState, MAX_SCOPE_PART_LEN, Patch,
};
use crate::clock::unix_ms;
use crate::fingerprint::{self, Fingerprint, NewFingerprint, Seen};
use crate::model::OnNewFingerprint;
use crate::sigv4::{self, Authorization, Form, HttpRequest, PathRules, Refusal, Scope};

/// A signed request that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub access_key_id: String,
    pub principal: String,
    /// The signer's groups, for the policies.
    pub groups: Vec<String>,
    pub scope: Scope,
    pub signed_headers: Vec<String>,
    pub form: Form,
}

/// Why a request did not verify: one of docs/API.md's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Refused(&'static str),
    UnknownAccessKey,
    InactiveAccessKey,
}

impl Rejection {
    pub fn code(self) -> &'static str {
        match self {
            Rejection::Refused(code) => code,
            Rejection::UnknownAccessKey => "UNKNOWN_ACCESS_KEY",
            Rejection::InactiveAccessKey => "INACTIVE_ACCESS_KEY",
        }
    }
}

impl From<Refusal> for Rejection {
    fn from(r: Refusal) -> Self {
        Rejection::Refused(r.code())
    }
}

/// The outcome of [`CredentialService::verify`].
#[derive(Debug, Clone)]
pub struct Verification {
    /// The access key id the request named, when it could be parsed.
    pub access_key_id: Option<String>,
    pub result: Result<Verified, Rejection>,
    pub new_fingerprint: Option<NewFingerprint>,
}

/// A scope part (`region`, `service`) a caller may name: 1–64 of `a-z 0-9 -`.
fn check_scope_part(field: &str, value: &str) -> CredentialResult<()> {
    let ok = (1..=MAX_SCOPE_PART_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CredentialError::Invalid(format!(
            "{field} must be 1 to {MAX_SCOPE_PART_LEN} characters of a-z 0-9 -"
        )))
    }
}

fn parse_scope_date(date: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year][month][day]");
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Date::parse(date, format).ok()
}

/// A verification's verdict, and the caller's fingerprint when it was new to the
/// credential (audited whatever the verdict).
type Outcome = (Result<Verified, Rejection>, Option<NewFingerprint>);

/// The answer for a request that verified.
fn verified(credential: &CredentialRecord, auth: &Authorization) -> Verified {
    Verified {
        access_key_id: credential.access_key_id.clone(),
        principal: credential.principal.clone(),
        groups: credential.groups.clone(),
        scope: auth.scope.clone(),
        signed_headers: auth.signed_headers.clone(),
        form: auth.form,
    }
}

impl CredentialService {
    /// Verifies a signed request as the calling service received it. `who` is the
    /// request's caller as that service saw it; `normalize_path` overrides the path rule of
    /// the request's service. Errors are failures of the vault (KEK, store), never of the
    /// request.
    pub async fn verify(
        &self,
        request: &HttpRequest<'_>,
        who: Fingerprint,
        normalize_path: Option<bool>,
    ) -> CredentialResult<Verification> {
        let auth = match sigv4::parse(request) {
            Ok(auth) => auth,
            Err(refusal) => {
                return Ok(Verification {
                    access_key_id: None,
                    result: Err(refusal.into()),
                    new_fingerprint: None,
                });
            }
        };
        let id = auth.access_key_id.clone();
        let rules = PathRules::for_request(&auth.scope.service, normalize_path);
        let (result, new_fingerprint) = self.verify_parsed(request, &auth, who, rules).await?;
        Ok(Verification {
            access_key_id: Some(id),
            result,
            new_fingerprint,
        })
    }

    /// Verifies a parsed request: the credential it names, the request's time and
    /// signature, and — only for a request its secret signed — the credential's state and
    /// the caller's fingerprint under the credential's rule.
    async fn verify_parsed(
        &self,
        request: &HttpRequest<'_>,
        auth: &Authorization,
        who: Fingerprint,
        rules: PathRules,
    ) -> CredentialResult<Outcome> {
        let credential = match self.cached(&auth.access_key_id).await {
            Ok(c) => c,
            Err(CredentialError::NotFound(_)) => return Ok((Err(Rejection::UnknownAccessKey), None)),
            Err(e) => return Err(e),
        };
        let now = self.clock.now();
        if let Err(rejection) = self.check_signature(request, auth, rules, &credential, now).await? {
            return Ok((Err(rejection), None));
        }
        // State is told only to a holder of the secret: a forged request learns nothing.
        if credential.state == CredentialState::Inactive {
            return Ok((Err(Rejection::InactiveAccessKey), None));
        }
        let rule = credential
            .on_new_fingerprint
            .unwrap_or(self.settings.on_new_fingerprint);
        let seen = self.notice_use(&credential, &auth.scope, &who, now, rule).await?;
        // A credential a new fingerprint stopped on this node refuses every caller.
        let Ok(new_fingerprint) =
            fingerprint::report(seen, &credential.access_key_id, &credential.principal, who, rule)
        else {
            return Ok((Err(Rejection::InactiveAccessKey), None));
        };
        if seen == Seen::New && self.act_on_new_fingerprint(&credential, rule).await? {
            return Ok((Err(Rejection::InactiveAccessKey), new_fingerprint));
        }
        Ok((Ok(verified(&credential, auth)), new_fingerprint))
    }

    /// Checks the request's time and its signature under the derived key of its scope. The
    /// inner result is the verdict on the request; the outer error a failure of the vault.
    /// A freshly derived key is cached only once it verified the request.
    async fn check_signature(
        &self,
        request: &HttpRequest<'_>,
        auth: &Authorization,
        rules: PathRules,
        credential: &CredentialRecord,
        now: OffsetDateTime,
    ) -> CredentialResult<Result<(), Rejection>> {
        let window = self.settings.time_window.whole_seconds();
        if let Err(refusal) = sigv4::check_time(auth, now.unix_timestamp(), window) {
            return Ok(Err(refusal.into()));
        }
        let candidates = match sigv4::strings_to_sign(request, auth, rules) {
            Ok(c) => c,
            Err(refusal) => return Ok(Err(refusal.into())),
        };
        let (key, fill) = self.scope_key(credential, &auth.scope).await?;
        let key_bytes: &[u8; 32] = key
            .expose_secret()
            .try_into()
            .map_err(|_| CredentialError::Corrupt("derived key length".into()))?;
        // The derived key signs the candidate strings; comparison is constant-time.
        if !sigv4::signature_matches(key_bytes, &candidates, &auth.signature) {
            return Ok(Err(Rejection::Refused(Refusal::SignatureMismatch.code())));
        }
        self.remember(&key, fill);
        Ok(Ok(()))
    }

    /// Counts this use of the credential and says whether the caller's fingerprint is new
    /// to it. The credential's known fingerprints are loaded from the store the first time
    /// this node sees it, so "new" survives a restart.
    async fn notice_use(
        &self,
        credential: &CredentialRecord,
        scope: &Scope,
        who: &Fingerprint,
        now: OffsetDateTime,
        rule: OnNewFingerprint,
    ) -> CredentialResult<Seen> {
        let id = &credential.access_key_id;
        let stored = || self.store.list_fingerprints(id);
        let note = (unix_ms(now), (scope.region.as_str(), scope.service.as_str()));
        let block_on_new = rule == OnNewFingerprint::Deactivate;
        Ok(self.activity.notice_loaded(id, stored, who, note, block_on_new).await?)
    }

    /// Applies the credential's rule to a fingerprint new to it: `alert` and `deactivate`
    /// warn in the log, and `deactivate` turns the credential inactive. Returns whether it
    /// did (the request is then refused).
    async fn act_on_new_fingerprint(
        &self,
        credential: &CredentialRecord,
        rule: OnNewFingerprint,
    ) -> CredentialResult<bool> {
        let id = &credential.access_key_id;
        fingerprint::warn_when_alerting("credential", id, &credential.principal, rule);
        if rule != OnNewFingerprint::Deactivate {
            return Ok(false);
        }
        self.update(
            id,
            Patch {
                state: Some(CredentialState::Inactive),
                on_new_fingerprint: None,
            },
        )
        .await?;
        Ok(true)
    }

    /// The derived signing key of one scope, for a gateway that verifies at high rate. The
    /// date may be yesterday, today or tomorrow (UTC); the credential must be active.
    /// Returns the key, its scope and until when requests of that date can be accepted.
    pub async fn derive(
        &self,
        id: &str,
        date: &str,
        region: &str,
        service: &str,
    ) -> CredentialResult<(Zeroizing<[u8; 32]>, Scope, OffsetDateTime)> {
        Self::check_id(id)?;
        let day = parse_scope_date(date).ok_or_else(|| CredentialError::Invalid("date must be YYYYMMDD".into()))?;
        check_scope_part("region", region)?;
        check_scope_part("service", service)?;
        let today = self.clock.now().date();
        let distance = (day - today).whole_days().abs();
        if distance > 1 {
            return Err(CredentialError::Invalid(
                "date must be yesterday, today or tomorrow (UTC)".into(),
            ));
        }
        let credential = self.cached(id).await?;
        if credential.state != CredentialState::Active {
            return Err(CredentialError::Precondition(format!("credential '{id}' is inactive")));
        }
        let scope = Scope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
        };
        let (key, fill) = self.scope_key(&credential, &scope).await?;
        self.remember(&key, fill);
        let bytes: &[u8; 32] = key
            .expose_secret()
            .try_into()
            .map_err(|_| CredentialError::Corrupt("derived key length".into()))?;
        // Copied out for the one caller allowed to receive it.
        let out = Zeroizing::new(*bytes);
        let expires = day.next_day().unwrap_or(day).midnight().assume_utc() + self.settings.time_window;
        Ok((out, scope, expires))
    }
}
