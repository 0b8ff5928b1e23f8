//! Which bindings name which ServiceAccount, kept from the controller's watch of
//! bindings: the ServiceAccount of the spec and the one the status says the binding
//! had.
//!
//! Bindings naming the same ServiceAccount compete for it (the older one wins, see
//! [`observe`](super::observe)), so a change of one can change what the others must
//! do. The index answers the two questions that follow without scanning every binding:
//! which bindings name a ServiceAccount (a pass's competitors; the bindings a
//! ServiceAccount's event wakes), and which bindings to wake when one changes in a way
//! that matters to its competitors: what it names, whether it is being deleted, its
//! generation, or whether it is `Ready`. Its status writes that change none of these
//! (most of them) wake nobody. Both questions cost in proportion to the bindings of
//! one ServiceAccount, not of the cluster.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use kube::Resource;

use super::typed::CachedBinding;

/// A binding, by namespace and name.
pub type BindingKey = (String, String);

/// What the competitors of a binding react to.
#[derive(Clone, Debug, PartialEq)]
struct Summary {
    uid: String,
    service_accounts: BTreeSet<String>,
    deleting: bool,
    generation: Option<i64>,
    ready: Option<String>,
}

impl Summary {
    fn of(obj: &CachedBinding) -> Summary {
        let mut service_accounts = BTreeSet::from([obj.service_account_name()]);
        service_accounts.extend(obj.previous_service_account());
        let meta = obj.meta();
        Summary {
            uid: meta.uid.clone().unwrap_or_default(),
            service_accounts,
            deleting: meta.deletion_timestamp.is_some(),
            generation: meta.generation,
            ready: obj.ready().map(|(status, _)| status.to_owned()),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    bindings: HashMap<BindingKey, Summary>,
    /// (namespace, ServiceAccount) → the names of the bindings naming it.
    naming: HashMap<BindingKey, BTreeSet<String>>,
    /// The bindings seen since a relisting began; `None` outside one.
    relisted: Option<HashSet<BindingKey>>,
}

impl Inner {
    fn unlink(&mut self, key: &BindingKey, summary: &Summary) {
        for sa in &summary.service_accounts {
            let at = (key.0.clone(), sa.clone());
            if let Some(names) = self.naming.get_mut(&at) {
                names.remove(&key.1);
                if names.is_empty() {
                    self.naming.remove(&at);
                }
            }
        }
    }

    /// The other bindings naming any of `service_accounts` in `namespace`, with their
    /// UIDs.
    fn others(
        &self,
        key: &BindingKey,
        service_accounts: &BTreeSet<String>,
    ) -> Vec<(BindingKey, String)> {
        let mut out: Vec<(BindingKey, String)> = Vec::new();
        for sa in service_accounts {
            let Some(names) = self.naming.get(&(key.0.clone(), sa.clone())) else {
                continue;
            };
            for name in names.iter().filter(|n| **n != key.1) {
                let other = (key.0.clone(), name.clone());
                if out.iter().any(|(k, _)| *k == other) {
                    continue;
                }
                let uid = self
                    .bindings
                    .get(&other)
                    .map(|s| s.uid.clone())
                    .unwrap_or_default();
                out.push((other, uid));
            }
        }
        out
    }

    fn remove(&mut self, key: &BindingKey) -> Vec<(BindingKey, String)> {
        match self.bindings.remove(key) {
            Some(old) => {
                self.unlink(key, &old);
                self.others(key, &old.service_accounts)
            }
            None => Vec::new(),
        }
    }
}

/// Which bindings name which ServiceAccount.
#[derive(Debug, Default)]
pub struct ServiceAccountIndex {
    inner: Mutex<Inner>,
}

fn key_of(obj: &CachedBinding) -> BindingKey {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

impl ServiceAccountIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps hold plain values; a panic while holding them leaves them usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The binding as the watch sees it now. Returns the other bindings to look at
    /// again, with their UIDs: those naming a ServiceAccount it names or named, when
    /// what they react to changed (a new binding included).
    pub fn applied(&self, obj: &CachedBinding) -> Vec<(BindingKey, String)> {
        let key = key_of(obj);
        let now = Summary::of(obj);
        let mut inner = self.lock();
        if let Some(seen) = inner.relisted.as_mut() {
            seen.insert(key.clone());
        }
        if inner.bindings.get(&key) == Some(&now) {
            return Vec::new();
        }
        let mut names = now.service_accounts.clone();
        if let Some(old) = inner.bindings.remove(&key) {
            inner.unlink(&key, &old);
            names.extend(old.service_accounts);
        }
        for sa in &now.service_accounts {
            inner
                .naming
                .entry((key.0.clone(), sa.clone()))
                .or_default()
                .insert(key.1.clone());
        }
        inner.bindings.insert(key.clone(), now);
        inner.others(&key, &names)
    }

    /// The binding is gone; returns the other bindings that named its ServiceAccounts.
    pub fn deleted(&self, obj: &CachedBinding) -> Vec<(BindingKey, String)> {
        self.lock().remove(&key_of(obj))
    }

    /// A relisting of every binding begins (the watch's first, or after it lost track).
    pub fn relist_started(&self) {
        self.lock().relisted = Some(HashSet::new());
    }

    /// The relisting is complete: bindings it did not list are gone. Returns the
    /// bindings that named their ServiceAccounts.
    pub fn relist_done(&self) -> Vec<(BindingKey, String)> {
        let mut inner = self.lock();
        let Some(seen) = inner.relisted.take() else {
            return Vec::new();
        };
        let gone: Vec<BindingKey> = inner
            .bindings
            .keys()
            .filter(|k| !seen.contains(*k))
            .cloned()
            .collect();
        let mut woken = Vec::new();
        for key in gone {
            for other in inner.remove(&key) {
                if !woken.contains(&other) {
                    woken.push(other);
                }
            }
        }
        woken
    }

    /// The names of the bindings of `namespace` that name `service_account` (in their
    /// spec, or as the one they had).
    pub fn naming(&self, namespace: &str, service_account: &str) -> Vec<String> {
        self.lock()
            .naming
            .get(&(namespace.to_owned(), service_account.to_owned()))
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(name: &str, sa: &str, ready: &str) -> serde_json::Value {
        json!({
            "apiVersion": "podidentity.dev/v1alpha1",
            "kind": "PodIdentityBinding",
            "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}"),
                         "generation": 1},
            "spec": {"serviceAccount": {"name": sa}},
            "status": {"conditions": [{"type": "Ready", "status": ready, "reason": "Reconciled",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        })
    }

    fn cached(object: serde_json::Value) -> CachedBinding {
        let cached: CachedBinding = serde_json::from_value(object).expect("binding");
        assert!(matches!(cached, CachedBinding::Typed(_)), "{cached:?}");
        cached
    }

    fn binding(name: &str, sa: &str, ready: &str) -> CachedBinding {
        cached(object(name, sa, ready))
    }

    fn names(woken: Vec<(BindingKey, String)>) -> Vec<String> {
        woken.into_iter().map(|((_, n), _)| n).collect()
    }

    #[test]
    fn a_change_competitors_react_to_wakes_them_and_a_status_write_alone_does_not() {
        let index = ServiceAccountIndex::default();
        assert!(index.applied(&binding("a", "app", "False")).is_empty());
        assert_eq!(names(index.applied(&binding("b", "app", "False"))), ["a"]);
        assert!(index.applied(&binding("c", "other", "False")).is_empty());
        // The same summary again: a status write that changed nothing they react to.
        assert!(index.applied(&binding("a", "app", "False")).is_empty());
        // Ready now: the competitor is looked at again, with its UID.
        assert_eq!(
            index.applied(&binding("a", "app", "True")),
            vec![(("team".into(), "b".into()), "uid-b".into())]
        );
        assert_eq!(index.naming("team", "app"), ["a", "b"]);
        // Moving to another ServiceAccount wakes the bindings of both.
        assert_eq!(
            names(index.applied(&binding("b", "other", "False"))),
            ["a", "c"]
        );
        assert_eq!(index.naming("team", "app"), ["a"]);
        assert_eq!(names(index.deleted(&binding("c", "other", "False"))), ["b"]);
        assert_eq!(index.naming("team", "other"), ["b"]);
    }

    #[test]
    fn the_service_account_a_status_says_the_binding_had_counts_as_named() {
        let index = ServiceAccountIndex::default();
        let mut moved = object("a", "new", "True");
        moved["status"]["serviceAccount"] = json!({"name": "old", "created": false});
        let moved = cached(moved);
        index.applied(&binding("b", "old", "False"));
        assert_eq!(names(index.applied(&moved)), ["b"]);
        assert_eq!(index.naming("team", "old"), ["a", "b"]);
        // The status no longer names it: its competitor there is woken, once.
        assert_eq!(names(index.applied(&binding("a", "new", "True"))), ["b"]);
        assert_eq!(index.naming("team", "old"), ["b"]);
    }

    #[test]
    fn a_relisting_forgets_the_bindings_it_did_not_list() {
        let index = ServiceAccountIndex::default();
        index.applied(&binding("a", "app", "True"));
        index.applied(&binding("b", "app", "True"));
        index.relist_started();
        assert!(index.applied(&binding("b", "app", "True")).is_empty());
        assert_eq!(names(index.relist_done()), ["b"]);
        assert_eq!(index.naming("team", "app"), ["b"]);
        assert!(index.relist_done().is_empty(), "nothing relisting");
    }
}
