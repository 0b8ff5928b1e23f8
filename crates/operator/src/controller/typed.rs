//! A watched object read as a binding, or the first field of its spec that cannot be;
//! and the ServiceAccount names it gives, read without typing it.
//!
//! The controller's cache holds [`CachedBinding`]s: typed when the object reads as a
//! binding (a fraction of the memory of the untyped tree of JSON values), else the raw
//! object with the field that cannot be read, so one bad object cannot stop the watch.

use std::borrow::Cow;

use kube::api::{Api, DynamicObject, ObjectMeta};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Deserializer};
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

/// A watched binding as the controller keeps it.
// Nearly every cached binding is typed: boxing that variant would only add an
// allocation to each.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum CachedBinding {
    Typed(PodIdentityBinding),
    Unreadable(Box<Unreadable>),
}

/// An object that does not read as a binding: the first field that cannot be read
/// (`spec.role.maxSessionDuration`) and serde's words.
#[derive(Clone, Debug)]
pub struct Unreadable {
    pub raw: DynamicObject,
    pub field: String,
    pub why: String,
}

impl From<DynamicObject> for CachedBinding {
    fn from(raw: DynamicObject) -> Self {
        match typed(&raw) {
            Ok(b) => CachedBinding::Typed(b),
            Err((field, why)) => {
                CachedBinding::Unreadable(Box::new(Unreadable { raw, field, why }))
            }
        }
    }
}

impl<'de> Deserialize<'de> for CachedBinding {
    /// Read once into JSON values and typed from them; only an object that is not a
    /// binding is read again, as a raw object, to name the field at fault.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match PodIdentityBinding::deserialize(&value) {
            Ok(b) => Ok(CachedBinding::Typed(b)),
            Err(_) => serde_json::from_value::<DynamicObject>(value)
                .map(CachedBinding::from)
                .map_err(serde::de::Error::custom),
        }
    }
}

impl Resource for CachedBinding {
    type DynamicType = ();
    type Scope = <PodIdentityBinding as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        PodIdentityBinding::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        PodIdentityBinding::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        PodIdentityBinding::version(dt)
    }

    fn api_version(dt: &()) -> Cow<'_, str> {
        PodIdentityBinding::api_version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        PodIdentityBinding::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            CachedBinding::Typed(b) => &b.metadata,
            CachedBinding::Unreadable(u) => &u.raw.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            CachedBinding::Typed(b) => &mut b.metadata,
            CachedBinding::Unreadable(u) => &mut u.raw.metadata,
        }
    }
}

impl CachedBinding {
    /// The ServiceAccount the binding names.
    pub fn service_account_name(&self) -> String {
        match self {
            CachedBinding::Typed(b) => b.service_account_name(),
            CachedBinding::Unreadable(u) => sa_name_of(&u.raw),
        }
    }

    /// The ServiceAccount its status says it had.
    pub fn previous_service_account(&self) -> Option<String> {
        match self {
            CachedBinding::Typed(b) => b
                .status
                .as_ref()
                .and_then(|s| s.service_account.as_ref())
                .map(|sa| sa.name.clone()),
            CachedBinding::Unreadable(u) => previous_sa_of(&u.raw),
        }
    }

    /// The status and reason of its `Ready` condition, if it has one.
    pub fn ready(&self) -> Option<(&str, Option<&str>)> {
        match self {
            CachedBinding::Typed(b) => b
                .status
                .as_ref()?
                .conditions
                .iter()
                .find(|c| c.type_ == "Ready")
                .map(|c| (c.status.as_str(), Some(c.reason.as_str()))),
            CachedBinding::Unreadable(u) => {
                let ready = u
                    .raw
                    .data
                    .pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))?;
                let field = |name: &str| ready.get(name).and_then(Value::as_str);
                Some((field("status")?, field("reason")))
            }
        }
    }
}

/// A shell binding with the object's metadata: enough to publish Events and to run
/// cleanup actions, which read nothing else.
pub fn shell(obj: &DynamicObject) -> PodIdentityBinding {
    let mut shell = PodIdentityBinding::new(&obj.name_any(), PodIdentityBindingSpec::default());
    shell.metadata = obj.metadata.clone();
    shell
}

/// The API of bindings read as raw objects, in the namespace of `obj`.
pub fn raw_api(client: kube::Client, obj: &DynamicObject) -> Api<DynamicObject> {
    Api::namespaced_with(
        client,
        &obj.namespace().unwrap_or_default(),
        &kube::api::ApiResource::erase::<PodIdentityBinding>(&()),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    use crate::controller::fixtures::raw_binding as obj;

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

    #[test]
    fn the_cache_reads_the_same_names_and_readiness_typed_or_not() {
        let object = |spec: Value| {
            json!({
                "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
                "metadata": {"name": "b", "namespace": "ns", "uid": "u"}, "spec": spec,
                "status": {
                    "serviceAccount": {"name": "before", "created": true},
                    "conditions": [{"type": "Ready", "status": "False", "reason": "RoleConflict",
                                    "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                },
            })
        };
        let read = |spec: Value| -> CachedBinding {
            serde_json::from_value(object(spec)).expect("any object is cached")
        };
        let typed = read(json!({"serviceAccount": {"name": "app"}}));
        let unreadable = read(json!({"serviceAccount": {"name": "app"}, "tags": ["a"]}));
        assert!(matches!(typed, CachedBinding::Typed(_)), "{typed:?}");
        let CachedBinding::Unreadable(u) = &unreadable else {
            panic!("{unreadable:?}")
        };
        assert_eq!(u.field, "spec.tags");
        for cached in [&typed, &unreadable] {
            assert_eq!(cached.service_account_name(), "app");
            assert_eq!(cached.previous_service_account().as_deref(), Some("before"));
            assert_eq!(cached.ready(), Some(("False", Some("RoleConflict"))));
            assert_eq!(cached.meta().uid.as_deref(), Some("u"));
        }
        let unnamed = read(json!({}));
        assert_eq!(unnamed.service_account_name(), "b");
    }
}
