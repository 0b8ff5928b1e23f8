//! Per-binding retry bookkeeping: how long a failed binding waits, and whether a pass
//! that starts early must wait on.
//!
//! Each kind of retry ([`Retry`]) has its own schedule, exponential with jitter
//! ([`status::backoff`]): transient failures and throttling from `retry_base` up to
//! `retry_max`, propagation and release windows from `retry_soon` up to `retry_slow`,
//! problems that need a person from `retry_slow` up to `retry_max` (or `retry_slow` when
//! that is longer). The attempt count is kept per binding for the kind of its last
//! failure: a failure of another kind starts its own count, and a success forgets it.
//!
//! Something other than the requeue can wake a failed binding early: the
//! ServiceAccount the operator just created, a sibling binding's change. For transient
//! failures and propagation ([`Retry::Backoff`], [`Retry::Soon`]), which no change in
//! the cluster can fix, a pass that starts before the binding's deadline does nothing
//! and requeues for the time left ([`Backoffs::hold`]), unless the binding entered
//! another phase (a new generation, or deletion). Problems that need a person are
//! retried at once on such a wake, since the wake may be the fix, and so is the cleanup
//! of a binding being deleted: every wake is a chance to let it go.
//!
//! Also kept per binding: when the operator last wrote its role's trust policy (creating
//! the role counts), so that EKS finding that trust policy invalid within the
//! propagation window reads as propagation ([`Backoffs::trust_written_within`]). A
//! binding whose deletion finished is forgotten altogether ([`Backoffs::forget`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::settings::Settings;
use super::status::{self, Retry};

/// What a binding's backoff is about: its generation, and whether it is being deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    pub generation: Option<i64>,
    pub deleting: bool,
}

impl Phase {
    pub fn of(meta: &kube::api::ObjectMeta) -> Phase {
        Phase {
            generation: meta.generation,
            deleting: meta.deletion_timestamp.is_some(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    retry: Retry,
    /// Failures of this kind in a row before the last one.
    attempts: u32,
    phase: Phase,
    not_before: Instant,
}

/// The retry state of every failing binding, by uid.
#[derive(Default)]
pub struct Backoffs {
    entries: Mutex<HashMap<String, Entry>>,
    /// When the operator last wrote each binding's trust policy.
    trust_writes: Mutex<HashMap<String, Instant>>,
}

/// The first delay and the cap of a kind of retry.
fn schedule(s: &Settings, retry: Retry) -> Option<(Duration, Duration)> {
    match retry {
        Retry::Backoff => Some((s.retry_base, s.retry_max)),
        Retry::Soon => Some((s.retry_soon, s.retry_slow.max(s.retry_soon))),
        Retry::Slow => Some((s.retry_slow, s.retry_max.max(s.retry_slow))),
        Retry::OnChange => None,
    }
}

impl Backoffs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // The map holds plain values; a panic while holding it leaves it usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a failure and returns the delay before the next attempt; `None` for
    /// problems retried only when the binding changes.
    pub fn failed(
        &self,
        settings: &Settings,
        uid: &str,
        phase: Phase,
        retry: Retry,
    ) -> Option<Duration> {
        let mut map = self.lock();
        let attempts = match map.get(uid) {
            Some(e) if e.retry == retry && e.phase == phase => e.attempts + 1,
            _ => 0,
        };
        let Some((base, max)) = schedule(settings, retry) else {
            map.remove(uid);
            return None;
        };
        let delay = status::backoff(base, max, attempts);
        map.insert(
            uid.to_owned(),
            Entry {
                retry,
                attempts,
                phase,
                not_before: Instant::now() + delay,
            },
        );
        Some(delay)
    }

    /// Forgets the binding's failures.
    pub fn succeeded(&self, uid: &str) {
        self.lock().remove(uid);
    }

    /// The time a pass starting now must still wait: some only while a transient or
    /// propagation retry is pending in the same phase.
    pub fn hold(&self, uid: &str, phase: Phase) -> Option<Duration> {
        let map = self.lock();
        let e = map.get(uid)?;
        let holds =
            matches!(e.retry, Retry::Backoff | Retry::Soon) && e.phase == phase && !phase.deleting;
        let left = e.not_before.saturating_duration_since(Instant::now());
        (holds && !left.is_zero()).then_some(left)
    }

    /// Failures of this binding's current kind in a row (0 when none are recorded).
    pub fn attempts(&self, uid: &str) -> u32 {
        self.lock().get(uid).map_or(0, |e| e.attempts + 1)
    }

    fn trust_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.trust_writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the binding's role trust policy was just written (or the role
    /// created).
    pub fn wrote_trust(&self, uid: &str) {
        self.trust_lock().insert(uid.to_owned(), Instant::now());
    }

    /// True when the binding's trust policy was written less than `window` ago.
    pub fn trust_written_within(&self, uid: &str, window: Duration) -> bool {
        let mut map = self.trust_lock();
        let Some(at) = map.get(uid).copied() else {
            return false;
        };
        let recent = at.elapsed() < window;
        if !recent {
            map.remove(uid);
        }
        recent
    }

    /// Forgets everything about the binding: its deletion finished.
    pub fn forget(&self, uid: &str) {
        self.lock().remove(uid);
        self.trust_lock().remove(uid);
    }

    /// The bindings whose retry is more than `grace` past due at `now`: every pass that
    /// fails again records a later one, and one that succeeds forgets it, so a retry
    /// left this late never ran.
    pub fn overdue(&self, now: Instant, grace: Duration) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.not_before) > grace)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Bindings some record is kept for (failures or a recent trust write).
    pub fn tracked(&self) -> usize {
        let mut uids: std::collections::HashSet<String> = self.lock().keys().cloned().collect();
        uids.extend(self.trust_lock().keys().cloned());
        uids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let mut s = Settings::new("prod");
        s.retry_base = Duration::from_secs(1);
        s.retry_max = Duration::from_secs(60);
        s.retry_soon = Duration::from_secs(5);
        s.retry_slow = Duration::from_secs(30);
        s
    }

