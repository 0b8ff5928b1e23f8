//! Server-side apply: field ownership in `metadata.managedFields` (FieldsV1), removal of
//! fields a manager stopped applying, conflicts between appliers, and `force`.
//!
//! Implemented: each `Apply` manager owns the fields of its last applied configuration
//! (per subresource); maps merge, lists with a known merge key (see
//! [`super::patch::merge_key`]) merge item by item, other lists are atomic; a field that an
//! applier drops and no other applier owns is removed; applying a different value to a
//! field another applier owns is a 409 Conflict listing the fields, unless `force=true`,
//! which takes the fields over.
//! Other writes (create, PUT, merge/JSON/strategic patches) are recorded as `Update`
//! entries: the writer owns what it added or changed and takes it from everyone else, so
//! an applier that later applies a different value to such a field gets a conflict.
//! Not implemented: sets of primitives (`v:` keys),
//! `x-kubernetes-list-type`/`map-keys` from CRD schemas (lists there are atomic unless
//! their field name has a built-in merge key).

use serde_json::{Map, Value, json};

use super::failure::Cause;
use super::meta::now;
use super::patch::merge_key;

/// The metadata fields an applied configuration may own.
const META_FIELDS: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

/// FieldsV1 set of an applied configuration (top level: everything but apiVersion, kind
/// and identity metadata).
pub fn field_set(applied: &Value) -> Value {
    let mut set = Map::new();
    if let Some(obj) = applied.as_object() {
        for (k, v) in obj {
            match k.as_str() {
                "apiVersion" | "kind" => {}
                "metadata" => {
                    let mut meta = Map::new();
                    for f in META_FIELDS {
                        if let Some(child) = v.get(*f) {
                            meta.insert(format!("f:{f}"), child_set(f, child));
                        }
                    }
                    if !meta.is_empty() {
                        set.insert("f:metadata".into(), Value::Object(meta));
                    }
                }
                _ => {
                    set.insert(format!("f:{k}"), child_set(k, v));
                }
            }
        }
    }
    Value::Object(set)
}

fn map_set(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .map(|(k, v)| (format!("f:{k}"), child_set(k, v)))
        .collect()
}

fn item_key(item: &Value, key: &str) -> Option<String> {
    let id = item.get(key)?;
    Some(format!("k:{}", json!({ key: id })))
}

fn child_set(name: &str, v: &Value) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => Value::Object(map_set(m)),
        Value::Array(items) => match merge_key(name) {
            Some(key) if items.iter().all(|i| item_key(i, key).is_some()) => {
                let mut set = Map::new();
                for item in items {
                    if let (Some(k), Some(m)) = (item_key(item, key), item.as_object()) {
                        let mut entry = map_set(m);
                        entry.insert(".".into(), json!({}));
                        set.insert(k, Value::Object(entry));
                    }
                }
                Value::Object(set)
            }
            _ => json!({}),
        },
        _ => json!({}),
    }
}

/// FieldsV1 set of what `new` adds or changes relative to `old` (same scope as
/// [`field_set`]).
pub fn changed_set(old: &Value, new: &Value) -> Value {
    let mut set = Map::new();
    let Some(obj) = new.as_object() else {
        return Value::Object(set);
    };
    for (k, v) in obj {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let mut meta = Map::new();
                for f in META_FIELDS {
                    let before = old.get("metadata").and_then(|m| m.get(*f));
                    if let Some(d) = v.get(*f).and_then(|now| diff_child(f, before, now)) {
                        meta.insert(format!("f:{f}"), d);
                    }
                }
                if !meta.is_empty() {
                    set.insert("f:metadata".into(), Value::Object(meta));
                }
            }
            _ => {
                if let Some(d) = diff_child(k, old.get(k), v) {
                    set.insert(format!("f:{k}"), d);
                }
            }
        }
    }
    Value::Object(set)
}

