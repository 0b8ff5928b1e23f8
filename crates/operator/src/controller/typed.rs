//! A watched object read as a binding, or the first field of its spec that cannot be;
//! and the ServiceAccount names it gives, read without typing it.

use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::Value;

use crate::crd::{PodIdentityBinding, PodIdentityBindingSpec, RoleSpec, ServiceAccountSpec};

/// The object as a binding, or why it is not one: the path of the first field that cannot
/// be read (`spec.role.maxSessionDuration`) and serde's words.
pub fn typed(obj: &DynamicObject) -> std::result::Result<PodIdentityBinding, (String, String)> {
    let value = serde_json::to_value(obj).map_err(|e| ("spec".to_owned(), e.to_string()))?;
    match serde_json::from_value::<PodIdentityBinding>(value) {
        Ok(b) => Ok(b),
        Err(e) => {
            Err(locate(obj.data.get("spec")).unwrap_or_else(|| ("spec".into(), e.to_string())))
        }
    }
}

/// The first field of the spec serde refuses, looked for key by key.
fn locate(spec: Option<&Value>) -> Option<(String, String)> {
    let Some(Value::Object(spec)) = spec else {
        return Some(("spec".into(), "must be an object".into()));
    };
    fn first_bad<T: serde::de::DeserializeOwned>(
        prefix: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> Option<(String, String)> {
        fields.iter().find_map(|(k, v)| {
            let one = Value::Object([(k.clone(), v.clone())].into_iter().collect());
            serde_json::from_value::<T>(one)
                .err()
                .map(|e| (format!("{prefix}.{k}"), e.to_string()))
        })
    }
    let (field, message) = first_bad::<PodIdentityBindingSpec>("spec", spec)?;
    let nested = match (field.as_str(), spec.get(field.trim_start_matches("spec."))) {
        ("spec.role", Some(Value::Object(r))) => first_bad::<RoleSpec>("spec.role", r),
        ("spec.serviceAccount", Some(Value::Object(s))) => {
            first_bad::<ServiceAccountSpec>("spec.serviceAccount", s)
        }
        _ => None,
    };
    Some(nested.unwrap_or((field, message)))
}

/// The ServiceAccount a watched binding names, read without typing the whole object.
pub fn sa_name_of(obj: &DynamicObject) -> String {
    obj.data
        .pointer("/spec/serviceAccount/name")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| obj.name_any())
}

/// The ServiceAccount a watched binding's status says it had, read without typing it.
pub fn previous_sa_of(obj: &DynamicObject) -> Option<String> {
    obj.data
        .pointer("/status/serviceAccount/name")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(spec: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": "b", "namespace": "ns"}, "spec": spec,
        }))
        .expect("object")
    }

    #[test]
    fn readable_objects_become_bindings() {
        let b = typed(&obj(json!({"role": {"maxSessionDuration": 7200}}))).expect("typed");
        assert_eq!(b.spec.role.max_session_duration, Some(7200));
    }

    #[test]
    fn the_first_unreadable_field_is_named() {
        let field = |spec| typed(&obj(spec)).expect_err("malformed").0;
        assert_eq!(
            field(json!({"role": {"maxSessionDuration": "long"}})),
            "spec.role.maxSessionDuration"
        );
        assert_eq!(field(json!({"role": "admin"})), "spec.role");
        assert_eq!(
            field(json!({"serviceAccount": {"create": "yes"}})),
            "spec.serviceAccount.create"
        );
        assert_eq!(
            field(json!({"deletionPolicy": "Sometimes"})),
            "spec.deletionPolicy"
        );
        assert_eq!(field(json!({"tags": ["a"]})), "spec.tags");
        assert_eq!(field(json!("nope")), "spec");
    }
}
