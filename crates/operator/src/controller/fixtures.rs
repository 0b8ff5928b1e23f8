//! What the controller's unit tests share: the cluster the bindings are for, a
//! binding `team/app` of a given spec, and a raw binding `ns/b` as the watch reads it.

use kube::api::DynamicObject;
use serde_json::{Value, json};

use crate::aws::Cluster;
use crate::crd::{PodIdentityBinding, PodIdentityBindingSpec};

pub(crate) const ACCOUNT: &str = "111122223333";

pub(crate) fn cluster() -> Cluster {
    Cluster {
        name: "prod".into(),
        arn: format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/prod"),
        account_id: ACCOUNT.into(),
        status: None,
    }
}

/// The binding `team/app`, as the API server would hand it over (with a uid).
pub(crate) fn binding_of(spec: PodIdentityBindingSpec) -> PodIdentityBinding {
    let mut b = PodIdentityBinding::new("app", spec);
    b.metadata.namespace = Some("team".into());
    b.metadata.uid = Some("8d2a6f1e-0000-0000-0000-000000000001".into());
    b
}

pub(crate) fn binding(spec: Value) -> PodIdentityBinding {
    binding_of(serde_json::from_value(spec).expect("spec"))
}

/// The binding `ns/b` with this spec, read as a raw object: the spec need not be one a
/// binding can hold.
pub(crate) fn raw_binding(spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": "b", "namespace": "ns"}, "spec": spec,
    }))
    .expect("object")
}
