//! Writes: admission (identity, names, namespaces, schemas, CRDs) and create, update,
//! patch and server-side apply, with optimistic concurrency and the status rules.

use serde_json::{Value, json};

use super::apply;
use super::crd;
use super::failure::{Cause, Failure};
use super::meta::{check_labels, check_name, generate_name, now};
use super::patch;
use super::resources::{self, GroupResource, ResourceDef};
use super::store::{
    Addr, PatchKind, State, WriteOpts, comparable, finalizers, generation_part, is_crd,
    is_namespace, meta_mut, meta_str, ns_gr,
};

impl State {
    // ---- admission ----------------------------------------------------------------------

    pub(super) fn check_namespace(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<(), Failure> {
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
    pub(super) fn validate(
        &self,
        def: &ResourceDef,
        version: &str,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOpts,
    ) -> Result<(), Failure> {
        let name = meta_str(obj, "name").unwrap_or_default().to_owned();
        let strict_error = |dropped: &[String]| {
            let listed: Vec<String> = dropped
                .iter()
                .map(|p| format!("unknown field \"{p}\""))
                .collect();
            Failure::bad_request(format!(
                "{} in body: strict decoding error: {}",
                def.kind,
                listed.join(", ")
            ))
        };
        if let Some(normalize) = def.normalize {
            let normalized = normalize(obj).map_err(|e| {
                Failure::bad_request(format!(
                    "{} in version \"{version}\" cannot be handled as a {}: {e}",
                    def.kind, def.kind
                ))
            })?;
            let dropped = resources::dropped_fields(obj, &normalized, "");
            if opts.strict && !dropped.is_empty() {
                return Err(strict_error(&dropped));
            }
            *obj = normalized;
        }
        let mut causes = check_labels(obj.get("metadata").unwrap_or(&Value::Null));
        if let Some(checks) = opts.checks {
            causes.extend(checks(obj, old));
        }
        if let Some(schema) = def.version(version).and_then(|v| v.schema.clone()) {
            match schema.admit(obj, old) {
                Ok(pruned) if opts.strict && !pruned.is_empty() => {
                    return Err(strict_error(&pruned));
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
            Err(def.invalid(&name, causes))
        }
    }

    /// Reads identity from a body and checks it against the URL.
    pub(super) fn check_identity(
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
        if !opts.applying
            && meta_str(&body, "resourceVersion").is_some_and(|rv| !rv.is_empty() && rv != "0")
        {
            return Err(Failure::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let gr = def.group_resource();
        let mut name = meta_str(&body, "name").unwrap_or_default().to_owned();
        if name.is_empty() {
            match meta_str(&body, "generateName") {
                Some(prefix) if !prefix.is_empty() => name = generate_name(prefix),
                _ => {
                    return Err(def.invalid(
                        "",
                        vec![
                            Cause::required("metadata.name")
                                .with_detail("name or generateName is required"),
                        ],
                    ));
                }
            }
        }
        let causes = check_name(def.name_rule, &name, "metadata.name");
        if !causes.is_empty() {
            return Err(def.invalid(&name, causes));
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
            if def.generation {
                meta.insert("generation".into(), json!(1));
            } else {
                meta.remove("generation");
            }
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
            name_label(&mut body, &name);
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
    pub fn update(
        &mut self,
        at: Addr<'_>,
        mut new: Value,
        opts: &WriteOpts,
        from_patch: bool,
    ) -> Result<Value, Failure> {
        let Addr {
            def,
            version,
            ns,
            name,
            sub,
        } = at;
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
                return Err(def.invalid(
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
        // a uid in a patch is a change, refused as immutable; in an update's body it is a
        // precondition, refused in the storage's words
        let actual_uid = meta_str(&old, "uid").unwrap_or_default();
        if let Some(uid) = meta_str(&new, "uid").filter(|u| !u.is_empty() && *u != actual_uid) {
            if from_patch {
                return Err(def.invalid(
                    name,
                    vec![Cause::invalid(
                        "metadata.uid",
                        &json!(uid),
                        "field is immutable",
                    )],
                ));
            }
            let group = if def.custom || is_crd(def) {
                format!("{}/", def.group)
            } else {
                String::new()
            };
            let path = ns.map_or_else(|| name.to_owned(), |ns| format!("{ns}/{name}"));
            return Err(Failure::conflict(
                &gr,
                name,
                &format!(
                    "StorageError: invalid object, Code: 4, Key: /registry/{group}{}/{path}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {uid}, UID in object meta: {actual_uid}",
                    def.plural
                ),
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
            name_label(&mut new, name);
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
                return Err(def.invalid(
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
        if def.generation && generation_part(&new, def.status_subresource) != gen_before {
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

    pub fn patch(
        &mut self,
        at: Addr<'_>,
        kind: PatchKind,
        body: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, Failure> {
        let Addr {
            def,
            version,
            ns,
            name,
            sub,
        } = at;
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
                doc = self.apply_to(at, &current, body, opts)?;
            }
        }
        if !doc.is_object() {
            return Err(Failure::unprocessable(
                "the patched object is not a JSON object",
            ));
        }
        // a patch (of any kind, apply included) that sets resourceVersion makes it a
        // precondition; otherwise the patch applies to the current object
        let rv = meta_str(&doc, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .or_else(|| meta_str(&current, "resourceVersion"))
            .unwrap_or_default()
            .to_owned();
        meta_mut(&mut doc).insert("resourceVersion".into(), json!(rv));
        let opts = WriteOpts {
            applying: kind == PatchKind::Apply,
            ..opts.clone()
        };
        self.update(at, doc, &opts, true)
    }

    pub(super) fn manager(opts: &WriteOpts) -> Result<String, Failure> {
        opts.field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .ok_or_else(Failure::apply_needs_manager)
    }

    pub(super) fn apply_to(
        &self,
        at: Addr<'_>,
        current: &Value,
        config: &Value,
        opts: &WriteOpts,
    ) -> Result<Value, Failure> {
        let Addr {
            def,
            version,
            name,
            sub,
            ..
        } = at;
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

    pub(super) fn apply_create(
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
        let at = Addr {
            def,
            version,
            ns,
            name,
            sub: None,
        };
        let obj = self.apply_to(at, &seed, config, opts)?;
        let opts = WriteOpts {
            applying: true,
            ..opts.clone()
        };
        self.create(def, version, ns, obj, &opts)
    }
}

/// The label the real server keeps on every Namespace: `kubernetes.io/metadata.name`.
fn name_label(ns: &mut Value, name: &str) {
    let meta = meta_mut(ns);
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["kubernetes.io/metadata.name"] = json!(name);
}
