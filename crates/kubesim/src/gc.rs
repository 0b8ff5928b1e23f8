//! Deletion and what follows it: finalizers, propagation (Background, Orphan,
//! Foreground), garbage collection by ownerReferences, and the end of terminating
//! namespaces and CRDs. Everything runs inside the store's transaction.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::crd;
use super::failure::Failure;
use super::meta::{FieldSelector, LabelSelector, now};
use super::resources::{GroupResource, ResourceDef};
use super::store::{
    DeleteOpts, Deleted, FOREGROUND, ObjKey, Propagation, State, comparable, crd_gr, finalizers,
    in_namespace, is_crd, is_namespace, meta_mut, meta_str, ns_gr, owner_uids,
};

impl State {
    /// Whether one of `obj`'s owners (other than `except`) exists where it may own `obj`:
    /// cluster-scoped, or in the same namespace.
    fn has_live_owner(&self, obj: &Value, key: &ObjKey, except: Option<&str>) -> bool {
        owner_uids(obj).iter().any(|u| {
            Some(u.as_str()) != except
                && self
                    .by_uid
                    .get(u)
                    .is_some_and(|(_, (owner_ns, _))| owner_ns.is_empty() || *owner_ns == key.0)
        })
    }

    /// An object whose owners are all missing (or in a scope that cannot own it) is
    /// garbage, as the collector finds when it resolves the references.
    pub(super) fn collect_if_dangling(&mut self, gr: &GroupResource, key: &ObjKey) {
        let Some(obj) = self.objects.get(gr).and_then(|m| m.get(key)).cloned() else {
            return;
        };
        if meta_str(&obj, "deletionTimestamp").is_some() || self.has_live_owner(&obj, key, None) {
            return;
        }
        if let Some(def) = self.registry.get(gr) {
            // deleting an object that exists cannot be refused
            let _ = self.delete_object(&def, key, obj, &DeleteOpts::default());
        }
    }

    /// Background garbage collection: dependents whose owners are all gone are deleted.
    pub(super) fn collect_dependents(&mut self, owner_uid: &str) {
        let Some(deps) = self.dependents.get(owner_uid).cloned() else {
            return;
        };
        for (gr, key) in deps {
            let Some(obj) = self.objects.get(&gr).and_then(|m| m.get(&key)).cloned() else {
                continue;
            };
            if self.has_live_owner(&obj, &key, Some(owner_uid))
                || meta_str(&obj, "deletionTimestamp").is_some()
            {
                continue;
            }
            if let Some(def) = self.registry.get(&gr) {
                let _ = self.delete_object(&def, &key, obj, &DeleteOpts::default());
            }
        }
    }