fn diff_child(name: &str, old: Option<&Value>, new: &Value) -> Option<Value> {
    if old == Some(new) {
        return None;
    }
    match (old, new) {
        (Some(Value::Object(o)), Value::Object(n)) if !n.is_empty() => {
            let m: Map<String, Value> = n
                .iter()
                .filter_map(|(k, v)| diff_child(k, o.get(k), v).map(|d| (format!("f:{k}"), d)))
                .collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        (Some(Value::Array(o)), Value::Array(n)) => match merge_key(name) {
            Some(key) if n.iter().chain(o).all(|i| item_key(i, key).is_some()) => {
                let mut m = Map::new();
                for item in n {
                    let before = o.iter().find(|x| x.get(key) == item.get(key));
                    let (Some(k), Some(im)) = (item_key(item, key), item.as_object()) else {
                        continue;
                    };
                    match before {
                        Some(b) if b == item => {}
                        Some(b) => {
                            if let Some(d) = diff_child("", Some(b), item) {
                                m.insert(k, d);
                            }
                        }
                        None => {
                            let mut entry = map_set(im);
                            entry.insert(".".into(), json!({}));
                            m.insert(k, Value::Object(entry));
                        }
                    }
                }
                (!m.is_empty()).then_some(Value::Object(m))
            }
            _ => Some(json!({})),
        },
        _ => Some(child_set(name, new)),
    }
}

/// `a` with every field of `b` added.
fn union(a: &mut Value, b: &Value) {
    let (Some(am), Some(bm)) = (a.as_object_mut(), b.as_object()) else {
        return;
    };
    for (k, v) in bm {
        match am.get_mut(k) {
            Some(existing) => union(existing, v),
            None => {
                am.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Drops from `set` the fields `obj` no longer has.
fn keep_present(set: &mut Value, obj: &Value) {
    let Some(m) = set.as_object_mut() else { return };
    m.retain(|k, sub| {
        if k == "." {
            return true;
        }
        match child(obj, k) {
            Some(c) => {
                let had_children = sub.as_object().is_some_and(|m| !m.is_empty());
                keep_present(sub, c);
                // a set emptied by pruning would read as owning the whole field
                !had_children || sub.as_object().is_some_and(|m| !m.is_empty())
            }
            None => false,
        }
    });
}

/// Records a non-apply write (create, update, patch) by `manager`: it takes ownership of
/// what it added or changed, other managers lose those fields, and fields the object no
/// longer has leave every set.
pub fn record_update(
    obj: &mut Value,
    old: &Value,
    manager: &str,
    subresource: &str,
    api_version: &str,
) {
    let changed = changed_set(old, obj);
    let mut entries = read_managed(obj);
    if changed.as_object().is_some_and(|m| !m.is_empty()) {
        for e in entries.iter_mut() {
            release(&mut e.fields, &changed);
        }
        let mine = |e: &ManagedEntry| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        };
        match entries.iter_mut().find(|e| mine(e)) {
            Some(e) => {
                union(&mut e.fields, &changed);
                e.api_version = api_version.to_owned();
                e.time = String::new();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_owned(),
                operation: "Update".into(),
                subresource: subresource.to_owned(),
                api_version: api_version.to_owned(),
                fields: changed,
                time: String::new(),
            }),
        }
    }
    for e in entries.iter_mut() {
        keep_present(&mut e.fields, obj);
    }
    if entries != read_managed(obj) {
        write_managed(obj, &entries);
    }
}

/// The live value a FieldsV1 key points at.
fn child<'a>(live: &'a Value, key: &str) -> Option<&'a Value> {
    if let Some(f) = key.strip_prefix("f:") {
        return live.get(f);
    }
    let k: Map<String, Value> = serde_json::from_str(key.strip_prefix("k:")?).ok()?;
    live.as_array()?
        .iter()
        .find(|item| k.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
}

fn child_mut<'a>(live: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    if let Some(f) = key.strip_prefix("f:") {
        return live.get_mut(f);
    }
    let k: Map<String, Value> = serde_json::from_str(key.strip_prefix("k:")?).ok()?;
    live.as_array_mut()?
        .iter_mut()
        .find(|item| k.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))
}

