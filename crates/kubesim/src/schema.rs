//! Structural schemas of custom resources: pruning, defaulting, validation.
//!
//! Implemented, in the real server's order: unknown fields are pruned (everywhere except
//! under `x-kubernetes-preserve-unknown-fields: true`; `apiVersion`, `kind` and `metadata`
//! at the root are kept), `default`s are applied to absent properties, then the object is
//! validated against the `openAPIV3Schema` with the `jsonschema` crate (as draft 4, with
//! `nullable` translated; formats are not checked), then the CEL rules of
//! `x-kubernetes-validations` are evaluated with `kube-cel` (kube's `cel` feature), with
//! `oldSelf` on updates (regex literals read as RE2 reads them, ASCII `\w`, and compiled
//! quickly for it: `re2.rs`). Violations become 422 causes with the real server's field paths
//! (`spec.items[0].name`) and message shapes for the common keywords.
//! Not implemented: `x-kubernetes-list-type` uniqueness, `x-kubernetes-embedded-resource`
//! metadata checks, format checks, CEL cost limits.

use serde_json::{Map, Value};

use super::failure::{Cause, render_value};

/// A custom resource version's schema, ready to check objects.
pub struct CompiledSchema {
    raw: Value,
    validator: jsonschema::Validator,
    has_cel: bool,
    /// The CEL rules, compiled once.
    cel: kube::core::cel::CompiledSchema,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema")
            .field("has_cel", &self.has_cel)
            .finish_non_exhaustive()
    }
}

/// openAPIV3Schema to JSON Schema draft 4: `nullable` becomes a `null` type.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out: Map<String, Value> = m
                .iter()
                .filter(|(k, _)| !k.starts_with("x-kubernetes-") && k.as_str() != "nullable")
                .map(|(k, v)| {
                    let keep_as_is = matches!(k.as_str(), "default" | "enum" | "example");
                    (
                        k.clone(),
                        if keep_as_is {
                            v.clone()
                        } else {
                            to_json_schema(v)
                        },
                    )
                })
                .collect();
            if m.get("nullable") == Some(&Value::Bool(true)) {
                if let Some(Value::String(t)) = out.get("type").cloned() {
                    out.insert("type".into(), serde_json::json!([t, "null"]));
                }
                if let Some(Value::Array(e)) = out.get_mut("enum") {
                    e.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

fn contains_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key) || m.values().any(|c| contains_key(c, key)),
        Value::Array(a) => a.iter().any(|c| contains_key(c, key)),
        _ => false,
    }
}

fn preserves(schema: &Value) -> bool {
    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn prune(value: &mut Value, schema: &Value, path: &str, root: bool, pruned: &mut Vec<String>) {
    match value {
        Value::Object(obj) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keep_unknown =
                preserves(schema) || schema.get("additionalProperties") == Some(&Value::Bool(true));
            let keys: Vec<String> = obj.keys().cloned().collect();
            for k in keys {
                if root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let child_path = join(path, &k);
                let sub = props.and_then(|p| p.get(&k)).or(additional);
                match (sub, obj.get_mut(&k)) {
                    (Some(sub), Some(child)) => prune(child, sub, &child_path, false, pruned),
                    (None, _) if keep_unknown => {}
                    (None, _) => {
                        obj.remove(&k);
                        pruned.push(child_path);
                    }
                    (Some(_), None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, sub, &format!("{path}[{i}]"), false, pruned);
                }
            }
        }
        _ => {}
    }
}

fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(obj) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, sub) in props {
                    if let (false, Some(d)) = (obj.contains_key(k), sub.get("default")) {
                        obj.insert(k.clone(), d.clone());
                    }
                    if let Some(child) = obj.get_mut(k) {
                        apply_defaults(child, sub);
                    }
                }
            }
            if let Some(sub) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for child in obj.values_mut() {
                    apply_defaults(child, sub);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = schema.get("items") {
                for item in items {
                    apply_defaults(item, sub);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A JSON pointer into `obj` as the API server writes field paths: `spec.items[0].name`.
pub fn field_path(obj: &Value, pointer: &str) -> String {
    let mut out = String::new();
    let mut cur = Some(obj);
    for raw in pointer.split('/').skip(1) {
        let seg = raw.replace("~1", "/").replace("~0", "~");
        match cur {
            Some(Value::Array(a)) => {
                out.push_str(&format!("[{seg}]"));
                cur = seg.parse::<usize>().ok().and_then(|i| a.get(i));
            }
            other => {
                out = join(&out, &seg);
                cur = other.and_then(|v| v.get(&seg));
            }
        }
    }
    out
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A bound as Go's `%v` prints it: `10`, not `10.0`.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn cause_for(obj: &Value, err: &jsonschema::ValidationError<'_>) -> Cause {
    use jsonschema::error::ValidationErrorKind as K;
    let field = field_path(obj, &err.instance_path().to_string());
    let value: &Value = err.instance();
    let shown = if field.is_empty() {
        "body".to_owned()
    } else {
        field.clone()
    };
    match err.kind() {
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            Cause::required(&join(&field, name))
        }
        K::Type { kind } => {
            let want = match kind {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(ts) => format!("{ts:?}"),
            };
            let got = Value::String(type_name(value).to_owned());
            let shown_got = render_value(&got);
            Cause::new(
                "FieldValueTypeInvalid",
                &field,
                format!(
                    "Invalid value: {shown_got}: {shown} in body must be of type {want}: {shown_got}"
                ),
            )
        }
        K::Enum { options } => {
            let listed: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(render_value).collect())
                .unwrap_or_default();
            Cause::new(
                "FieldValueNotSupported",
                &field,
                format!(
                    "Unsupported value: {}: supported values: {}",
                    render_value(value),
                    listed.join(", ")
                ),
            )
        }
        K::Minimum { limit } => Cause::invalid(
            &field,
            value,
            &format!(
                "{shown} in body should be greater than or equal to {}",
                number(limit)
            ),
        ),
        K::Maximum { limit } => Cause::invalid(
            &field,
            value,
            &format!(
                "{shown} in body should be less than or equal to {}",
                number(limit)
            ),
        ),
        K::MinLength { limit } => Cause::invalid(
            &field,
            value,
            &format!("{shown} in body should be at least {limit} chars long"),
        ),
        K::MaxLength { limit } => Cause::new(
            "FieldValueTooLong",
            &field,
            format!("Too long: may not be more than {limit} bytes"),
        ),
        K::MinItems { limit } => Cause::invalid(
            &field,
            value,
            &format!("{shown} in body should have at least {limit} items"),
        ),
        K::MaxItems { limit } => Cause::new(
            "FieldValueTooMany",
            &field,
            format!(
                "Too many: {}: must have at most {limit} items",
                value.as_array().map_or(0, Vec::len)
            ),
        ),
        K::Pattern { pattern } => Cause::invalid(
            &field,
            value,
            &format!("{shown} in body should match '{pattern}'"),
        ),
        _ => Cause::invalid(&field, value, &err.to_string()),
    }
}

/// Reasons of schema errors that keep the validation rules from being evaluated.
const BLOCKING: &[&str] = &[
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// A failed validation rule as the real server words it: the value is shown for
/// scalars and left out for objects and arrays; the rule's `reason` picks the cause.
fn rule_cause(obj: &Value, e: &kube::core::cel::ValidationError) -> Cause {
    let at = obj.pointer(&format!("/{}", e.field_path.replace('.', "/")));
    let value = match at {
        None | Some(Value::Object(_) | Value::Array(_)) => None,
        Some(v) => Some(render_value(v)),
    };
    let field = e.field_path.as_str();
    match e.reason.as_deref() {
        Some("FieldValueForbidden") => Cause::forbidden(field, &e.message),
        Some("FieldValueRequired") => Cause::required(field).with_detail(&e.message),
        Some("FieldValueDuplicate") => Cause::new(
            "FieldValueDuplicate",
            field,
            value.map_or("Duplicate value".into(), |v| {
                format!("Duplicate value: {v}")
            }),
        ),
        _ => Cause::new(
            "FieldValueInvalid",
            field,
            match value {
                Some(v) => format!("Invalid value: {v}: {}", e.message),
                None => format!("Invalid value: {}", e.message),
            },
        ),
    }
}

impl CompiledSchema {
    /// Compiles an `openAPIV3Schema`; the error is the reason it is not a usable schema.
    pub fn compile(schema: &Value) -> Result<Self, String> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(false)
            .build(&to_json_schema(schema))
            .map_err(|e| e.to_string())?;
        Ok(Self {
            raw: schema.clone(),
            validator,
            has_cel: contains_key(schema, "x-kubernetes-validations"),
            cel: {
                let mut cel = kube::core::cel::compile_schema(schema);
                super::re2::rewrite_schema(&mut cel);
                cel
            },
        })
    }

    /// Prunes and defaults `obj` in place, then validates it. Answers the paths of pruned
    /// fields, or the causes of a 422.
    pub fn admit(&self, obj: &mut Value, old: Option<&Value>) -> Result<Vec<String>, Vec<Cause>> {
        let mut pruned = Vec::new();
        prune(obj, &self.raw, "", true, &mut pruned);
        apply_defaults(obj, &self.raw);
        let mut causes: Vec<Cause> = self
            .validator
            .iter_errors(obj)
            .map(|e| cause_for(obj, &e))
            .collect();
        // as the real server: rules are not evaluated when a blocking error (a wrong
        // type, a missing field, an unsupported value, too long, too many) was found
        if self.has_cel {
            if causes.iter().any(|c| BLOCKING.contains(&c.reason.as_str())) {
                causes.push(Cause::new(
                    "FieldValueInvalid",
                    "<nil>",
                    "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            } else if let Err(errors) =
                kube::core::cel::Validator::new().validate_compiled(&self.cel, obj, old)
            {
                causes.extend(errors.into_vec().iter().map(|e| rule_cause(obj, e)));
            }
        }
        if causes.is_empty() {
            Ok(pruned)
        } else {
            Err(causes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> CompiledSchema {
        CompiledSchema::compile(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "maxLength": 10},
                        "size": {"type": "integer", "minimum": 1, "default": 3},
                        "mode": {"type": "string", "enum": ["A", "B"]},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "items": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "integer"}}}},
                        "note": {"type": "string", "nullable": true}
                    },
                    "x-kubernetes-validations": [{"rule": "self.size <= 10", "message": "size must be at most 10"}]
                },
                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
            }
        }))
        .unwrap()
    }

    #[test]
    fn prunes_defaults_and_keeps_preserved_fields() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"name": "n", "junk": 1, "free": {"any": {"thing": 1}}, "items": [{"n": 1, "x": 2}], "note": null},
            "extra": true});
        let pruned = schema().admit(&mut obj, None).unwrap();
        assert_eq!(
            pruned,
            vec![
                "extra".to_string(),
                "spec.items[0].x".into(),
                "spec.junk".into()
            ]
        );
        assert_eq!(obj["spec"]["size"], 3);
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        assert_eq!(obj["metadata"]["name"], "a");
    }

    #[test]
    fn violations_name_their_fields() {
        let mut obj = json!({"spec": {"size": 0, "mode": "C", "name": "much-too-long", "items": [{"n": "x"}]}});
        let causes = schema().admit(&mut obj, None).unwrap_err();
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        for want in ["spec.size", "spec.mode", "spec.name", "spec.items[0].n"] {
            assert!(fields.contains(&want), "{want} missing from {causes:?}");
        }
        let mut missing = json!({"spec": {}});
        let causes = schema().admit(&mut missing, None).unwrap_err();
        assert_eq!(causes[0].field, "spec.name");
        assert_eq!(causes[0].message, "Required value");
    }

    #[test]
    fn rule_patterns_read_perl_classes_as_ascii() {
        let schema = CompiledSchema::compile(&json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"names": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "x-kubernetes-validations": [{"rule": "self.all(k, k.matches('^[\\\\w+=,.@-]{1,128}$'))"}]
            }}}}
        }))
        .unwrap();
        let mut ok = json!({"spec": {"names": {"my-policy_1": "x"}}});
        assert!(schema.admit(&mut ok, None).is_ok());
        for key in ["pölicy", "no spaces", &"a".repeat(129)] {
            let mut bad = json!({"spec": {"names": {key: "x"}}});
            let causes = schema.admit(&mut bad, None).unwrap_err();
            assert_eq!(causes.len(), 1, "{key}: {causes:?}");
            assert_eq!(causes[0].field, "spec.names");
            // the message quotes the rule as written
            assert!(
                causes[0]
                    .message
                    .contains(r"k.matches('^[\\w+=,.@-]{1,128}$')"),
                "{causes:?}"
            );
        }
    }

    #[test]
    fn cel_rules_are_enforced() {
        let mut obj = json!({"spec": {"name": "n", "size": 11}});
        let causes = schema().admit(&mut obj, None).unwrap_err();
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(
            causes[0].message.contains("size must be at most 10"),
            "{causes:?}"
        );
    }
}
