//! kubesim and the real API server against kube-rs, with the same assertions: every
//! scenario runs on kubesim in-process, over TCP, and on a real kube-apiserver
//! (`support/differential.rs`). Where kubesim deliberately differs, the scenario asserts
//! each server's answer and `crates/kubesim/README.md` lists the difference.
//!
//! By scenario: `crud` (create, read, update, delete, conflicts, selectors, bad input,
//! every patch type, the status subresource and generation), `crds` (a CRD's install,
//! schema errors and removal), `garbage_collection` (owner references), `metadata`
//! (metadata-only clients), `faults` (kubesim's fault injection and write counters), and
//! `leases_and_events` (Leases, and Events served in two shapes).

#[path = "../support/cluster.rs"]
mod cluster;
#[path = "../support/differential.rs"]
mod differential;

mod crds;
mod crud;
mod faults;
mod garbage_collection;
mod leases_and_events;
mod metadata;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::{Value, json};

use differential::{Server, eventually};

// Shared by the scenarios: the `Widget` custom resource.

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "selectableFields": [{"jsonPath": ".spec.color"}],
                "additionalPrinterColumns": [
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                    {"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["color"],
                            "properties": {
                                "color": {"type": "string", "enum": ["red", "blue"]},
                                "size": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
                                "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}}
                            },
                            "x-kubernetes-validations": [
                                {"rule": "self.color != 'red' || self.size <= 5", "message": "red widgets are small"}
                            ]
                        },
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            }]
        }
    }))
    .unwrap()
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
        "widgets",
    )
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    let mut w = DynamicObject::new(name, &widget_resource());
    w.data = json!({"spec": spec});
    w
}

async fn install_widgets(s: &Server) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(s.client.clone());
    let created = crds
        .create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();
    let established = |c: &CustomResourceDefinition| {
        c.status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    };
    // kubesim establishes a CRD within its create; the real server's controllers a
    // moment later
    assert_eq!(established(&created), !s.is_real(), "{:?}", created.status);
    eventually("the CRD is established", || {
        let crds = crds.clone();
        async move {
            crds.get("widgets.example.com")
                .await
                .ok()
                .filter(established)
        }
    })
    .await;
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(s.client.clone(), "default", &widget_resource());
    eventually("widgets are served", || {
        let widgets = widgets.clone();
        async move { widgets.list(&ListParams::default()).await.ok() }
    })
    .await;
    widgets
}
