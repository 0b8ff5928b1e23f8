//! Fault injection and write counters, for tests.
//!
//! Resources are named as the real server names them in messages: `configmaps`,
//! `leases.coordination.k8s.io`, `podidentitybindings.podidentity.dev`; a status write
//! counts under the name with `/status` appended.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::failure::Failure;

/// The write verbs the server counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

#[derive(Default)]
struct FaultState {
    /// resource -> (writes left to fail, status code)
    failing: BTreeMap<String, (u32, u16)>,
    delay: Duration,
}

/// The server's injected faults; get it with `KubeSim::faults`.
pub struct Faults {
    state: Mutex<FaultState>,
    drops: tokio::sync::watch::Sender<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            drops: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        // a panic while holding this lock leaves plain data behind; keep using it
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` writes (create, update, patch, delete) to `resource` fail with `code`
    /// and change nothing.
    pub fn fail_next_writes(&self, resource: &str, n: u32, code: u16) {
        self.state().failing.insert(resource.to_owned(), (n, code));
    }

    /// Ends every open watch now (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// Every response waits this long before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Removes every pending failure and the delay.
    pub fn clear(&self) {
        let mut s = self.state();
        s.failing.clear();
        s.delay = Duration::ZERO;
    }

    pub(crate) fn delay(&self) -> Duration {
        self.state().delay
    }

    pub(crate) fn drops(&self) -> tokio::sync::watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Consumes one injected failure for a write to `resource`, if one is pending.
    pub(crate) fn take_write_failure(&self, resource: &str) -> Option<Failure> {
        let mut s = self.state();
        let (left, code) = s.failing.get_mut(resource)?;
        let code = *code;
        *left -= 1;
        if *left == 0 {
            s.failing.remove(resource);
        }
        Some(Failure::injected(
            code,
            &format!("injected failure for a write to {resource}"),
        ))
    }
}

/// Counts of write requests by resource and verb.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteCounts(BTreeMap<(String, Verb), u64>);

impl WriteCounts {
    pub fn get(&self, resource: &str, verb: Verb) -> u64 {
        self.0
            .get(&(resource.to_owned(), verb))
            .copied()
            .unwrap_or(0)
    }

    /// All writes to `resource` (its `/status` excluded).
    pub fn for_resource(&self, resource: &str) -> u64 {
        self.0
            .iter()
            .filter(|((r, _), _)| r == resource)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, Verb, u64)> {
        self.0.iter().map(|((r, v), n)| (r.as_str(), *v, *n))
    }
}

/// The live counters behind [`WriteCounts`] snapshots.
#[derive(Default)]
pub(crate) struct WriteCounters(Mutex<WriteCounts>);

impl WriteCounters {
    pub fn record(&self, resource: &str, verb: Verb) {
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *c.0.entry((resource.to_owned(), verb)).or_default() += 1;
    }

    pub fn snapshot(&self) -> WriteCounts {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = WriteCounts::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_consumed_one_write_at_a_time() {
        let f = Faults::default();
        f.fail_next_writes("configmaps", 2, 500);
        assert_eq!(f.take_write_failure("configmaps").unwrap().code, 500);
        assert!(f.take_write_failure("leases.coordination.k8s.io").is_none());
        assert!(f.take_write_failure("configmaps").is_some());
        assert!(f.take_write_failure("configmaps").is_none());
    }

    #[test]
    fn counters_add_up() {
        let c = WriteCounters::default();
        c.record("configmaps", Verb::Create);
        c.record("configmaps", Verb::Patch);
        c.record("pods/status", Verb::Patch);
        let s = c.snapshot();
        assert_eq!(s.get("configmaps", Verb::Patch), 1);
        assert_eq!(s.for_resource("configmaps"), 2);
        assert_eq!(s.total(), 3);
        c.reset();
        assert_eq!(c.snapshot().total(), 0);
    }
}
