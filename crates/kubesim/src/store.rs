//! The generic object store: one map per resource, one global resourceVersion, reads
//! (get, list with pages, the start of a watch), and the commit of changes into the watch
//! history. The write rules live in `writes.rs` (create, update, patch, apply) and
//! `gc.rs` (delete, finalizers, propagation, garbage collection).
//!
//! All state sits behind one mutex, so each request is one atomic transaction and events
//! leave in resourceVersion order. Objects are kept as JSON in their storage version.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::crd;
use super::failure::Failure;
use super::meta::{FieldSelector, LabelSelector};
use super::resources::{GroupResource, Registry, ResourceDef};

/// namespace ("" when cluster-scoped), name
pub type ObjKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, in storage form, with the object as it was before (for selector moves).
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub gr: GroupResource,
    pub kind: EventType,
    pub object: Value,
    pub prev: Option<Value>,
}

/// The object a write addresses: its resource, the version the client used, namespace,
/// name, and subresource (`status`).
#[derive(Clone, Copy)]
pub struct Addr<'a> {
    pub def: &'a ResourceDef,
    pub version: &'a str,
    pub ns: Option<&'a str>,
    pub name: &'a str,
    pub sub: Option<&'a str>,
}

/// How a patch body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// Options every write carries.
#[derive(Clone, Debug, Default)]
pub struct WriteOpts {
    pub field_manager: Option<String>,
    pub force: bool,
    pub dry_run: bool,
    /// `fieldValidation=Strict`: unknown fields are an error rather than pruned.
    pub strict: bool,
    /// The write is the last step of a server-side apply, whose field ownership is
    /// already recorded (set by the store itself).
    pub applying: bool,
    /// The rules of the resource the request named (for a view such as events.k8s.io,
    /// not those of its storage).
    pub checks: Option<super::resources::Checks>,
}

impl WriteOpts {
    pub(super) fn manager(&self) -> &str {
        self.field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or("unknown")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub propagation: Propagation,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// What a DELETE did.
pub enum Deleted {
    /// Finalizers (or namespace content) hold the object; it now has a deletionTimestamp.
    Pending(Value),
    /// The object is gone; this was its last state.
    Removed(Value),
}

/// A page of a list.
pub struct Page {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    /// Objects after this page, when the list has no selectors (as the real server
    /// counts them).
    pub remaining: Option<usize>,
}

/// Where a watch begins.
pub struct WatchStart {
    /// Current objects to send as ADDED first (watch without resourceVersion).
    pub initial: Vec<Value>,
    /// Retained events after the requested resourceVersion.
    pub backlog: Vec<Arc<Event>>,
    pub rx: broadcast::Receiver<Arc<Event>>,
    pub resource_version: u64,
}

pub struct State {
    pub(super) rv: u64,
    pub registry: Registry,
    pub(super) objects: HashMap<GroupResource, BTreeMap<ObjKey, Value>>,
    pub(super) by_uid: HashMap<String, (GroupResource, ObjKey)>,
    /// owner uid -> dependents
    pub(super) dependents: HashMap<String, BTreeSet<(GroupResource, ObjKey)>>,
    pub(super) history: VecDeque<Arc<Event>>,
    pub(super) history_limit: usize,
    /// Events at or below this resourceVersion are no longer retained.
    pub(super) compacted: u64,
    pub(super) tx: broadcast::Sender<Arc<Event>>,
}

pub struct Store {
    state: Mutex<State>,
}

/// The finalizer that holds an owner during foreground deletion.
pub(super) const FOREGROUND: &str = "foregroundDeletion";

pub(super) fn ns_gr() -> GroupResource {
    GroupResource::new("", "namespaces")
}

pub(super) fn crd_gr() -> GroupResource {
    GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions")
}

pub(super) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub(super) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    // just ensured metadata is an object
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

pub(super) fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The part of an object whose change bumps `metadata.generation`.
pub(super) fn generation_part(obj: &Value, status_subresource: bool) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if status_subresource {
            m.remove("status");
        }
    }
    v
}

