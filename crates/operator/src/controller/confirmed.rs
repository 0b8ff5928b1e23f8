//! Bindings whose AWS side a full pass confirmed within its resync interval.
//!
//! A pass that ends `Ready` is followed by events of the operator's own making: its
//! status patch, the ServiceAccount it created. Reconciling again on those would read
//! every AWS resource of the binding a second time, for nothing. A confirmation holds
//! for one generation of the binding and until the resync is due; it is void once the
//! binding's ServiceAccount changes (its resourceVersion, first seen right after the
//! pass, moves) or disappears, and every confirmation is forgotten when the guardrails
//! change. AWS drift is still found at the resync, as before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Debug)]
struct Entry {
    generation: Option<i64>,
    at: Instant,
    /// How long the confirmation holds: until the binding's resync.
    ttl: Duration,
    service_account_version: Option<String>,
}

/// Confirmations by binding UID.
#[derive(Debug, Default)]
pub struct Confirmed {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Confirmed {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds plain values; a panic while holding it leaves it usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A full pass of this generation just ended with everything in place; the next
    /// one is due in `ttl`.
    pub fn record(&self, uid: &str, generation: Option<i64>, now: Instant, ttl: Duration) {
        self.lock().insert(
            uid.to_owned(),
            Entry {
                generation,
                at: now,
                ttl,
                service_account_version: None,
            },
        );
    }

    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The bindings whose resync is more than `grace` past due at `now`. A full pass
    /// starts by forgetting its binding's confirmation, so one still kept then belongs
    /// to a binding whose resync never ran.
    pub fn overdue(&self, now: Instant, grace: Duration) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.at) > e.ttl + grace)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Whether a confirmation of this generation holds at `now`, whatever the
    /// ServiceAccount (checked by [`remaining`](Self::remaining)).
    pub fn holds(&self, uid: &str, generation: Option<i64>, now: Instant) -> bool {
        self.lock().get(uid).is_some_and(|e| {
            e.generation == generation && now.saturating_duration_since(e.at) < e.ttl
        })
    }

    /// How long the confirmation of this generation still holds, given the
    /// ServiceAccount's resourceVersion now (`None`: it does not exist); `None` when a
    /// full pass is due. The first version seen after the pass is remembered.
    pub fn remaining(
        &self,
        uid: &str,
        generation: Option<i64>,
        service_account_version: Option<&str>,
        now: Instant,
    ) -> Option<Duration> {
        let mut entries = self.lock();
        let entry = entries.get_mut(uid)?;
        let left = entry
            .ttl
            .checked_sub(now.saturating_duration_since(entry.at))?;
        let version = service_account_version?;
        if entry.generation != generation || left.is_zero() {
            return None;
        }
        match &entry.service_account_version {
            Some(seen) if seen != version => None,
            Some(_) => Some(left),
            None => {
                entry.service_account_version = Some(version.to_owned());
                Some(left)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    #[test]
    fn holds_for_its_generation_until_the_resync() {
        let c = Confirmed::default();
        let t0 = Instant::now();
        assert_eq!(c.remaining("u", Some(1), Some("5"), t0), None);
        assert!(!c.holds("u", Some(1), t0));
        c.record("u", Some(1), t0, TTL);
        assert!(c.holds("u", Some(1), t0));
        assert!(!c.holds("u", Some(2), t0));
        assert!(!c.holds("u", Some(1), t0 + TTL));
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(
            c.remaining("u", Some(1), Some("5"), t1),
            Some(Duration::from_secs(200))
        );
        assert_eq!(c.remaining("u", Some(2), Some("5"), t1), None);
        assert_eq!(c.remaining("u", Some(1), Some("5"), t0 + TTL), None);
        assert_eq!(c.remaining("other", Some(1), Some("5"), t1), None);
    }

    #[test]
    fn a_changed_or_missing_service_account_voids_it() {
        let c = Confirmed::default();
        let t0 = Instant::now();
        c.record("u", Some(1), t0, TTL);
        assert_eq!(c.remaining("u", Some(1), None, t0), None);
        // The first version seen after the pass is the reference.
        assert!(c.remaining("u", Some(1), Some("7"), t0).is_some());
        assert!(c.remaining("u", Some(1), Some("7"), t0).is_some());
        assert_eq!(c.remaining("u", Some(1), Some("8"), t0), None);
        // A new pass starts over.
        c.record("u", Some(1), t0, TTL);
        assert!(c.remaining("u", Some(1), Some("8"), t0).is_some());
    }

    #[test]
    fn forget_and_clear_drop_confirmations() {
        let c = Confirmed::default();
        let t0 = Instant::now();
        c.record("a", Some(1), t0, TTL);
        c.record("b", Some(1), t0, TTL);
        c.forget("a");
        assert_eq!(c.remaining("a", Some(1), Some("1"), t0), None);
        assert!(c.remaining("b", Some(1), Some("1"), t0).is_some());
        c.clear();
        assert_eq!(c.remaining("b", Some(1), Some("1"), t0), None);
    }

    #[test]
    fn a_confirmation_left_past_its_resync_and_the_grace_is_overdue() {
        let c = Confirmed::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(10);
        c.record("a", Some(1), t0, TTL);
        c.record("b", Some(1), t0 + Duration::from_secs(60), TTL);
        assert!(c.overdue(t0 + TTL, grace).is_empty());
        assert!(c.overdue(t0 + TTL + grace, grace).is_empty());
        let late = t0 + TTL + grace + Duration::from_secs(1);
        assert_eq!(c.overdue(late, grace), ["a"]);
        // The pass that finally runs starts by forgetting it.
        c.forget("a");
        assert!(c.overdue(late, grace).is_empty());
    }
}
