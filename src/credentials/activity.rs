//! Where credentials are used from: last use (time, region, service) and caller
//! fingerprints, noticed on the hot path by a [`FingerprintTracker`] and written to the store
//! in one transaction per interval. What a credential's last use holds, and how a flush's
//! batch becomes the store's [`CredentialActivity`] and back, is this module's; noticing,
//! counting and blocking are [`crate::fingerprint`]'s.

pub use crate::fingerprint::Fingerprint;

use crate::fingerprint::{FingerprintTracker, LastUse, Pending};
use crate::store::CredentialActivity;

/// A credential's latest use: when, and the scope's region and service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CredentialUse {
    at_ms: i64,
    region: String,
    service: String,
}

impl LastUse for CredentialUse {
    /// `(region, service)` of the request's scope.
    type Note<'a> = (&'a str, &'a str);

    fn at_ms(&self) -> i64 {
        self.at_ms
    }

    fn first(at_ms: i64, (region, service): (&str, &str)) -> Self {
        Self {
            at_ms,
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }

    fn renew(&mut self, at_ms: i64, (region, service): (&str, &str)) {
        self.at_ms = at_ms;
        if self.region != region || self.service != service {
            region.clone_into(&mut self.region);
            service.clone_into(&mut self.service);
        }
    }
}

/// The fingerprints and last uses of every credential seen on this node.
pub(crate) type ActivityTracker = FingerprintTracker<CredentialUse>;

/// A flush's batch as the store takes it.
pub(crate) fn to_store(pending: Pending<CredentialUse>) -> CredentialActivity {
    let Pending {
        id,
        last_use,
        fingerprints,
    } = pending;
    CredentialActivity {
        access_key_id: id,
        last_used_at_ms: last_use.at_ms,
        region: last_use.region,
        service: last_use.service,
        fingerprints,
    }
}

/// A batch the store refused, back as pending use.
pub(crate) fn from_store(activity: CredentialActivity) -> Pending<CredentialUse> {
    Pending {
        id: activity.access_key_id,
        last_use: CredentialUse {
            at_ms: activity.last_used_at_ms,
            region: activity.region,
            service: activity.service,
        },
        fingerprints: activity.fingerprints,
    }
}

/// The latest use of a pending batch: time, region, service.
pub(crate) fn last_use(pending: &Pending<CredentialUse>) -> (i64, &str, &str) {
    let u = &pending.last_use;
    (u.at_ms, &u.region, &u.service)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::BoxFuture;
    use crate::fingerprint::who;
    use crate::store::{StoreError, StoreResult};

    /// A store write that keeps what it was handed and fails.
    fn refuse<'x>(
        handed: &'x Mutex<Vec<CredentialActivity>>,
        batch: &'x [CredentialActivity],
        _max_fingerprints: u32,
    ) -> BoxFuture<'x, StoreResult<()>> {
        *handed.lock().unwrap() = batch.to_vec();
        Box::pin(async { Err(StoreError::Conflict) })
    }

    #[tokio::test]
    async fn the_latest_use_keeps_its_region_and_service_and_survives_a_failed_flush() {
        let t = ActivityTracker::new(64);
        t.load("AK", Vec::new());
        t.notice("AK", &who("10.0.0.1", "a"), 10, ("eu-west-1", "s3"), false);
        t.notice("AK", &who("10.0.0.1", "a"), 5, ("us-east-1", "sts"), false);
        let handed = Mutex::new(Vec::new());
        let failed = t.flush((to_store, from_store), &handed, refuse, 64).await;
        assert!(failed.is_err());
        let handed = handed.into_inner().unwrap();
        assert_eq!(handed.len(), 1);
        let a = &handed[0];
        assert_eq!(
            (
                a.access_key_id.as_str(),
                a.last_used_at_ms,
                a.region.as_str(),
                a.service.as_str()
            ),
            ("AK", 10, "eu-west-1", "s3"),
            "an older use's scope does not replace the latest's"
        );
        assert_eq!(a.fingerprints.iter().map(|f| f.count).sum::<u64>(), 2);

        let back = t.pending_for("AK").expect("kept after the failed flush");
        assert_eq!(last_use(&back), (10, "eu-west-1", "s3"));
        assert_eq!(back.fingerprints.iter().map(|f| f.count).sum::<u64>(), 2);
        t.notice("AK", &who("10.0.0.1", "a"), 11, ("us-east-1", "sts"), false);
        let back = t.pending_for("AK").expect("pending");
        assert_eq!(last_use(&back), (11, "us-east-1", "sts"));
    }
}