    const P1: Phase = Phase {
        generation: Some(1),
        deleting: false,
    };

    #[tokio::test(start_paused = true)]
    async fn delays_grow_per_kind_reset_on_success_and_stay_within_their_schedule() {
        let (s, b) = (settings(), Backoffs::default());
        let delays: Vec<Duration> = (0..8)
            .map(|_| b.failed(&s, "u", P1, Retry::Backoff).expect("delay"))
            .collect();
        // Equal jitter: each delay lies in the upper half of base * 2^n, capped.
        for (n, d) in delays.iter().enumerate() {
            let exp = Duration::from_secs(1 << n).min(s.retry_max);
            assert!(*d >= exp / 2 && *d <= exp, "attempt {n}: {d:?}");
        }
        assert_eq!(b.attempts("u"), 8);
        // Another kind starts its own count.
        let soon = b.failed(&s, "u", P1, Retry::Soon).expect("delay");
        assert!(soon <= s.retry_soon && soon >= s.retry_soon / 2);
        assert_eq!(b.attempts("u"), 1);
        let slow = b.failed(&s, "u", P1, Retry::Slow).expect("delay");
        assert!(slow >= s.retry_slow / 2 && slow <= s.retry_slow);
        // A new generation starts over too.
        let p2 = Phase {
            generation: Some(2),
            ..P1
        };
        b.failed(&s, "u", P1, Retry::Backoff);
        b.failed(&s, "u", P1, Retry::Backoff);
        assert_eq!(b.attempts("u"), 2);
        b.failed(&s, "u", p2, Retry::Backoff);
        assert_eq!(b.attempts("u"), 1);
        b.succeeded("u");
        assert_eq!(b.attempts("u"), 0);
        assert_eq!(b.failed(&s, "u", P1, Retry::OnChange), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_early_pass_is_held_for_transient_retries_only_and_only_in_the_same_phase() {
        let (s, b) = (settings(), Backoffs::default());
        let delay = b.failed(&s, "u", P1, Retry::Backoff).expect("delay");
        let left = b.hold("u", P1).expect("held");
        assert!(left <= delay && !left.is_zero());
        // A new generation or a deletion is not held.
        let p2 = Phase {
            generation: Some(2),
            ..P1
        };
        let deleting = Phase {
            deleting: true,
            ..P1
        };
        assert_eq!(b.hold("u", p2), None);
        assert_eq!(b.hold("u", deleting), None);
        // Cleanup is never held.
        b.failed(&s, "d", deleting, Retry::Backoff);
        assert_eq!(b.hold("d", deleting), None);
        // Once the deadline passed, nothing holds.
        tokio::time::advance(delay).await;
        assert_eq!(b.hold("u", P1), None);

        b.failed(&s, "u", P1, Retry::Soon);
        assert!(b.hold("u", P1).is_some());
        // A problem that needs a person is retried on any wake.
        b.failed(&s, "u", P1, Retry::Slow);
        assert_eq!(b.hold("u", P1), None);
        b.failed(&s, "v", P1, Retry::Backoff);
        b.succeeded("v");
        assert_eq!(b.hold("v", P1), None);
    }

    #[tokio::test(start_paused = true)]
    async fn trust_writes_count_within_the_window_and_forget_drops_everything() {
        let (s, b) = (settings(), Backoffs::default());
        let window = Duration::from_secs(120);
        assert!(!b.trust_written_within("u", window));
        b.wrote_trust("u");
        assert!(b.trust_written_within("u", window));
        tokio::time::advance(window).await;
        assert!(!b.trust_written_within("u", window));
        assert_eq!(b.tracked(), 0);

        let deleting = Phase {
            deleting: true,
            ..P1
        };
        b.failed(&s, "d", deleting, Retry::Slow);
        b.wrote_trust("d");
        b.failed(&s, "e", P1, Retry::Backoff);
        assert_eq!(b.tracked(), 2);
        b.forget("d");
        assert_eq!(b.attempts("d"), 0);
        assert!(!b.trust_written_within("d", window));
        assert_eq!(b.tracked(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_left_past_its_time_and_the_grace_is_overdue() {
        let (s, b) = (settings(), Backoffs::default());
        let grace = Duration::from_secs(10);
        let delay = b.failed(&s, "u", P1, Retry::Slow).expect("delay");
        assert!(b.overdue(Instant::now(), grace).is_empty());
        tokio::time::advance(delay + grace).await;
        assert!(b.overdue(Instant::now(), grace).is_empty());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.overdue(Instant::now(), grace), ["u"]);
        // The retry that runs records the next one, or forgets the binding.
        b.failed(&s, "u", P1, Retry::Slow);
        assert!(b.overdue(Instant::now(), grace).is_empty());
        tokio::time::advance(Duration::from_secs(3600)).await;
        b.succeeded("u");
        assert!(b.overdue(Instant::now(), grace).is_empty());
    }
}
