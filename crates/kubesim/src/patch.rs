//! The three classic patch formats, as pure functions on JSON documents.
//!
//! - JSON merge patch (RFC 7386) through the `json-patch` crate.
//! - JSON patch (RFC 6902, every op including `test`) through the `json-patch` crate.
//! - Strategic merge patch, for built-in kinds only (custom resources answer 415 as the
//!   real server does). Covered: maps merge and `null` deletes; lists whose field name has
//!   a merge key in Kubernetes' core types (`containers`, `initContainers`,
//!   `ephemeralContainers`, `env`, `volumes`, `imagePullSecrets`, `secrets`,
//!   `resourceClaims` by `name`; `volumeMounts` by `mountPath`; `ports` by
//!   `containerPort`; `conditions` by `type`; `ownerReferences` by `uid`; `hostAliases` by
//!   `ip`) merge item by item, `finalizers` merges as a set; the directives `$patch:
//!   replace|delete|merge`, `$retainKeys`, `$deleteFromPrimitiveList/<field>`, and
//!   `$setElementOrder/<field>` (accepted, order not enforced). Not covered: merge keys
//!   chosen by type rather than by field name (a field named like one above in another
//!   type merges the same way), `$patch` on primitive lists, ordering directives.

use serde_json::{Map, Value};

use super::failure::Failure;

/// The list fields of built-in types that merge by key, and their keys.
pub fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "ports" => "containerPort",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        _ => return None,
    })
}

/// Primitive lists that merge as sets.
fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies a JSON patch atomically. As the real server's implementation does, a `test`
/// of the value `null` passes when the path does not exist (kube-runtime's finalizer
/// helper relies on it to add the first finalizer).
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), Failure> {
    if !patch.is_array() {
        let found = match patch {
            Value::Object(_) => "object",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            _ => "null",
        };
        return Err(Failure::bad_request(format!(
            "error decoding patch: json: cannot unmarshal {found} into Go value of type []handlers.jsonPatchOp"
        )));
    }
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|_| Failure::json_patch_failed())?;
    let mut doc = target.clone();
    for op in ops.0 {
        if let json_patch::PatchOperation::Test(t) = &op
            && t.value.is_null()
            && doc.pointer(t.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut doc, &[op]).map_err(|_| Failure::json_patch_failed())?;
    }
    *target = doc;
    Ok(())
}

/// Applies a strategic merge patch; `patch` must be a JSON object.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), Failure> {
    let Some(p) = patch.as_object() else {
        return Err(Failure::bad_request(
            "strategic merge patch must be a JSON object",
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    merge_map(target, p);
    Ok(())
}

/// The patch value with every directive removed, for inserting where nothing merges.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), clean(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

fn merge_map(target: &mut Value, patch: &Map<String, Value>) {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = clean(&Value::Object(patch.clone()));
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    let Some(t) = target.as_object_mut() else {
        *target = clean(&Value::Object(patch.clone()));
        return;
    };
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(gone)) = (t.get_mut(field), pv.as_array()) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match pv {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(pm) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    t.remove(k);
                    continue;
                }
                let slot = t.entry(k.clone()).or_insert(Value::Null);
                if slot.is_object() {
                    merge_map(slot, pm);
                } else {
                    *slot = clean(pv);
                }
            }
            Value::Array(items) => {
                let slot = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                match (merge_key(k), slot.as_array_mut()) {
                    (Some(key), Some(existing)) => merge_keyed_list(existing, items, key),
                    (None, Some(existing)) if is_set_list(k) => {
                        for item in items {
                            if !existing.contains(item) {
                                existing.push(item.clone());
                            }
                        }
                    }
                    _ => *slot = clean(pv),
                }
            }
            scalar => {
                t.insert(k.clone(), scalar.clone());
            }
        }
    }
}

fn merge_keyed_list(existing: &mut Vec<Value>, items: &[Value], key: &str) {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *existing = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(clean)
            .collect();
        return;
    }
    for item in items {
        let Some(im) = item.as_object() else {
            existing.push(item.clone());
            continue;
        };
        let id = im.get(key);
        let pos = id.and_then(|id| existing.iter().position(|e| e.get(key) == Some(id)));
        let delete = im.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => merge_map(&mut existing[i], im),
            (None, false) => existing.push(clean(item)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ]}});
        strategic_merge(
            &mut pod,
            &json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                {"name": "b", "$patch": "delete"},
                {"name": "c", "image": "c:1"}
            ]}}),
        )
        .unwrap();
        assert_eq!(
            pod,
            json!({"spec": {"containers": [
                {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "c", "image": "c:1"}
            ]}})
        );
    }

    #[test]
    fn strategic_merge_directives() {
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}},
                             "spec": {"args": ["1", "2"], "m": {"k": 1, "j": 2}}});
        strategic_merge(
            &mut obj,
            &json!({"metadata": {"finalizers": ["c"], "$deleteFromPrimitiveList/finalizers": ["a"],
                                 "labels": {"x": null}},
                    "spec": {"args": ["3"], "m": {"$patch": "replace", "z": 0},
                             "$setElementOrder/args": ["3"]}}),
        )
        .unwrap();
        assert_eq!(
            obj,
            json!({"metadata": {"finalizers": ["b", "c"], "labels": {"y": "2"}},
                   "spec": {"args": ["3"], "m": {"z": 0}}})
        );
    }

    #[test]
    fn json_patch_test_op_failure_is_422() {
        let mut obj = json!({"metadata": {"finalizers": ["a"]}});
        let err = json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "b"},
                    {"op": "remove", "path": "/metadata/finalizers/0"}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(obj, json!({"metadata": {"finalizers": ["a"]}}));
        assert_eq!(
            json_patch(&mut obj, &json!({"op": 1})).unwrap_err().code,
            400
        );
    }

    #[test]
    fn json_patch_test_of_null_passes_on_a_missing_path() {
        let mut obj = json!({"metadata": {"name": "x"}});
        json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]),
        )
        .expect("test of null on a missing path passes");
        assert_eq!(obj["metadata"]["finalizers"], json!(["f"]));
        let err = json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
    }
}
