//! Bindings that cannot be read as a `PodIdentityBinding` (schema bypassed, an older
//! version's shape): the controller watches bindings as untyped objects, so one such
//! object never stops the watch for the others; it gets `Ready=False`, reason
//! `InvalidSpec`, naming the first field that cannot be read, and a Warning Event. No AWS
//! call is made for it.
//!
//! Not implemented: cleanup of a malformed binding being deleted that still holds the
//! finalizer (its spec is needed to know what to remove); the status says to fix the
//! spec so cleanup can run.

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::crd::{
    Condition, FINALIZER, PodIdentityBinding, PodIdentityBindingSpec, RoleSpec, ServiceAccountSpec,
};
use crate::{Error, Result};

use super::Context;
use super::status::{self, Conditions, Reason, State};

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

/// Reports a binding that cannot be read, once per generation.
pub async fn report(obj: &DynamicObject, field: &str, why: &str, ctx: &Context) -> Result<Action> {
    let ns = obj.namespace().unwrap_or_default();
    let deleting = obj.metadata.deletion_timestamp.is_some()
        && obj.finalizers().iter().any(|f| f == FINALIZER);
    let message = if deleting {
        format!(
            "{field}: cannot be read ({why}); the AWS resources cannot be cleaned up until the spec is fixed"
        )
    } else {
        format!(
            "{field}: cannot be read ({why}); fix the field (see kubectl explain podidentitybinding.{})",
            field
                .trim_start_matches("spec.")
                .split('.')
                .next()
                .unwrap_or_default()
        )
    };
    let old: Vec<Condition> = obj
        .data
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let generation = obj.metadata.generation;
    let was = old.iter().find(|c| c.type_ == "Ready");
    if was.is_some_and(|c| {
        c.reason == Reason::InvalidSpec.as_str()
            && c.message == message
            && c.observed_generation == generation
    }) {
        return Ok(Action::await_change());
    }
    let conditions = status::merge(
        &old,
        &Conditions {
            ready: State::failed(Reason::InvalidSpec, message.clone()),
            role: State::unknown(),
            service_account: State::unknown(),
            association: State::unknown(),
        },
        generation,
    );
    // An Event needs an object reference only: a shell with the object's metadata.
    let mut shell = PodIdentityBinding::new(&obj.name_any(), PodIdentityBindingSpec::default());
    shell.metadata = obj.metadata.clone();
    ctx.publish(
        &shell,
        EventType::Warning,
        Reason::InvalidSpec.as_str(),
        message,
    )
    .await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<PodIdentityBinding>(&()),
    );
    api.patch_status(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {
            "observedGeneration": generation,
            "conditions": serde_json::to_value(&conditions).map_err(Error::from)?,
        }})),
    )
    .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
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
