//! The table of resource definitions: the built-in kinds, and those a CRD registers.
//!
//! Everything the store, the handlers, discovery and table output need to know about a
//! kind lives in one [`ResourceDef`] (its types in [`def`], the built-in kinds' in
//! [`builtins`]); no other module has code for a particular kind.

mod builtins;
mod def;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use super::kinds::{GroupResource, NameRule};
pub use def::{CellSource, Checks, Column, ResourceDef, VersionDef};

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
