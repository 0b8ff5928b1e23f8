//! A net under the requeues. Every binding is due again at its resync or its retry,
//! and kube-runtime's scheduler carries that requeue; should one never fire, the
//! binding would wait for its next change, and AWS drift would stay unrepaired. Every
//! [`period`], the sweep wakes the cached bindings whose resync ([`confirmed`]) or
//! retry ([`backoff`]) is more than a period past due.
//!
//! A binding the scheduler still holds is not run twice: a wake of a binding already
//! queued or running merges into that run.
//!
//! [`confirmed`]: super::confirmed
//! [`backoff`]: super::backoff

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::time::Instant;

use super::backoff::Backoffs;
use super::confirmed::Confirmed;
use super::typed::CachedBinding;

/// How often the sweep runs, and how late a binding is before it is woken.
pub fn period(resync: Duration) -> Duration {
    (resync / 16).clamp(Duration::from_secs(5), Duration::from_secs(30))
}

/// The bindings among `cached` whose uid is in `late`.
pub fn to_wake(
    cached: &[Arc<CachedBinding>],
    late: &HashSet<String>,
) -> Vec<ObjectRef<CachedBinding>> {
    cached
        .iter()
        .filter(|b| b.uid().is_some_and(|uid| late.contains(&uid)))
        .map(|b| ObjectRef::new(&b.name_any()).within(&b.namespace().unwrap_or_default()))
        .collect()
}

/// The uids of the bindings whose resync or retry is more than `grace` past due at
/// `now`.
pub fn late_uids(
    confirmed: &Confirmed,
    backoffs: &Backoffs,
    now: Instant,
    grace: Duration,
) -> HashSet<String> {
    let mut late: HashSet<String> = confirmed.overdue(now, grace).into_iter().collect();
    late.extend(backoffs.overdue(now, grace));
    late
}

/// The wakes of the bindings of `store` that `late` names, one sweep every `every`;
/// `counted` hears how many each sweep found.
pub fn sweeps(
    every: Duration,
    late: impl Fn(Instant) -> HashSet<String> + Send + 'static,
    store: Store<CachedBinding>,
    counted: impl Fn(usize) + Send + 'static,
) -> impl Stream<Item = ObjectRef<CachedBinding>> + Send + 'static {
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures::stream::unfold(ticks, |mut ticks| async move {
        ticks.tick().await;
        Some(((), ticks))
    })
    .flat_map(move |()| {
        let wake = to_wake(&store.state(), &late(Instant::now()));
        counted(wake.len());
        if !wake.is_empty() {
            tracing::info!(
                count = wake.len(),
                "bindings past their resync or retry time; waking them"
            );
            for b in &wake {
                tracing::debug!(binding = %b, "past its resync or retry time");
            }
        }
        futures::stream::iter(wake)
    })
}

#[cfg(test)]
mod tests;
