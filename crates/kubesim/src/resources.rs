//! The table of resource definitions: the built-in kinds, and those a CRD registers.
//!
//! Everything the store, the handlers, discovery and table output need to know about a
//! kind lives in one [`ResourceDef`] (the built-in kinds' in [`builtins`]); no other
//! module has code for a particular kind.

mod builtins;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::failure::Cause;
use super::schema::CompiledSchema;

pub use super::kinds::{GroupResource, NameRule};

/// Where a table column takes its cell from.
#[derive(Clone, Debug, PartialEq)]
pub enum CellSource {
    /// A printer-column JSONPath such as `.status.conditions[?(@.type=="Ready")].status`.
    JsonPath(String),
    /// Time since `metadata.creationTimestamp`.
    Age,
    /// Number of entries of the map or list at a JSONPath (ConfigMap DATA).
    Count(Vec<String>),
    /// Ready containers over all containers of a Pod.
    PodReady,
}

/// One column of `kubectl get` output.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub source: CellSource,
}

impl Column {
    fn new(name: &str, type_: &str, source: CellSource) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            source,
        }
    }

    fn age() -> Self {
        Self::new("Age", "string", CellSource::Age)
    }
}

/// A resource served as a view of another one's storage (events.k8s.io Events are core
/// Events): objects are stored in the other's shape, top-level fields renamed.
#[derive(Clone, Debug)]
pub struct StoredAs {
    pub storage: GroupResource,
    pub storage_api_version: &'static str,
    /// (field in this resource, field in storage)
    pub renames: &'static [(&'static str, &'static str)],
}

impl StoredAs {
    fn rename(v: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
        let mut out = v.clone();
        if let Some(m) = out.as_object_mut() {
            for (from, to) in pairs {
                if let Some(x) = m.remove(from) {
                    m.insert(to.to_owned(), x);
                }
            }
        }
        out
    }

    /// This resource's shape to the storage shape (also for merge patches and apply
    /// configurations, whose top-level keys are the same).
    pub fn to_storage(&self, v: &Value) -> Value {
        Self::rename(v, self.renames.iter().copied())
    }

    pub fn to_view(&self, v: &Value) -> Value {
        Self::rename(v, self.renames.iter().map(|(a, b)| (*b, *a)))
    }

    /// A dotted field path (`regarding.name`) to the storage's (`involvedObject.name`).
    pub fn dotted_to_storage(&self, path: &str) -> String {
        let (head, rest) = path
            .split_once('.')
            .map_or((path, None), |(h, r)| (h, Some(r)));
        let head = self
            .renames
            .iter()
            .find(|(a, _)| *a == head)
            .map_or(head, |(_, b)| b);
        rest.map_or_else(|| head.to_owned(), |r| format!("{head}.{r}"))
    }

    /// A JSON pointer (`/note`) to the storage's (`/message`).
    pub fn pointer_to_storage(&self, pointer: &str) -> String {
        match pointer.strip_prefix('/') {
            Some(p) => {
                let (head, rest) = p.split_once('/').map_or((p, None), |(h, r)| (h, Some(r)));
                let head = self
                    .renames
                    .iter()
                    .find(|(a, _)| *a == head)
                    .map_or(head, |(_, b)| b);
                rest.map_or_else(|| format!("/{head}"), |r| format!("/{head}/{r}"))
            }
            None => pointer.to_owned(),
        }
    }
}

/// One served version of a resource.
#[derive(Clone, Debug)]
pub struct VersionDef {
    pub name: String,
    /// Columns after NAME.
    pub columns: Vec<Column>,
    /// The compiled openAPIV3Schema of a custom resource version.
    pub schema: Option<Arc<CompiledSchema>>,
    /// A custom resource version's `selectableFields` (`spec.color`).
    pub selectable_fields: Vec<String>,
}

/// Everything the server knows about one resource.
#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions, the storage (preferred) version first.
    pub versions: Vec<VersionDef>,
    pub kind: String,
    pub list_kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    pub name_rule: NameRule,
    /// Defined by a CustomResourceDefinition (schema checks, no strategic merge patch).
    pub custom: bool,
    /// DELETE answers the deleted object rather than a Success Status.
    pub return_deleted_object: bool,
    /// Served as a view of another resource's storage.
    pub stored_as: Option<StoredAs>,
    /// Decodes an object into the kind's typed form and back (built-in kinds): the
    /// object without unknown fields, or why it cannot be decoded.
    pub normalize: Option<Normalize>,
    /// The real server's own rules for writes through this resource (on the object in
    /// storage shape, after decoding).
    pub checks: Option<Checks>,
    /// The fields a built-in kind's field selectors may name; `None`: `metadata.name`
    /// and `metadata.namespace`.
    pub field_labels: Option<&'static [&'static str]>,
    /// Objects carry `metadata.generation` (Pods, Deployments, CRDs and custom
    /// resources; ConfigMaps, Namespaces and most other kinds do not).
    pub generation: bool,
}