/// The object without what changes on every write (for no-op detection).
pub(super) fn comparable(obj: &Value) -> Value {
    let mut v = obj.clone();
    let meta = meta_mut(&mut v);
    meta.remove("resourceVersion");
    if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
        for e in entries {
            if let Some(e) = e.as_object_mut() {
                e.remove("time");
            }
        }
    }
    v
}

pub(super) fn is_namespace(def: &ResourceDef) -> bool {
    def.group_resource() == ns_gr()
}

pub(super) fn is_crd(def: &ResourceDef) -> bool {
    def.group_resource() == crd_gr()
}

fn encode_token(rv: u64, key: &ObjKey) -> String {
    json!([rv, key.0, key.1])
        .to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_token(token: &str) -> Option<(u64, ObjKey)> {
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let v: Value = serde_json::from_slice(&bytes?).ok()?;
    Some((
        v.get(0)?.as_u64()?,
        (
            v.get(1)?.as_str()?.to_owned(),
            v.get(2)?.as_str()?.to_owned(),
        ),
    ))
}

impl Store {
    /// A store keeping `history_limit` events for resumed watches, whose watchers may fall
    /// `watch_buffer` events behind before they get 410.
    pub fn new(history_limit: usize, watch_buffer: usize) -> Self {
        let (tx, _) = broadcast::channel(watch_buffer.max(1));
        let state = State {
            rv: 0,
            registry: Registry::default(),
            objects: HashMap::new(),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            tx,
        };
        let store = Self {
            state: Mutex::new(state),
        };
        {
            let mut s = store.lock();
            let def = s.registry.get(&ns_gr());
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                if let Some(def) = &def {
                    // built-in names on an empty store cannot be refused
                    let _ = s.create(def, "v1", None, body, &WriteOpts::default());
                }
            }
        }
        store
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // every transaction leaves the state consistent before it can panic; keep going
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl State {
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Forgets the whole watch history: any watch from an older resourceVersion gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub(super) fn map(&self, gr: &GroupResource) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(gr)
    }

    pub(super) fn key(def: &ResourceDef, ns: Option<&str>, name: &str) -> ObjKey {
        let ns = if def.namespaced { ns.unwrap_or("") } else { "" };
        (ns.to_owned(), name.to_owned())
    }

    pub fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Result<Value, Failure> {
        let gr = def.group_resource();
        self.map(&gr)
            .and_then(|m| m.get(&Self::key(def, ns, name)))
            .cloned()
            .ok_or_else(|| Failure::not_found(&gr, name))
    }

    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<Page, Failure> {
        let (rv, after) = match continue_token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, key) = decode_token(t)
                    .ok_or_else(|| Failure::bad_request("continue key is not valid"))?;
                (rv, Some(key))
            }
            None => (self.rv, None),
        };
        let mut items = Vec::new();
        let mut next = None;
        let mut remaining = 0;
        if let Some(map) = self.map(&def.group_resource()) {
            // keys sort by namespace, then name: a namespace, and what follows a
            // continue key, are ranges of the map
            let ns = ns.filter(|_| def.namespaced);
            let from = match (&after, ns) {
                (Some(a), Some(ns)) if a.0.as_str() >= ns => Bound::Excluded(a.clone()),
                (Some(a), None) => Bound::Excluded(a.clone()),
                (_, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
                (None, None) => Bound::Unbounded,
            };
            let scoped = map
                .range((from, Bound::Unbounded))
                .take_while(|((ons, _), _)| ns.is_none_or(|ns| ons == ns));
            for obj in scoped.map(|(_, obj)| obj) {
                if !labels.matches(obj) || !fields.matches(obj) {
                    continue;
                }
                if next.is_some() {
                    remaining += 1;
                } else if limit.is_some_and(|l| l > 0 && items.len() == l) {
                    next = Some(encode_token(rv, &items_last_key(&items)));
                    remaining = 1;
                } else {
                    items.push(obj.clone());
                }
            }
        }
        let unfiltered = labels.is_empty() && fields.is_empty();
        Ok(Page {
            items,
            resource_version: rv,
            remaining: (next.is_some() && unfiltered).then_some(remaining),
            continue_token: next,
        })
    }

    pub fn watch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        from: Option<u64>,
    ) -> Result<WatchStart, Failure> {
        let gr = def.group_resource();
        let rx = self.tx.subscribe();
        match from {
            Some(rv) if rv < self.compacted => Err(Failure::gone(format!(
                "too old resource version: {rv} ({})",
                self.compacted
            ))),
            Some(rv) => Ok(WatchStart {
                initial: Vec::new(),
                backlog: self
                    .history
                    .iter()
                    .filter(|e| e.rv > rv && e.gr == gr)
                    .cloned()
                    .collect(),
                rx,
                // every change up to now is either in the backlog or not for this watch
                resource_version: self.rv,
            }),
            None => {
                let initial = self
                    .map(&gr)
                    .map(|m| match ns.filter(|_| def.namespaced) {
                        Some(n) => in_namespace(m, n).map(|(_, o)| o.clone()).collect(),
                        None => m.values().cloned().collect(),
                    })
                    .unwrap_or_default();
                Ok(WatchStart {
                    initial,
                    backlog: Vec::new(),
                    rx,
                    resource_version: self.rv,
                })
            }
        }
    }

    // ---- committing -------------------------------------------------------------------

    pub(super) fn emit(
        &mut self,
        gr: GroupResource,
        kind: EventType,
        object: Value,
        prev: Option<Value>,
    ) {
        let event = Arc::new(Event {
            rv: self.rv,
            gr,
            kind,
            object,
            prev,
        });
        self.history.push_back(event.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        // no receivers is fine
        let _ = self.tx.send(event);
    }

    pub(super) fn index(
        &mut self,
        gr: &GroupResource,
        key: &ObjKey,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let entry = (gr.clone(), key.clone());
        if let Some(old) = old {
            for uid in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&uid) {
                    set.remove(&entry);
                    if set.is_empty() {
                        self.dependents.remove(&uid);
                    }
                }
            }
            if let Some(uid) = meta_str(old, "uid") {
                self.by_uid.remove(uid);
            }
        }
        if let Some(new) = new {
            for uid in owner_uids(new) {
                self.dependents
                    .entry(uid)
                    .or_default()
                    .insert(entry.clone());
            }
            if let Some(uid) = meta_str(new, "uid") {
                self.by_uid.insert(uid.to_owned(), entry.clone());
            }
        }
    }

    /// Stores `obj` under a new resourceVersion and announces it.
    pub(super) fn put(
        &mut self,
        gr: &GroupResource,
        key: &ObjKey,
        mut obj: Value,
        prev: Option<Value>,
    ) -> Value {
        self.rv += 1;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.index(gr, key, prev.as_ref(), Some(&obj));
        self.objects
            .entry(gr.clone())
            .or_default()
            .insert(key.clone(), obj.clone());
        let kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let owners = owner_uids(&obj);
        let owners_changed = prev.as_ref().map(owner_uids).unwrap_or_default() != owners;
        self.emit(gr.clone(), kind, obj.clone(), prev);
        if owners_changed && !owners.is_empty() {
            self.collect_if_dangling(gr, key);
        }
        obj
    }

    /// Removes an object (its last state is `last`), then runs what its removal triggers:
    /// garbage collection of dependents, the end of a terminating namespace or CRD.
    pub(super) fn remove(&mut self, gr: &GroupResource, key: &ObjKey, mut last: Value) -> Value {
        let prev = self.objects.get_mut(gr).and_then(|m| m.remove(key));
        self.index(gr, key, prev.as_ref(), None);
        self.rv += 1;
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.rv.to_string()));
        self.emit(gr.clone(), EventType::Deleted, last.clone(), prev);

        if let Some(uid) = meta_str(&last, "uid").map(str::to_owned) {
            self.collect_dependents(&uid);
            self.dependents.remove(&uid);
        }
        for owner in owner_uids(&last) {
            self.finish_foreground(&owner);
        }
        if *gr == crd_gr() {
            if let Ok(def) = crd::resource_def(&last) {
                self.registry.remove(&def.group_resource());
                self.objects.remove(&def.group_resource());
            }
        } else if !key.0.is_empty() {
            self.finish_namespace(&key.0);
        }
        if let Some(crd_name) = self.crd_of(gr) {
            self.finish_crd(&crd_name);
        }
        last
    }

    pub(super) fn crd_of(&self, gr: &GroupResource) -> Option<String> {
        self.registry
            .get(gr)
            .filter(|d| d.custom)
            .map(|_| format!("{}.{}", gr.resource, gr.group))
    }
}