    /// Ends the foreground deletion of `owner_uid` once no dependent blocks it.
    pub(super) fn finish_foreground(&mut self, owner_uid: &str) {
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

    pub(super) fn finish_namespace(&mut self, ns: &str) {
        let key = (String::new(), ns.to_owned());
        // runs after every removal of a namespaced object: decide before copying anything
        let terminated = self
            .objects
            .get(&ns_gr())
            .and_then(|m| m.get(&key))
            .is_some_and(|n| {
                meta_str(n, "deletionTimestamp").is_some() && finalizers(n).is_empty()
            });
        if !terminated {
            return;
        }
        let empty = self
            .objects
            .values()
            .all(|m| in_namespace(m, ns).next().is_none());
        if empty
            && let Some(nsobj) = self
                .objects
                .get(&ns_gr())
                .and_then(|m| m.get(&key))
                .cloned()
        {
            self.remove(&ns_gr(), &key, nsobj);
        }
    }

    pub(super) fn finish_crd(&mut self, name: &str) {
        let key = (String::new(), name.to_owned());
        // runs after every removal of a custom object: decide before copying anything
        let Some(crd) = self.objects.get(&crd_gr()).and_then(|m| m.get(&key)) else {
            return;
        };
        if meta_str(crd, "deletionTimestamp").is_none() || !finalizers(crd).is_empty() {
            return;
        }
        // the resource a registered CRD serves, without compiling its schemas again
        let registered = GroupResource::new(
            crd.pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            crd.pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let served = match self.registry.get(&registered).filter(|d| d.custom) {
            Some(_) => Some(registered),
            None => crd::resource_def(crd).ok().map(|d| d.group_resource()),
        };
        let done = served.is_none_or(|gr| self.objects.get(&gr).is_none_or(BTreeMap::is_empty));
        if done
            && let Some(obj) = self
                .objects
                .get(&crd_gr())
                .and_then(|m| m.get(&key))
                .cloned()
        {
            self.remove(&crd_gr(), &key, obj);
        }
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
        // the real server names the kind here, not the resource
        let kind = GroupResource::new(&def.group, &def.kind);
        if let Some(uid) = &opts.uid {
            let actual = meta_str(&obj, "uid").unwrap_or_default();
            if uid != actual {
                return Err(Failure::conflict(
                    &kind,
                    name,
                    &format!(
                        "the UID in the precondition ({uid}) does not match the UID in record ({actual}). The object might have been deleted and then recreated"
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.resource_version {
            let actual = meta_str(&obj, "resourceVersion").unwrap_or_default();
            if rv != actual {
                return Err(Failure::conflict(
                    &kind,
                    name,
                    &format!(
                        "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({actual}). The object might have been modified"
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

    pub(super) fn delete_object(
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
            if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                meta.insert("generation".into(), json!(g + 1));
            }
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
    pub(super) fn delete_foreground(
        &mut self,
        gr: &GroupResource,
        key: &ObjKey,
        obj: Value,
    ) -> Deleted {
        let uid = meta_str(&obj, "uid").unwrap_or_default().to_owned();
        let mut marked = obj.clone();
        {
            let meta = meta_mut(&mut marked);
            if !meta.contains_key("deletionTimestamp") {
                meta.insert("deletionTimestamp".into(), json!(now()));
                meta.insert("deletionGracePeriodSeconds".into(), json!(0));
                if let Some(g) = meta.get("generation").and_then(Value::as_i64) {
                    meta.insert("generation".into(), json!(g + 1));
                }
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

    pub(super) fn delete_namespace_content(&mut self, ns: &str) {
        let mut doomed = Vec::new();
        for (gr, map) in &self.objects {
            for (key, obj) in in_namespace(map, ns) {
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

    pub(super) fn orphan_dependents(&mut self, owner_uid: &str) {
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::resources::GroupResource;
    use crate::store::{Addr, DeleteOpts, Deleted, State, Store, WriteOpts};

    fn def(
        s: &State,
        group: &str,
        resource: &str,
    ) -> std::sync::Arc<crate::resources::ResourceDef> {
        s.registry
            .get(&GroupResource::new(group, resource))
            .unwrap()
    }

    fn release(s: &mut State, group: &str, resource: &str, ns: Option<&str>, name: &str) {
        let d = def(s, group, resource);
        let mut obj = s.get(&d, ns, name).unwrap();
        obj["metadata"]["finalizers"] = json!([]);
        let at = Addr {
            def: &d,
            version: d.storage_version(),
            ns,
            name,
            sub: None,
        };
        s.update(at, obj, &WriteOpts::default(), false).unwrap();
    }

    #[test]
    fn a_namespace_ends_when_its_held_content_is_released() {
        let store = Store::new(100, 1024);
        let mut s = store.lock();
        let opts = WriteOpts::default();
        let nsd = def(&s, "", "namespaces");
        let cmd = def(&s, "", "configmaps");
        s.create(&nsd, "v1", None, json!({"metadata": {"name": "n"}}), &opts)
            .unwrap();
        let held = json!({"metadata": {"name": "held", "finalizers": ["x.io/hold"]}});
        s.create(&cmd, "v1", Some("n"), held, &opts).unwrap();
        s.create(
            &cmd,
            "v1",
            Some("n"),
            json!({"metadata": {"name": "free"}}),
            &opts,
        )
        .unwrap();

        let Ok(Deleted::Pending(ns)) = s.delete(&nsd, None, "n", &DeleteOpts::default()) else {
            panic!("namespace with held content must stay");
        };
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert_eq!(s.get(&cmd, Some("n"), "free").unwrap_err().code, 404);
        assert!(
            s.get(&cmd, Some("n"), "held").unwrap()["metadata"]["deletionTimestamp"].is_string()
        );
        let refused = s.create(
            &cmd,
            "v1",
            Some("n"),
            json!({"metadata": {"name": "new"}}),
            &opts,
        );
        assert_eq!(refused.unwrap_err().code, 403);

        release(&mut s, "", "configmaps", Some("n"), "held");
        assert_eq!(s.get(&cmd, Some("n"), "held").unwrap_err().code, 404);
        assert_eq!(s.get(&nsd, None, "n").unwrap_err().code, 404);
    }

    #[test]
    fn a_crd_is_unregistered_once_its_objects_are_gone() {
        let store = Store::new(100, 1024);
        let mut s = store.lock();
        let opts = WriteOpts::default();
        let crdd = def(&s, "apiextensions.k8s.io", "customresourcedefinitions");
        let crd = json!({"metadata": {"name": "gizmos.example.com"}, "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}});
        s.create(&crdd, "v1", None, crd, &opts).unwrap();
        let gizmo = def(&s, "example.com", "gizmos");
        let held: Value =
            json!({"metadata": {"name": "g", "finalizers": ["x.io/hold"]}, "spec": {"a": 1}});
        s.create(&gizmo, "v1", Some("default"), held, &opts)
            .unwrap();

        assert!(matches!(
            s.delete(&crdd, None, "gizmos.example.com", &DeleteOpts::default()),
            Ok(Deleted::Pending(_))
        ));
        assert!(
            s.registry
                .get(&GroupResource::new("example.com", "gizmos"))
                .is_some(),
            "still served while objects remain"
        );
        release(&mut s, "example.com", "gizmos", Some("default"), "g");
        assert_eq!(
            s.get(&crdd, None, "gizmos.example.com").unwrap_err().code,
            404
        );
        assert!(
            s.registry
                .get(&GroupResource::new("example.com", "gizmos"))
                .is_none()
        );
    }
}