impl ResourceDef {
    /// 422 about the object `name` of this kind.
    pub fn invalid(&self, name: &str, causes: Vec<Cause>) -> super::failure::Failure {
        super::failure::Failure::invalid_kind(&self.group, &self.kind, name, causes)
    }
}

/// See [`ResourceDef::checks`]: the causes of a 422 for `new` (replacing `old` on update).
pub type Checks = fn(new: &Value, old: Option<&Value>) -> Vec<Cause>;

/// See [`ResourceDef::normalize`].
pub type Normalize = fn(&Value) -> Result<Value, String>;

/// Paths of fields in `given` that `normalized` dropped (unknown to the kind).
pub fn dropped_fields(given: &Value, normalized: &Value, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    match (given, normalized) {
        (Value::Object(g), Value::Object(n)) => {
            for (k, gv) in g {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match n.get(k) {
                    Some(nv) => out.extend(dropped_fields(gv, nv, &p)),
                    None if !gv.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(g), Value::Array(n)) => {
            for (i, (gv, nv)) in g.iter().zip(n).enumerate() {
                out.extend(dropped_fields(gv, nv, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}

impl ResourceDef {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn storage_version(&self) -> &str {
        self.versions.first().map_or("v1", |v| v.name.as_str())
    }

    pub fn version(&self, name: &str) -> Option<&VersionDef> {
        self.versions.iter().find(|v| v.name == name)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// Whether a field selector may name `label` at `version`; the real server's words
    /// when it may not.
    pub fn check_field_label(&self, version: &str, label: &str) -> Result<(), String> {
        let allowed = if self.custom {
            label == "metadata.name"
                || (self.namespaced && label == "metadata.namespace")
                || self
                    .version(version)
                    .is_some_and(|v| v.selectable_fields.iter().any(|f| f == label))
        } else {
            match self.field_labels {
                Some(labels) => labels.contains(&label),
                None if label == "metadata.name" || label == "metadata.namespace" => true,
                None => {
                    return Err(format!(
                        "{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    ));
                }
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(format!("field label not supported: {label}"))
        }
    }

    /// The verbs discovery lists.
    pub fn verbs(&self) -> Vec<&'static str> {
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

/// An object from storage as `shown` serves it at `version`.
pub fn present(shown: &ResourceDef, version: &str, obj: &Value) -> Value {
    let mut out = match &shown.stored_as {
        Some(sa) => sa.to_view(obj),
        None => obj.clone(),
    };
    if let Some(m) = out.as_object_mut() {
        m.insert(
            "apiVersion".into(),
            Value::String(shown.api_version(version)),
        );
        m.insert("kind".into(), Value::String(shown.kind.clone()));
    }
    out
}

/// An object as `PartialObjectMetadata` (for clients that ask for metadata only).
pub fn partial_metadata(obj: &Value) -> Value {
    let mut out = serde_json::Map::new();
    out.insert("kind".into(), Value::String("PartialObjectMetadata".into()));
    out.insert("apiVersion".into(), Value::String("meta.k8s.io/v1".into()));
    out.insert(
        "metadata".into(),
        obj.get("metadata")
            .cloned()
            .unwrap_or(Value::Object(serde_json::Map::new())),
    );
    Value::Object(out)
}

/// How a client wants objects rendered, from its `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Object,
    /// `meta.k8s.io` Table (`kubectl get`).
    Table,
    /// `PartialObjectMetadata` (kube's metadata watchers).
    Metadata,
}

impl Shape {
    pub fn from_accept(accept: &str) -> Self {
        if accept.contains("as=Table") {
            Self::Table
        } else if accept.contains("as=PartialObjectMetadata") {
            Self::Metadata
        } else {
            Self::Object
        }
    }
}

/// The resources the server currently serves, keyed by group and plural.
#[derive(Clone, Debug)]
pub struct Registry {
    defs: BTreeMap<GroupResource, Arc<ResourceDef>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut registry = Self {
            defs: BTreeMap::new(),
        };
        for def in builtins::builtin_defs() {
            registry.insert(def);
        }
        registry
    }
}

impl Registry {
    pub fn insert(&mut self, def: ResourceDef) {
        self.defs.insert(def.group_resource(), Arc::new(def));
    }

    pub fn remove(&mut self, gr: &GroupResource) {
        self.defs.remove(gr);
    }

    pub fn get(&self, gr: &GroupResource) -> Option<Arc<ResourceDef>> {
        self.defs.get(gr).cloned()
    }

    /// The resource serving `plural` at `group/version`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceDef>> {
        self.defs
            .get(&GroupResource::new(group, plural))
            .filter(|d| d.version(version).is_some())
            .cloned()
    }

    /// Served groups with their versions, the preferred one first; the core group excluded.
    pub fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for def in self.defs.values().filter(|d| !d.group.is_empty()) {
            let versions = groups.entry(def.group.clone()).or_default();
            for v in &def.versions {
                if !versions.contains(&v.name) {
                    versions.push(v.name.clone());
                }
            }
        }
        groups
    }

    /// The resources served at one group version.
    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceDef>> {
        self.defs
            .values()
            .filter(|d| d.group == group && d.version(version).is_some())
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests;
