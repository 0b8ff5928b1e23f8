//! What a resource definition holds: the kind's names and versions, its table columns,
//! how it is stored, and its checks.

use std::sync::Arc;

use serde_json::Value;

use crate::failure::{Cause, Failure};
use crate::kinds::{GroupResource, NameRule};
use crate::schema::CompiledSchema;

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
    pub(super) fn new(name: &str, type_: &str, source: CellSource) -> Self {
        Self {
            name: name.to_owned(),
            type_: type_.to_owned(),
            format: String::new(),
            description: String::new(),
            priority: 0,
            source,
        }
    }

    pub(super) fn age() -> Self {
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
    pub fn invalid(&self, name: &str, causes: Vec<Cause>) -> Failure {
        Failure::invalid_kind(&self.group, &self.kind, name, causes)
    }
}

/// See [`ResourceDef::checks`]: the causes of a 422 for `new` (replacing `old` on update).
pub type Checks = fn(new: &Value, old: Option<&Value>) -> Vec<Cause>;

/// See [`ResourceDef::normalize`].
pub type Normalize = fn(&Value) -> Result<Value, String>;

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