fn remove_child(live: &mut Value, key: &str) {
    if let Some(f) = key.strip_prefix("f:") {
        if let Some(m) = live.as_object_mut() {
            m.remove(f);
        }
        return;
    }
    let Some(k) = key
        .strip_prefix("k:")
        .and_then(|s| serde_json::from_str::<Map<String, Value>>(s).ok())
    else {
        return;
    };
    if let Some(items) = live.as_array_mut() {
        items.retain(|item| !k.iter().all(|(kk, kv)| item.get(kk) == Some(kv)));
    }
}

/// Removes from `live` what `old` owned, `new` no longer owns and no one in `others` owns.
pub fn remove_dropped(live: &mut Value, old: &Value, new: &Value, others: &[&Value]) {
    let Some(old) = old.as_object() else { return };
    for (key, old_child) in old {
        if key == "." {
            continue;
        }
        let others_here: Vec<&Value> = others.iter().filter_map(|o| o.get(key)).collect();
        match new.get(key) {
            None if others_here.is_empty() => remove_child(live, key),
            None => {}
            Some(new_child) => {
                if let Some(live_child) = child_mut(live, key) {
                    remove_dropped(live_child, old_child, new_child, &others_here);
                }
            }
        }
    }
}

/// Leaf fields in `set` where `applied` differs from `live` and `other` owns the field.
pub fn conflicts(
    set: &Value,
    applied: &Value,
    live: &Value,
    other: &Value,
    path: &str,
) -> Vec<String> {
    let mut found = Vec::new();
    let Some(set) = set.as_object() else {
        return found;
    };
    for (key, sub) in set {
        if key == "." {
            continue;
        }
        let Some(other_sub) = other.get(key) else {
            continue;
        };
        let here = format!("{path}.{}", key.get(2..).unwrap_or(key));
        let (a, l) = (child(applied, key), child(live, key));
        let is_leaf = sub.as_object().is_none_or(|m| m.is_empty());
        if is_leaf {
            if a != l {
                found.push(here);
            }
        } else if let (Some(a), Some(l)) = (a, l) {
            found.extend(conflicts(sub, a, l, other_sub, &here));
        }
    }
    found
}

/// Removes from `owned` every field of `taken` (a forced apply takes them over).
pub fn release(owned: &mut Value, taken: &Value) {
    let (Some(o), Some(t)) = (owned.as_object_mut(), taken.as_object()) else {
        return;
    };
    for (key, sub) in t {
        if key == "." {
            continue;
        }
        let is_leaf = sub.as_object().is_none_or(|m| m.is_empty());
        if is_leaf {
            o.remove(key);
        } else if let Some(child) = o.get_mut(key) {
            release(child, sub);
            if child.as_object().is_some_and(|m| m.is_empty()) {
                o.remove(key);
            }
        }
    }
}

/// Merges an applied configuration into the live object.
pub fn merge_applied(live: &mut Value, applied: &Value, field: &str) {
    match (live.as_object_mut(), applied) {
        (Some(l), Value::Object(a)) => {
            for (k, v) in a {
                if v.is_null() {
                    l.remove(k);
                } else if let Some(slot) = l.get_mut(k) {
                    merge_applied(slot, v, k);
                } else {
                    l.insert(k.clone(), v.clone());
                }
            }
        }
        _ => match (merge_key(field), live.as_array_mut(), applied.as_array()) {
            (Some(key), Some(l), Some(a)) => {
                for item in a {
                    match l
                        .iter_mut()
                        .find(|e| e.get(key).is_some() && e.get(key) == item.get(key))
                    {
                        Some(existing) => merge_applied(existing, item, ""),
                        None => l.push(item.clone()),
                    }
                }
            }
            _ => *live = applied.clone(),
        },
    }
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub subresource: String,
    pub api_version: String,
    pub fields: Value,
    /// When the manager last changed something; empty: now.
    pub time: String,
}

pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| ManagedEntry {
                    manager: e["manager"].as_str().unwrap_or_default().to_owned(),
                    operation: e["operation"].as_str().unwrap_or_default().to_owned(),
                    subresource: e["subresource"].as_str().unwrap_or_default().to_owned(),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_owned(),
                    fields: e.get("fieldsV1").cloned().unwrap_or_else(|| json!({})),
                    time: e["time"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes the entries in the real server's order: Apply before Update, then by time, by
/// manager and by subresource; each keeps the time of its manager's last change.
pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let stamp = now();
    let time = |e: &ManagedEntry| {
        if e.time.is_empty() {
            stamp.clone()
        } else {
            e.time.clone()
        }
    };
    let mut sorted: Vec<&ManagedEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| {
        (
            e.operation.clone(),
            time(e),
            e.manager.clone(),
            e.subresource.clone(),
        )
    });
    let list: Vec<Value> = sorted
        .into_iter()
        .filter(|e| e.fields.as_object().is_some_and(|m| !m.is_empty()))
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": time(e),
                "fieldsType": "FieldsV1",
                "fieldsV1": e.fields,
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// The outcome of applying a configuration to a live object.
pub struct Applied {
    pub object: Value,
}

/// Applies `config` as `manager` to `live` (an empty object when creating). With
/// `subresource` "status" only the status part counts.
pub fn apply(
    live: &Value,
    config: &Value,
    manager: &str,
    subresource: &str,
    api_version: &str,
    force: bool,
    status_subresource: bool,
) -> Result<Applied, Vec<Cause>> {
    let mut entries = read_managed(live);
    let scoped = if subresource == "status" {
        json!({"status": config.get("status").cloned().unwrap_or(Value::Null)})
    } else {
        let mut c = config.clone();
        if let Some(m) = c.as_object_mut().filter(|_| status_subresource) {
            m.remove("status");
        }
        c
    };
    let new_set = field_set(&scoped);
    let mine = |e: &ManagedEntry| {
        e.manager == manager && e.operation == "Apply" && e.subresource == subresource
    };

    let mut causes = Vec::new();
    for e in entries.iter_mut().filter(|e| !mine(e)) {
        let found = conflicts(&new_set, &scoped, live, &e.fields, "");
        if found.is_empty() {
            continue;
        }
        if force {
            release(&mut e.fields, &new_set);
        } else {
            causes.extend(found.into_iter().map(|f| {
                Cause::new(
                    "FieldManagerConflict",
                    &f,
                    format!("conflict with \"{}\": {f}", e.manager),
                )
            }));
        }
    }
    if !causes.is_empty() {
        return Err(causes);
    }

    let mut object = live.clone();
    let old_set = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_else(|| json!({}));
    let others: Vec<&Value> = entries
        .iter()
        .filter(|e| !mine(e))
        .map(|e| &e.fields)
        .collect();
    remove_dropped(&mut object, &old_set, &new_set, &others);
    merge_applied(&mut object, &scoped, "");

    match entries.iter_mut().find(|e| mine(e)) {
        Some(e) => {
            e.fields = new_set;
            e.api_version = api_version.to_owned();
            e.time = String::new();
        }
        None => entries.push(ManagedEntry {
            manager: manager.to_owned(),
            operation: "Apply".into(),
            subresource: subresource.to_owned(),
            api_version: api_version.to_owned(),
            fields: new_set,
            time: String::new(),
        }),
    }
    write_managed(&mut object, &entries);
    Ok(Applied { object })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    }

    #[test]
    fn apply_creates_then_drops_fields_it_no_longer_applies() {
        let first = apply(
            &live(),
            &json!({"metadata": {"name": "x", "labels": {"a": "1"}}, "data": {"k": "v", "j": "w"}}),
            "mgr",
            "",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        assert_eq!(first["data"], json!({"k": "v", "j": "w"}));
        assert_eq!(first["metadata"]["managedFields"][0]["manager"], "mgr");
        let second = apply(
            &first,
            &json!({"data": {"k": "v2"}}),
            "mgr",
            "",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        assert_eq!(second["data"], json!({"k": "v2"}));
        assert!(second["metadata"].get("labels").is_none());
    }

    #[test]
    fn appliers_conflict_unless_forced() {
        let a = apply(
            &live(),
            &json!({"data": {"k": "a"}}),
            "a",
            "",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        let causes = apply(&a, &json!({"data": {"k": "b"}}), "b", "", "v1", false, true)
            .err()
            .unwrap();
        assert_eq!(causes[0].field, ".data.k");
        assert!(causes[0].message.contains("conflict with \"a\""));
        // the same value is shared ownership, not a conflict
        assert!(apply(&a, &json!({"data": {"k": "a"}}), "b", "", "v1", false, true).is_ok());
        let forced = apply(&a, &json!({"data": {"k": "b"}}), "b", "", "v1", true, true)
            .unwrap()
            .object;
        assert_eq!(forced["data"]["k"], "b");
        // "a" no longer owns data.k, so dropping it from b's config removes it
        let dropped = apply(&forced, &json!({"data": {}}), "b", "", "v1", false, true)
            .unwrap()
            .object;
        assert!(dropped["data"].get("k").is_none());
    }

    #[test]
    fn keyed_lists_merge_by_key() {
        let first = apply(
            &live(),
            &json!({"spec": {"containers": [{"name": "a", "image": "1"}]}}),
            "one",
            "",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        let both = apply(
            &first,
            &json!({"spec": {"containers": [{"name": "b", "image": "2"}]}}),
            "two",
            "",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        assert_eq!(both["spec"]["containers"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn updates_take_ownership_and_conflict_with_appliers() {
        let applied = apply(
            &live(),
            &json!({"data": {"a": "1", "b": "2"}}),
            "ssa",
            "",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        let mut edited = applied.clone();
        edited["data"]["a"] = json!("5");
        edited["metadata"]["labels"] = json!({"x": "y"});
        record_update(&mut edited, &applied, "editor", "", "v1");
        let entries = read_managed(&edited);
        let editor = entries.iter().find(|e| e.manager == "editor").unwrap();
        assert_eq!(editor.operation, "Update");
        assert_eq!(
            editor.fields,
            json!({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:x": {}}}})
        );
        let ssa = entries.iter().find(|e| e.manager == "ssa").unwrap();
        assert_eq!(ssa.fields, json!({"f:data": {"f:b": {}}}));
        let causes = apply(
            &edited,
            &json!({"data": {"a": "1", "b": "2"}}),
            "ssa",
            "",
            "v1",
            false,
            true,
        )
        .err()
        .unwrap();
        assert!(causes[0].message.contains("conflict with \"editor\""));
        // a field that disappears leaves every set
        let mut shrunk = edited.clone();
        shrunk["data"] = json!({"b": "2"});
        record_update(&mut shrunk, &edited, "other", "", "v1");
        let entries = read_managed(&shrunk);
        assert_eq!(
            entries
                .iter()
                .find(|e| e.manager == "editor")
                .unwrap()
                .fields,
            json!({"f:metadata": {"f:labels": {"f:x": {}}}})
        );
    }

    #[test]
    fn status_apply_touches_only_status() {
        let obj = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
        let out = apply(
            &obj,
            &json!({"spec": {"a": 2}, "status": {"ready": true}}),
            "ctl",
            "status",
            "v1",
            false,
            true,
        )
        .unwrap()
        .object;
        assert_eq!(out["spec"]["a"], 1);
        assert_eq!(out["status"]["ready"], true);
        assert_eq!(out["metadata"]["managedFields"][0]["subresource"], "status");
    }
}
