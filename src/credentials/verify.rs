//! Verifying a signed request against the credential it names, and handing out the derived
//! key of one scope. Every refusal is one of API.md's codes; errors are failures of the vault
//! (KEK, store), never of the request.

use time::{Date, OffsetDateTime};
use zeroize::Zeroizing;

use super::activity::{Fingerprint, Seen};
use super::{CredentialError, CredentialResult, CredentialService, CredentialState, MAX_SCOPE_PART_LEN, Patch};
use crate::clock::unix_ms;
use crate::model::OnNewFingerprint;
use crate::sigv4::{self, Authorization, Form, HttpRequest, PathRules, Refusal, Scope};

/// A signed request that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub access_key_id: String,
    pub principal: String,
    pub scope: Scope,
    pub signed_headers: Vec<String>,
    pub form: Form,
}

/// Why a request did not verify: one of API.md's codes.
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

/// A fingerprint the credential had not been used from, and what was done about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFingerprint {
    pub access_key_id: String,
    pub principal: String,
    pub fingerprint: Fingerprint,
    /// `record`, `alert` or `deactivate` (the rule applied).
    pub rule: OnNewFingerprint,
    /// The credential's first fingerprint ever: learned without alert or deactivation.
    pub first: bool,
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
        let mut rules = PathRules::for_service(&auth.scope.service);
        if let Some(normalize) = normalize_path {
            rules.normalize = normalize;
        }
        let (result, new_fingerprint) = self.verify_parsed(request, &auth, who, rules).await?;
        Ok(Verification {
            access_key_id: Some(id),
            result,
            new_fingerprint,
        })
    }

    async fn verify_parsed(
        &self,
        request: &HttpRequest<'_>,
        auth: &Authorization,
        who: Fingerprint,
        rules: PathRules,
    ) -> CredentialResult<(Result<Verified, Rejection>, Option<NewFingerprint>)> {
        let credential = match self.cached(&auth.access_key_id).await {
            Ok(c) => c,
            Err(CredentialError::NotFound(_)) => return Ok((Err(Rejection::UnknownAccessKey), None)),
            Err(e) => return Err(e),
        };
        let now = self.clock.now();
        let window = self.settings.time_window.whole_seconds();
        if let Err(refusal) = sigv4::check_time(auth, now.unix_timestamp(), window) {
            return Ok((Err(refusal.into()), None));
        }
        let candidates = match sigv4::strings_to_sign(request, auth, rules) {
            Ok(c) => c,
            Err(refusal) => return Ok((Err(refusal.into()), None)),
        };
        let (key, fill) = self.scope_key(&credential, &auth.scope).await?;
        let key_bytes: &[u8; 32] = key
            .expose_secret()
            .try_into()
            .map_err(|_| CredentialError::Corrupt("derived key length".into()))?;
        // The derived key signs the candidate strings; comparison is constant-time.
        if !sigv4::signature_matches(key_bytes, &candidates, &auth.signature) {
            return Ok((Err(Rejection::Refused(Refusal::SignatureMismatch.code())), None));
        }
        self.remember(&key, fill);
        // State is told only to a holder of the secret: a forged request learns nothing.
        if credential.state == CredentialState::Inactive {
            return Ok((Err(Rejection::InactiveAccessKey), None));
        }
        let id = &credential.access_key_id;
        if !self.activity.is_loaded(id) {
            let stored = self.store.list_fingerprints(id).await?;
            self.activity.load(id, stored);
        }
        let rule = credential
            .on_new_fingerprint
            .unwrap_or(self.settings.on_new_fingerprint);
        let seen = self.activity.notice(
            id,
            &who,
            unix_ms(now),
            (&auth.scope.region, &auth.scope.service),
            rule == OnNewFingerprint::Deactivate,
        );
        let new_fingerprint = match seen {
            Seen::Blocked => return Ok((Err(Rejection::InactiveAccessKey), None)),
            Seen::Known => None,
            Seen::First | Seen::New => Some(NewFingerprint {
                access_key_id: id.clone(),
                principal: credential.principal.clone(),
                fingerprint: who,
                rule,
                first: seen == Seen::First,
            }),
        };
        if seen == Seen::New {
            if rule != OnNewFingerprint::Record {
                tracing::warn!(
                    access_key_id = %id,
                    principal = %credential.principal,
                    rule = rule.as_str(),
                    "credential used from a new caller fingerprint"
                );
            }
            if rule == OnNewFingerprint::Deactivate {
                self.update(
                    id,
                    Patch {
                        state: Some(CredentialState::Inactive),
                        on_new_fingerprint: None,
                    },
                )
                .await?;
                return Ok((Err(Rejection::InactiveAccessKey), new_fingerprint));
            }
        }
        Ok((
            Ok(Verified {
                access_key_id: id.clone(),
                principal: credential.principal.clone(),
                scope: auth.scope.clone(),
                signed_headers: auth.signed_headers.clone(),
                form: auth.form,
            }),
            new_fingerprint,
        ))
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
