//! The generic object store: one map per resource, one global resourceVersion, the watch
//! history, and every write rule (admission, concurrency, finalizers, cascades).
//!
//! All state sits behind one mutex, so each request is one atomic transaction and events
//! leave in resourceVersion order. Objects are kept as JSON in their storage version.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::apply;
use super::crd;
use super::failure::{Cause, Failure};
use super::meta::{FieldSelector, LabelSelector, check_labels, check_name, generate_name, now};
use super::patch;
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
}

impl WriteOpts {
    fn manager(&self) -> &str {
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
    rv: u64,
    pub registry: Registry,
    objects: HashMap<GroupResource, BTreeMap<ObjKey, Value>>,
    by_uid: HashMap<String, (GroupResource, ObjKey)>,
    /// owner uid -> dependents
    dependents: HashMap<String, BTreeSet<(GroupResource, ObjKey)>>,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Events at or below this resourceVersion are no longer retained.
    compacted: u64,
    tx: broadcast::Sender<Arc<Event>>,
}

pub struct Store {
    state: Mutex<State>,
}

/// The finalizer that holds an owner during foreground deletion.
const FOREGROUND: &str = "foregroundDeletion";

fn ns_gr() -> GroupResource {
    GroupResource::new("", "namespaces")
}

fn crd_gr() -> GroupResource {
    GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions")
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
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

fn finalizers(obj: &Value) -> Vec<String> {
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

fn owner_uids(obj: &Value) -> Vec<String> {
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
fn generation_part(obj: &Value, status_subresource: bool) -> Value {
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
fn comparable(obj: &Value) -> Value {
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

fn is_namespace(def: &ResourceDef) -> bool {
    def.group_resource() == ns_gr()
}

fn is_crd(def: &ResourceDef) -> bool {
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
    pub fn new(history_limit: usize) -> Self {
        let (tx, _) = broadcast::channel(history_limit.max(1024));
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

    fn map(&self, gr: &GroupResource) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(gr)
    }

    fn key(def: &ResourceDef, ns: Option<&str>, name: &str) -> ObjKey {
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
        if let Some(map) = self.map(&def.group_resource()) {
            let scoped = map.iter().filter(|((ons, _), _)| match ns {
                Some(ns) if def.namespaced => ons == ns,
                _ => true,
            });
            for (key, obj) in scoped {
                if after.as_ref().is_some_and(|a| key <= a) {
                    continue;
                }
                if !labels.matches(obj) || !fields.matches(obj) {
                    continue;
                }
                if limit.is_some_and(|l| l > 0 && items.len() == l) {
                    next = Some(encode_token(rv, &items_last_key(&items)));
                    break;
                }
                items.push(obj.clone());
            }
        }
        Ok(Page {
            items,
            resource_version: rv,
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
                    .map(|m| {
                        m.iter()
                            .filter(|((ons, _), _)| ns.is_none_or(|n| !def.namespaced || ons == n))
                            .map(|(_, o)| o.clone())
                            .collect()
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

    fn emit(&mut self, gr: GroupResource, kind: EventType, object: Value, prev: Option<Value>) {
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

    fn index(
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
    fn put(
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
        self.emit(gr.clone(), kind, obj.clone(), prev);
        obj
    }

    /// Removes an object (its last state is `last`), then runs what its removal triggers:
    /// garbage collection of dependents, the end of a terminating namespace or CRD.
    fn remove(&mut self, gr: &GroupResource, key: &ObjKey, mut last: Value) -> Value {
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

    fn crd_of(&self, gr: &GroupResource) -> Option<String> {
        self.registry
            .get(gr)
            .filter(|d| d.custom)
            .map(|_| format!("{}.{}", gr.resource, gr.group))
    }

    /// Background garbage collection: dependents whose owners are all gone are deleted.
    fn collect_dependents(&mut self, owner_uid: &str) {
        let Some(deps) = self.dependents.get(owner_uid).cloned() else {
            return;
        };
        for (gr, key) in deps {
            let Some(obj) = self.objects.get(&gr).and_then(|m| m.get(&key)).cloned() else {
                continue;
            };
            let other_owner_alive = owner_uids(&obj)
                .iter()
                .any(|u| u != owner_uid && self.by_uid.contains_key(u));
            if other_owner_alive || meta_str(&obj, "deletionTimestamp").is_some() {
                continue;
            }
            if let Some(def) = self.registry.get(&gr) {
                let _ = self.delete_object(&def, &key, obj, &DeleteOpts::default());
            }
        }
    }

    /// Ends the foreground deletion of `owner_uid` once no dependent blocks it.
    fn finish_foreground(&mut self, owner_uid: &str) {
        let Some((gr, key)) = self.by_uid.get(owner_uid).cloned() else {
            return;
        };
        let Some(owner) = self.objects.get(&gr).and_then(|m| m.get(&key)).cloned() else {
            return;
        };
        if !finalizers(&owner).iter().any(|f| f == FOREGROUND) {
            return;
        }
        let blocked = self.dependents.get(owner_uid).is_some_and(|deps| {
            deps.iter().any(|(dgr, dkey)| {
                self.objects
                    .get(dgr)
                    .and_then(|m| m.get(dkey))
                    .is_some_and(|d| {
                        d.pointer("/metadata/ownerReferences")
                            .and_then(Value::as_array)
                            .is_some_and(|refs| {
                                refs.iter().any(|r| {
                                    r.get("uid").and_then(Value::as_str) == Some(owner_uid)
                                        && r.get("blockOwnerDeletion") == Some(&Value::Bool(true))
                                })
                            })
                    })
            })
        });
        if blocked {
            return;
        }
        let mut done = owner.clone();
        if let Some(Value::Array(fs)) = done.pointer_mut("/metadata/finalizers") {
            fs.retain(|f| f.as_str() != Some(FOREGROUND));
        }
        if finalizers(&done).is_empty() {
            self.remove(&gr, &key, done);
        } else {
            self.put(&gr, &key, done, Some(owner));
        }
    }

    fn finish_namespace(&mut self, ns: &str) {
        let key = (String::new(), ns.to_owned());
        let Some(nsobj) = self
            .objects
            .get(&ns_gr())
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return;
        };
        if meta_str(&nsobj, "deletionTimestamp").is_none() || !finalizers(&nsobj).is_empty() {
            return;
        }
        let empty = self
            .objects
            .values()
            .all(|m| !m.keys().any(|(ons, _)| ons == ns));
        if empty {
            self.remove(&ns_gr(), &key, nsobj);
        }
    }

    fn finish_crd(&mut self, name: &str) {
        let key = (String::new(), name.to_owned());
        let Some(obj) = self
            .objects
            .get(&crd_gr())
            .and_then(|m| m.get(&key))
            .cloned()
        else {
            return;
        };
        if meta_str(&obj, "deletionTimestamp").is_none() || !finalizers(&obj).is_empty() {
            return;
        }
        let Ok(def) = crd::resource_def(&obj) else {
            self.remove(&crd_gr(), &key, obj);
            return;
        };
        if self
            .objects
            .get(&def.group_resource())
            .is_none_or(BTreeMap::is_empty)
        {
            self.remove(&crd_gr(), &key, obj);
        }
    }

    // ---- admission ----------------------------------------------------------------------

    fn check_namespace(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<(), Failure> {
        let nsobj = self
            .objects
            .get(&ns_gr())
            .and_then(|m| m.get(&(String::new(), ns.to_owned())))
            .ok_or_else(|| Failure::not_found(&ns_gr(), ns))?;
        if meta_str(nsobj, "deletionTimestamp").is_some() {
            return Err(Failure::forbidden(
                &def.group_resource(),
                name,
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    /// Schema, labels and kind-specific checks common to create and update.
    fn validate(
        &self,
        def: &ResourceDef,
        version: &str,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> Result<(), Failure> {
        let name = meta_str(obj, "name").unwrap_or_default().to_owned();
        let mut causes = check_labels(obj.get("metadata").unwrap_or(&Value::Null));
        if let Some(schema) = def.version(version).and_then(|v| v.schema.clone()) {
            match schema.admit(obj, old) {
                Ok(pruned) if opts.strict && !pruned.is_empty() => {
                    let listed: Vec<String> = pruned
                        .iter()
                        .map(|p| format!("unknown field \"{p}\""))
                        .collect();
                    return Err(Failure::bad_request(format!(
                        "{} in body: strict decoding error: {}",
                        def.kind,
                        listed.join(", ")
                    )));
                }
                Ok(_) => {}
                Err(schema_causes) => causes.extend(schema_causes),
            }
        }
        if is_crd(def) {
            if let Err(crd_causes) = crd::resource_def(obj) {
                causes.extend(crd_causes);
            } else if let Some(gr) = crd::resource_def(obj).ok().map(|d| d.group_resource()) {
                let clash = self.registry.get(&gr).is_some_and(|d| !d.custom);
                if clash {
                    causes.push(Cause::invalid(
                        "spec.names.plural",
                        &json!(gr.resource),
                        "is already served by a built-in resource",
                    ));
                }
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(Failure::invalid(def, &name, causes))
        }
    }

    /// Reads identity from a body and checks it against the URL.
    fn check_identity(
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        body: &Value,
    ) -> Result<(), Failure> {
        if !body.is_object() {
            return Err(Failure::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(kind) = body.get("kind").and_then(Value::as_str)
            && kind != def.kind
        {
            return Err(Failure::bad_request(format!(
                "the kind of the provided object ({kind}) does not match the kind of the resource ({})",
                def.kind
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
            && av != def.api_version(version)
            && def.versions.iter().all(|v| def.api_version(&v.name) != av)
        {
            return Err(Failure::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                def.api_version(version)
            )));
        }
        if let (true, Some(url_ns), Some(body_ns)) =
            (def.namespaced, ns, meta_str(body, "namespace"))
            && !body_ns.is_empty()
            && body_ns != url_ns
        {
            return Err(Failure::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        Ok(())
    }

    // ---- writes -------------------------------------------------------------------------

    pub fn create(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        mut body: Value,
        opts: &WriteOpts,
    ) -> Result<Value, Failure> {
        Self::check_identity(def, version, ns, &body)?;
        let gr = def.group_resource();
        let mut name = meta_str(&body, "name").unwrap_or_default().to_owned();
        if name.is_empty() {
            match meta_str(&body, "generateName") {
                Some(prefix) if !prefix.is_empty() => name = generate_name(prefix),
                _ => {
                    return Err(Failure::invalid(
                        def,
                        "",
                        vec![
                            Cause::required("metadata.name")
                                .with_message("Required value: name or generateName is required"),
                        ],
                    ));
                }
            }
        }
        let causes = check_name(def.name_rule, &name, "metadata.name");
        if !causes.is_empty() {
            return Err(Failure::invalid(def, &name, causes));
        }
        let ns = if def.namespaced {
            let ns = ns
                .or_else(|| meta_str(&body, "namespace"))
                .unwrap_or("default")
                .to_owned();
            self.check_namespace(def, &ns, &name)?;
            Some(ns)
        } else {
            None
        };
        let key = Self::key(def, ns.as_deref(), &name);
        if self.map(&gr).is_some_and(|m| m.contains_key(&key)) {
            return Err(Failure::already_exists(&gr, &name));
        }

        let body_obj = body
            .as_object_mut()
            .ok_or_else(|| Failure::bad_request("not an object"))?;
        body_obj.insert(
            "apiVersion".into(),
            json!(def.api_version(def.storage_version())),
        );
        body_obj.insert("kind".into(), json!(def.kind));
        if def.status_subresource {
            body_obj.remove("status");
        }
        {
            let meta = meta_mut(&mut body);
            meta.insert("name".into(), json!(name));
            match &ns {
                Some(ns) => meta.insert("namespace".into(), json!(ns)),
                None => meta.remove("namespace"),
            };
            meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            meta.insert("creationTimestamp".into(), json!(now()));
            meta.insert("generation".into(), json!(1));
            if !opts.applying {
                meta.remove("managedFields");
            }
            for gone in [
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "resourceVersion",
                "selfLink",
            ] {
                meta.remove(gone);
            }
        }
        self.validate(def, version, &mut body, None, opts)?;
        if !opts.applying {
            let av = def.api_version(version);
            apply::record_update(&mut body, &json!({}), opts.manager(), "", &av);
        }
        if is_namespace(def) {
            body["spec"] = json!({"finalizers": ["kubernetes"]});
            body["status"] = json!({"phase": "Active"});
        }
        if def.group_resource() == GroupResource::new("", "pods")
            && body.pointer("/status/phase").is_none()
        {
            body["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        if is_crd(def) {
            body["status"] = crd::established_status(&body);
        }
        if opts.dry_run {
            return Ok(body);
        }
        if is_crd(def)
            && let Ok(new_def) = crd::resource_def(&body)
        {
            self.registry.insert(new_def);
        }
        Ok(self.put(&gr, &key, body, None))
    }

    /// Replaces an object (PUT, and the last step of every patch). `sub` is "status" for
    /// the status subresource.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        mut new: Value,
        opts: &WriteOpts,
        from_patch: bool,
    ) -> Result<Value, Failure> {
        Self::check_identity(def, version, ns, &new)?;
        let gr = def.group_resource();
        let old = self.get(def, ns, name)?;
        let key = Self::key(def, ns, name);
        if let Some(body_name) = meta_str(&new, "name")
            && body_name != name
        {
            return Err(Failure::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match meta_str(&new, "resourceVersion").filter(|s| !s.is_empty()) {
            Some(rv) if rv != meta_str(&old, "resourceVersion").unwrap_or_default() => {
                if rv.parse::<u64>().is_err() {
                    return Err(Failure::bad_request(format!(
                        "invalid resourceVersion {rv:?}"
                    )));
                }
                return Err(Failure::stale(&gr, name));
            }
            Some(_) => {}
            None if def.custom && !from_patch => {
                return Err(Failure::invalid(
                    def,
                    name,
                    vec![Cause::invalid(
                        "metadata.resourceVersion",
                        &json!(0),
                        "must be specified for an update",
                    )],
                ));
            }
            None => {}
        }
        if !new.is_object() {
            return Err(Failure::bad_request(
                "the body of the request must be a JSON object",
            ));
        }

        if sub == Some("status") {
            let status = new.get("status").cloned();
            let managed = new.pointer("/metadata/managedFields").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = managed {
                meta_mut(&mut new).insert("managedFields".into(), mf);
            }
        } else if def.status_subresource {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if is_namespace(def) {
            new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
        }
        if is_crd(def) {
            new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
        }
        if let Some(m) = new.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                json!(def.api_version(def.storage_version())),
            );
            m.insert("kind".into(), json!(def.kind));
        }
        {
            let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
            let meta = meta_mut(&mut new);
            for kept in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(kept) {
                    Some(v) => meta.insert(kept.into(), v.clone()),
                    None => meta.remove(kept),
                };
            }
            if !meta.contains_key("managedFields")
                && let Some(mf) = old_meta.get("managedFields")
            {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        if meta_str(&old, "deletionTimestamp").is_some() {
            let before = finalizers(&old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !before.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(Failure::invalid(
                    def,
                    name,
                    vec![Cause::forbidden(
                        "metadata.finalizers",
                        &format!(
                            "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                        ),
                    )],
                ));
            }
        }
        self.validate(def, version, &mut new, Some(&old), opts)?;
        let gen_before = generation_part(&old, def.status_subresource);
        if generation_part(&new, def.status_subresource) != gen_before {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        if !opts.applying {
            let av = def.api_version(version);
            apply::record_update(&mut new, &old, opts.manager(), sub.unwrap_or(""), &av);
        }
        if comparable(&new) == comparable(&old) {
            return Ok(old);
        }
        if opts.dry_run {
            return Ok(new);
        }
        if is_crd(def)
            && let Ok(new_def) = crd::resource_def(&new)
        {
            self.registry.insert(new_def);
        }
        if meta_str(&new, "deletionTimestamp").is_some() && finalizers(&new).is_empty() {
            return Ok(if is_namespace(def) || is_crd(def) {
                let out = self.put(&gr, &key, new, Some(old));
                if is_namespace(def) {
                    self.finish_namespace(name);
                } else {
                    self.finish_crd(name);
                }
                out
            } else {
                self.remove(&gr, &key, new)
            });
        }
        Ok(self.put(&gr, &key, new, Some(old)))
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        kind: PatchKind,
        body: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, Failure> {
        let current = match self.get(def, ns, name) {
            Ok(obj) => obj,
            Err(_) if kind == PatchKind::Apply && sub.is_none() => {
                return self.apply_create(def, version, ns, name, body, opts);
            }
            Err(nf) => return Err(nf),
        };
        let mut doc = current.clone();
        match kind {
            PatchKind::Merge => {
                if !body.is_object() {
                    return Err(Failure::bad_request("merge patch must be a JSON object"));
                }
                patch::merge_patch(&mut doc, body);
            }
            PatchKind::Json => patch::json_patch(&mut doc, body)?,
            PatchKind::Strategic => {
                if def.custom {
                    return Err(Failure::unsupported_media_type(
                        "application/strategic-merge-patch+json",
                    ));
                }
                patch::strategic_merge(&mut doc, body)?;
            }
            PatchKind::Apply => {
                doc = self.apply_to(def, version, name, &current, body, sub, opts)?;
            }
        }
        if !doc.is_object() {
            return Err(Failure::unprocessable(
                "the patched object is not a JSON object",
            ));
        }
        // a patch may carry resourceVersion as a precondition; otherwise it applies to now
        let requested_rv = match kind {
            PatchKind::Apply => None,
            _ => body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let rv = requested_rv.unwrap_or_else(|| {
            meta_str(&current, "resourceVersion")
                .unwrap_or_default()
                .to_owned()
        });
        meta_mut(&mut doc).insert("resourceVersion".into(), json!(rv));
        let opts = WriteOpts {
            applying: kind == PatchKind::Apply,
            ..opts.clone()
        };
        self.update(def, version, ns, name, sub, doc, &opts, true)
    }

    fn manager(opts: &WriteOpts) -> Result<String, Failure> {
        opts.field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                Failure::bad_request(
                    "PATCH request with apply-patch content type requires fieldManager",
                )
            })
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_to(
        &self,
        def: &ResourceDef,
        version: &str,
        name: &str,
        current: &Value,
        config: &Value,
        sub: Option<&str>,
        opts: &WriteOpts,
    ) -> Result<Value, Failure> {
        let manager = Self::manager(opts)?;
        if let Some(n) = meta_str(config, "name")
            && n != name
        {
            return Err(Failure::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        apply::apply(
            current,
            config,
            &manager,
            sub.unwrap_or(""),
            &def.api_version(version),
            opts.force,
            def.status_subresource,
        )
        .map(|a| a.object)
        .map_err(|causes| Failure::apply_conflict(&def.group_resource(), name, causes))
    }

    fn apply_create(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
        config: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, Failure> {
        if !config.is_object() {
            return Err(Failure::bad_request(
                "apply configuration must be an object",
            ));
        }
        let mut seed = json!({"apiVersion": def.api_version(version), "kind": def.kind, "metadata": {"name": name}});
        if let Some(ns) = ns {
            seed["metadata"]["namespace"] = json!(ns);
        }
        let obj = self.apply_to(def, version, name, &seed, config, None, opts)?;
        let opts = WriteOpts {
            applying: true,
            ..opts.clone()
        };
        self.create(def, version, ns, obj, &opts)
    }

    /// DELETE, finalizer- and propagation-aware.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Deleted, Failure> {
        let obj = self.get(def, ns, name)?;
        let gr = def.group_resource();
        if let Some(uid) = &opts.uid {
            let actual = meta_str(&obj, "uid").unwrap_or_default();
            if uid != actual {
                return Err(Failure::conflict(
                    &gr,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            let actual = meta_str(&obj, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(Failure::conflict(
                    &gr,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                    ),
                ));
            }
        }
        if opts.dry_run {
            return Ok(Deleted::Pending(obj));
        }
        let key = Self::key(def, ns, name);
        self.delete_object(def, &key, obj, opts)
    }

    fn delete_object(
        &mut self,
        def: &ResourceDef,
        key: &ObjKey,
        obj: Value,
        opts: &DeleteOpts,
    ) -> Result<Deleted, Failure> {
        let gr = def.group_resource();
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_owned();
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let plain = !is_namespace(def) && !is_crd(def);
        if opts.propagation == Propagation::Foreground
            && plain
            && self.dependents.contains_key(&uid)
        {
            return Ok(self.delete_foreground(&gr, key, obj));
        }
        let holds = !finalizers(&obj).is_empty() || is_namespace(def) || is_crd(def);
        if !holds {
            return Ok(Deleted::Removed(self.remove(&gr, key, obj)));
        }
        if meta_str(&obj, "deletionTimestamp").is_some() {
            return Ok(Deleted::Pending(obj));
        }
        let mut marked = obj.clone();
        {
            let meta = meta_mut(&mut marked);
            meta.insert("deletionTimestamp".into(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            meta.insert("generation".into(), json!(g + 1));
        }
        if is_namespace(def) {
            marked["status"] = json!({"phase": "Terminating"});
        }
        let marked = self.put(&gr, key, marked, Some(obj));
        if is_namespace(def) {
            self.delete_namespace_content(&key.1);
            self.finish_namespace(&key.1);
        } else if is_crd(def) {
            if let Ok(cr) = crd::resource_def(&marked) {
                let instances: Vec<(ObjKey, Value)> = self
                    .objects
                    .get(&cr.group_resource())
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                if let Some(cr_def) = self.registry.get(&cr.group_resource()) {
                    for (k, v) in instances {
                        let _ = self.delete_object(&cr_def, &k, v, &DeleteOpts::default());
                    }
                }
            }
            self.finish_crd(&key.1);
        }
        let gone = self.objects.get(&gr).is_none_or(|m| !m.contains_key(key));
        Ok(if gone {
            Deleted::Removed(marked)
        } else {
            Deleted::Pending(
                self.objects
                    .get(&gr)
                    .and_then(|m| m.get(key))
                    .cloned()
                    .unwrap_or(marked),
            )
        })
    }

    /// Foreground deletion: the owner waits (finalizer `foregroundDeletion`) until the
    /// dependents that block it are gone.
    fn delete_foreground(&mut self, gr: &GroupResource, key: &ObjKey, obj: Value) -> Deleted {
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_owned();
        let mut marked = obj.clone();
        {
            let meta = meta_mut(&mut marked);
            if !meta.contains_key("deletionTimestamp") {
                meta.insert("deletionTimestamp".into(), json!(now()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
                meta.insert("generation".into(), json!(g + 1));
            }
            let fs = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = fs.as_array_mut()
                && !list.iter().any(|f| f.as_str() == Some(FOREGROUND))
            {
                list.push(json!(FOREGROUND));
            }
        }
        let marked = if comparable(&marked) == comparable(&obj) {
            obj
        } else {
            self.put(gr, key, marked, Some(obj))
        };
        self.collect_dependents(&uid);
        self.finish_foreground(&uid);
        match self.objects.get(gr).and_then(|m| m.get(key)).cloned() {
            Some(still) => Deleted::Pending(still),
            None => Deleted::Removed(marked),
        }
    }

    fn delete_namespace_content(&mut self, ns: &str) {
        let mut doomed = Vec::new();
        for (gr, map) in &self.objects {
            for (key, obj) in map.iter().filter(|((ons, _), _)| ons == ns) {
                doomed.push((gr.clone(), key.clone(), obj.clone()));
            }
        }
        for (gr, key, obj) in doomed {
            if let Some(def) = self.registry.get(&gr) {
                // an object deleted by an earlier cascade is simply skipped
                if self.objects.get(&gr).is_some_and(|m| m.contains_key(&key)) {
                    let _ = self.delete_object(&def, &key, obj, &DeleteOpts::default());
                }
            }
        }
    }

    fn orphan_dependents(&mut self, owner_uid: &str) {
        let Some(deps) = self.dependents.get(owner_uid).cloned() else {
            return;
        };
        for (gr, key) in deps {
            let Some(obj) = self.objects.get(&gr).and_then(|m| m.get(&key)).cloned() else {
                continue;
            };
            let mut new = obj.clone();
            if let Some(Value::Array(refs)) = new.pointer_mut("/metadata/ownerReferences") {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            self.put(&gr, &key, new, Some(obj));
        }
    }

    pub fn delete_collection(
        &mut self,
        def: &ResourceDef,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &DeleteOpts,
    ) -> Result<Vec<Value>, Failure> {
        let page = self.list(def, ns, labels, fields, None, None)?;
        let mut out = Vec::new();
        for obj in page.items {
            let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
            let ons = meta_str(&obj, "namespace").map(str::to_owned);
            match self.delete(def, ons.as_deref(), &name, opts) {
                Ok(Deleted::Pending(o) | Deleted::Removed(o)) => out.push(o),
                Err(f) if f.code == 404 => {}
                Err(f) => return Err(f),
            }
        }
        Ok(out)
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

impl Cause {
    fn with_message(mut self, message: &str) -> Self {
        self.message = message.to_owned();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"a": "1"}})
    }

    fn setup() -> (Store, Arc<ResourceDef>) {
        let store = Store::new(100);
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
        let err = s
            .patch(
                &def,
                "v1",
                Some("default"),
                "a",
                None,
                PatchKind::Json,
                &root,
                &opts,
            )
            .unwrap_err();
        assert_eq!(err.code, 422);
        let not_object = s.update(
            &def,
            "v1",
            Some("default"),
            "a",
            None,
            json!("x"),
            &opts,
            false,
        );
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