fn items_last_key(items: &[Value]) -> ObjKey {
    items
        .last()
        .map(|o| {
            (
                meta_str(o, "namespace").unwrap_or_default().to_owned(),
                meta_str(o, "name").unwrap_or_default().to_owned(),
            )
        })
        .unwrap_or_default()
}

/// The objects of one namespace in a resource's map (keys sort by namespace first).
pub(super) fn in_namespace<'a>(
    map: &'a BTreeMap<ObjKey, Value>,
    ns: &'a str,
) -> impl Iterator<Item = (&'a ObjKey, &'a Value)> + 'a {
    map.range((ns.to_owned(), String::new())..)
        .take_while(move |((ons, _), _)| ons == ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    fn setup() -> (Store, Arc<ResourceDef>) {
        let store = Store::new(100, 1024);
        let def = store
            .lock()
            .registry
            .get(&GroupResource::new("", "configmaps"))
            .unwrap();
        (store, def)
    }

    #[test]
    fn rejected_writes_change_nothing() {
        let (store, def) = setup();
        let mut s = store.lock();
        let rv = s.resource_version();
        let opts = WriteOpts::default();
        assert_eq!(
            s.create(&def, "v1", Some("nope"), cm("a"), &opts)
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            s.create(&def, "v1", Some("default"), cm("Bad_Name"), &opts)
                .unwrap_err()
                .code,
            422
        );
        assert_eq!(
            s.create(&def, "v1", Some("default"), json!([1]), &opts)
                .unwrap_err()
                .code,
            400
        );
        assert_eq!(s.resource_version(), rv);
        s.create(&def, "v1", Some("default"), cm("a"), &opts)
            .unwrap();
        let rv = s.resource_version();
        let root = json!([{"op": "replace", "path": "", "value": [1]}]);
        let at = Addr {
            def: &def,
            version: "v1",
            ns: Some("default"),
            name: "a",
            sub: None,
        };
        let err = s.patch(at, PatchKind::Json, &root, &opts).unwrap_err();
        assert_eq!(err.code, 422);
        let not_object = s.update(at, json!("x"), &opts, false);
        assert_eq!(not_object.unwrap_err().code, 400);
        assert_eq!(s.resource_version(), rv);
        assert_eq!(
            s.create(&def, "v1", Some("default"), cm("a"), &opts)
                .unwrap_err()
                .reason,
            "AlreadyExists"
        );
    }

    #[test]
    fn list_pages_with_continue_tokens() {
        let (store, def) = setup();
        let mut s = store.lock();
        for i in 0..5 {
            s.create(
                &def,
                "v1",
                Some("default"),
                cm(&format!("c{i}")),
                &WriteOpts::default(),
            )
            .unwrap();
        }
        let all = LabelSelector::default();
        let any = FieldSelector::default();
        let p1 = s
            .list(&def, Some("default"), &all, &any, Some(2), None)
            .unwrap();
        assert_eq!(p1.items.len(), 2);
        let p2 = s
            .list(
                &def,
                Some("default"),
                &all,
                &any,
                Some(2),
                p1.continue_token.as_deref(),
            )
            .unwrap();
        let p3 = s
            .list(
                &def,
                Some("default"),
                &all,
                &any,
                Some(2),
                p2.continue_token.as_deref(),
            )
            .unwrap();
        assert_eq!(p3.items.len(), 1);
        assert!(p3.continue_token.is_none());
        assert_eq!(p1.resource_version, p3.resource_version);
        assert_eq!(meta_str(&p3.items[0], "name"), Some("c4"));
    }

    #[test]
    fn history_limit_compacts_old_versions() {
        let (store, def) = setup();
        let mut s = store.lock();
        for i in 0..150 {
            s.create(
                &def,
                "v1",
                Some("default"),
                cm(&format!("c{i}")),
                &WriteOpts::default(),
            )
            .unwrap();
        }
        assert_eq!(s.watch(&def, None, Some(1)).err().unwrap().code, 410);
        let now = s.resource_version();
        assert!(s.watch(&def, None, Some(now - 10)).unwrap().backlog.len() == 10);
    }
}
