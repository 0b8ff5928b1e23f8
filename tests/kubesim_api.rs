//! kubesim and the real API server against kube-rs, with the same assertions: every
//! scenario runs on kubesim in-process, over TCP, and on a real kube-apiserver
//! (`support/differential.rs`). Where kubesim deliberately differs, the scenario asserts
//! each server's answer and `crates/kubesim/README.md` lists the difference.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/differential.rs"]
mod differential;

use std::collections::BTreeSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::runtime::{WatchStreamExt, watcher};
use pod_identity_operator::kubesim::Verb;
use serde_json::{Value, json};

use differential::{
    Server, WAIT, api_error, cm, configmap_versions, eventually, on_all, on_kubesim, rv,
};

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

#[tokio::test]
async fn crud_conflicts_selectors_and_bad_input() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let listed = cms.list(&ListParams::default()).await.unwrap();
        let rv0: u64 = listed.metadata.resource_version.unwrap().parse().unwrap();
        let a = cms
            .create(&PostParams::default(), &cm("a", json!({"app": "web"})))
            .await
            .unwrap();
        assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
        assert!(rv(&a) > rv0);
        cms.create(&PostParams::default(), &cm("b", json!({"app": "db"})))
            .await
            .unwrap();

        let (code, reason, msg) = api_error(
            cms.create(&PostParams::default(), &cm("a", json!({})))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (code, reason.as_str(), msg.as_str()),
            (409, "AlreadyExists", "configmaps \"a\" already exists")
        );

        let mut generated = cm("", json!({}));
        generated.metadata.name = None;
        generated.metadata.generate_name = Some("gen-".into());
        let g = cms
            .create(&PostParams::default(), &generated)
            .await
            .unwrap();
        assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9);

        let web = cms
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        assert_eq!(
            web.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
            vec!["a"]
        );
        let notweb = cms
            .list(&ListParams::default().labels("app,app notin (web)"))
            .await
            .unwrap();
        assert_eq!(notweb.items.len(), 1);
        let by_name = cms
            .list(&ListParams::default().fields("metadata.name=b"))
            .await
            .unwrap();
        assert_eq!(by_name.items[0].name_any(), "b");
        let all: Api<ConfigMap> = Api::all(client.clone());
        let in_default = all
            .list(&ListParams::default().fields("metadata.namespace=default"))
            .await
            .unwrap();
        assert_eq!(in_default.items.len(), 3);
        // field selectors name only the fields the kind offers
        let (code, _, msg) = api_error(
            cms.list(&ListParams::default().fields("data.k=v"))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (code, msg.as_str()),
            (400, "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\"")
        );
        let nss: Api<Namespace> = Api::all(client.clone());
        assert_eq!(
            nss.list(&ListParams::default().fields("status.phase=Active"))
                .await
                .unwrap()
                .items
                .len(),
            4
        );

        // optimistic concurrency
        let mut stale = cms.get("a").await.unwrap();
        let mut fresh = stale.clone();
        fresh.data = Some([("k".to_string(), "fresh".to_string())].into());
        let updated = cms
            .replace("a", &PostParams::default(), &fresh)
            .await
            .unwrap();
        assert!(updated.resource_version() > stale.resource_version());
        stale.data = Some([("k".to_string(), "stale".to_string())].into());
        let (code, reason, _) = api_error(
            cms.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
        assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "fresh");

        // an update that changes nothing keeps the resourceVersion
        let same = cms
            .replace("a", &PostParams::default(), &updated)
            .await
            .unwrap();
        assert_eq!(same.resource_version(), updated.resource_version());

        // rejected requests change nothing
        let before = configmap_versions(&cms).await;
        let sim_before = s.sim().map(|sim| sim.resource_version());
        let missing_ns: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
        let (code, reason, msg) = api_error(
            missing_ns
                .create(&PostParams::default(), &cm("x", json!({})))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (code, reason.as_str(), msg.as_str()),
            (404, "NotFound", "namespaces \"nowhere\" not found")
        );
        let (code, reason, msg) = api_error(
            cms.create(&PostParams::default(), &cm("Bad_Name", json!({})))
                .await
                .unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (422, "Invalid"));
        assert!(
            msg.starts_with(
                "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
            ),
            "{msg}"
        );
        let bad_label = cm("ok", json!({"app": "-bad-"}));
        assert_eq!(
            api_error(
                cms.create(&PostParams::default(), &bad_label)
                    .await
                    .unwrap_err()
            )
            .0,
            422
        );
        let raw = http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/json")
            .body(b"{not json".to_vec())
            .unwrap();
        let (code, reason, _) = api_error(client.request::<Value>(raw).await.unwrap_err());
        assert_eq!((code, reason.as_str()), (400, "BadRequest"));
        let raw = http::Request::get("/api/v1/namespaces/default/gizmos")
            .body(Vec::new())
            .unwrap();
        assert_eq!(
            api_error(client.request::<Value>(raw).await.unwrap_err()).0,
            404
        );
        let raw = http::Request::patch("/api/v1/namespaces/default/configmaps/a")
            .header("content-type", "application/merge-patch+json")
            .body(b"[1,".to_vec())
            .unwrap();
        assert_eq!(
            api_error(client.request::<Value>(raw).await.unwrap_err()).0,
            400
        );
        // built-in kinds are decoded as the server's types: wrong types are refused,
        // unknown fields dropped (or refused with fieldValidation=Strict)
        let raw = http::Request::post("/api/v1/namespaces/default/pods")
            .header("content-type", "application/json")
            .body(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":"nginx"}}"#.to_vec())
            .unwrap();
        let (code, _, msg) = api_error(client.request::<Value>(raw).await.unwrap_err());
        assert_eq!(code, 400);
        assert!(msg.starts_with("Pod in version \"v1\" cannot be handled as a Pod: "), "{msg}");
        let with_junk = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"junk"},"data":{"a":"b"},"junk":1}"#;
        let raw = http::Request::post("/api/v1/namespaces/default/configmaps?fieldValidation=Strict")
            .header("content-type", "application/json")
            .body(with_junk.to_vec())
            .unwrap();
        let (code, _, msg) = api_error(client.request::<Value>(raw).await.unwrap_err());
        assert_eq!(code, 400);
        assert!(msg.contains("strict decoding error: unknown field \"junk\""), "{msg}");
        assert_eq!(configmap_versions(&cms).await, before);
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        assert!(pods.list(&ListParams::default()).await.unwrap().items.is_empty());
        if let Some(sim) = s.sim() {
            assert_eq!(Some(sim.resource_version()), sim_before, "no write at all");
        }
        let raw = http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("content-type", "application/json")
            .body(with_junk.to_vec())
            .unwrap();
        let stored: Value = client.request(raw).await.unwrap();
        assert!(stored.get("junk").is_none() && stored["data"]["a"] == "b", "{stored}");

        // delete
        cms.delete("b", &DeleteParams::default()).await.unwrap();
        assert_eq!(api_error(cms.get("b").await.unwrap_err()).0, 404);
        assert_eq!(
            api_error(cms.delete("b", &DeleteParams::default()).await.unwrap_err()).0,
            404
        );
    })
    .await;
}

#[tokio::test]
async fn every_patch_type() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        cms.create(&PostParams::default(), &cm("p", json!({"a": "1"}))).await.unwrap();

        // merge patch: null deletes
        let merged = cms
            .patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": null, "b": "2"}}, "data": {"x": "y"}})))
            .await
            .unwrap();
        assert_eq!(merged.labels().get("b").map(String::as_str), Some("2"));
        assert!(!merged.labels().contains_key("a"));
        assert_eq!(merged.data.as_ref().unwrap().len(), 2);

        // merge patch with a stale resourceVersion is a conflict
        let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "z"}}));
        assert_eq!(api_error(cms.patch("p", &PatchParams::default(), &stale).await.unwrap_err()).1, "Conflict");

        // JSON patch with test, as kube-rs's finalizer helper sends it
        let jp: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/data/x", "value": "y"},
            {"op": "replace", "path": "/data/x", "value": "w"}
        ]))
        .unwrap();
        let patched = cms.patch("p", &PatchParams::default(), &Patch::Json::<()>(jp)).await.unwrap();
        assert_eq!(patched.data.unwrap()["x"], "w");
        let failing: json_patch::Patch =
            serde_json::from_value(json!([{"op": "test", "path": "/data/x", "value": "y"}])).unwrap();
        let (code, _, _) = api_error(cms.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing)).await.unwrap_err());
        assert_eq!(code, 422);

        // strategic merge patch merges containers by name
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "pod"}, "spec": {"containers": [
            {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let smp = Patch::Strategic(json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}));
        let pod = pods.patch("pod", &PatchParams::default(), &smp).await.unwrap();
        let images: Vec<String> = pod.spec.unwrap().containers.into_iter().map(|c| c.image.unwrap()).collect();
        assert_eq!(images, vec!["a:1", "b:2"]);
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));

        // server-side apply: create, update, drop a field, conflict, force
        let apply = |data: Value| Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data}));
        let created = cms.patch("ssa", &PatchParams::apply("one"), &apply(json!({"a": "1", "b": "2"}))).await.unwrap();
        assert_eq!(created.data.unwrap().len(), 2);
        assert_eq!(created.metadata.managed_fields.unwrap()[0].manager.as_deref(), Some("one"));
        let dropped = cms.patch("ssa", &PatchParams::apply("one"), &apply(json!({"a": "1"}))).await.unwrap();
        assert_eq!(dropped.data.unwrap().keys().collect::<Vec<_>>(), vec!["a"]);
        let (code, reason, msg) = api_error(
            cms.patch("ssa", &PatchParams::apply("two"), &apply(json!({"a": "9"}))).await.unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"));
        assert!(msg.contains("conflict with \"one\""), "{msg}");
        let forced = cms.patch("ssa", &PatchParams::apply("two").force(), &apply(json!({"a": "9"}))).await.unwrap();
        assert_eq!(forced.data.unwrap()["a"], "9");

        // resourceVersion in an applied configuration is a precondition
        let stale_apply = Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ssa", "resourceVersion": "1"}, "data": {"a": "9"}}));
        let (code, reason, _) = api_error(
            cms.patch("ssa", &PatchParams::apply("two"), &stale_apply).await.unwrap_err(),
        );
        assert_eq!((code, reason.as_str()), (409, "Conflict"));

        // a non-apply writer takes ownership of what it changes
        let editor = PatchParams { field_manager: Some("editor".into()), ..Default::default() };
        let edited = cms.patch("ssa", &editor, &Patch::Merge(json!({"data": {"a": "5"}}))).await.unwrap();
        let managers: Vec<(String, String)> = edited
            .metadata
            .managed_fields
            .unwrap()
            .into_iter()
            .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
            .collect();
        assert!(managers.contains(&("editor".into(), "Update".into())), "{managers:?}");
        let (code, _, msg) = api_error(
            cms.patch("ssa", &PatchParams::apply("two"), &apply(json!({"a": "9"}))).await.unwrap_err(),
        );
        assert_eq!(code, 409);
        assert!(msg.contains("conflict with \"editor\""), "{msg}");
        let raw = http::Request::patch("/api/v1/namespaces/default/configmaps/ssa")
            .header("content-type", "application/apply-patch+yaml")
            .body(b"data: {a: b}".to_vec())
            .unwrap();
        let (code, reason, msg) = api_error(client.request::<Value>(raw).await.unwrap_err());
        assert_eq!(
            (code, reason.as_str(), msg.as_str()),
            (422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"),
            "apply needs a fieldManager"
        );
    })
    .await;
}

#[tokio::test]
async fn status_subresource_and_generation() {
    on_all(|s| async move {
        let widgets = install_widgets(&s).await;
        let w = widgets.create(&PostParams::default(), &widget("w", json!({"color": "blue"}))).await.unwrap();
        assert_eq!(w.metadata.generation, Some(1));
        assert_eq!(w.data["spec"]["size"], 3, "default applied");

        // metadata changes keep the generation
        let labelled = widgets
            .patch("w", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
            .await
            .unwrap();
        assert_eq!(labelled.metadata.generation, Some(1));

        // status through the main resource is ignored
        let ignored = widgets
            .patch("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Up"}})))
            .await
            .unwrap();
        assert!(ignored.data.get("status").is_none());
        assert_eq!(ignored.resource_version(), labelled.resource_version());

        // /status changes status only, without a generation bump
        let status = widgets
            .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 9}, "status": {"phase": "Up"}})))
            .await
            .unwrap();
        assert_eq!(status.data["status"]["phase"], "Up");
        assert_eq!(status.data["spec"]["size"], 3);
        assert_eq!(status.metadata.generation, Some(1));

        // spec changes bump it and keep status
        let spec = widgets
            .patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}})))
            .await
            .unwrap();
        assert_eq!(spec.metadata.generation, Some(2));
        assert_eq!(spec.data["status"]["phase"], "Up");

        // server-side apply on status with a field manager, as a controller does
        let applied = widgets
            .patch_status(
                "w",
                &PatchParams::apply("ctl").force(),
                &Patch::Apply(json!({"apiVersion": "example.com/v1", "kind": "Widget",
                    "status": {"conditions": [{"type": "Ready", "status": "True"}], "observedGeneration": 2}})),
            )
            .await
            .unwrap();
        assert_eq!(applied.data["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(applied.data["status"]["phase"], "Up");
        assert_eq!(applied.metadata.generation, Some(2));

        // replace without a resourceVersion is refused for custom resources
        let mut unversioned = applied.clone();
        unversioned.metadata.resource_version = None;
        assert_eq!(api_error(widgets.replace("w", &PostParams::default(), &unversioned).await.unwrap_err()).0, 422);
    })
    .await;
}

/// Waits until `name` is gone; on kubesim it must already be (its garbage collector
/// runs within the write that makes garbage, the real one a moment later).
async fn collected(s: &Server, cms: &Api<ConfigMap>, name: &str) {
    if !s.is_real() {
        assert!(
            cms.get_opt(name).await.unwrap().is_none(),
            "{name} is still there"
        );
    }
    eventually(&format!("{name} is collected"), || {
        let cms = cms.clone();
        async move { cms.get_opt(name).await.unwrap().is_none().then_some(()) }
    })
    .await;
}

/// Waits until `name` is being deleted (it has a finalizer); on kubesim it must already be.
async fn deleting(s: &Server, cms: &Api<ConfigMap>, name: &str) {
    let started = |c: Option<ConfigMap>| {
        c.expect("still there (it has a finalizer)")
            .metadata
            .deletion_timestamp
            .is_some()
    };
    if !s.is_real() {
        assert!(started(cms.get_opt(name).await.unwrap()), "{name}");
    }
    eventually(&format!("{name} is being deleted"), || {
        let cms = cms.clone();
        async move { started(cms.get_opt(name).await.unwrap()).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn garbage_collection_by_owner_references() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let owner = cms.create(&PostParams::default(), &cm("owner", json!({}))).await.unwrap();
        let other = cms.create(&PostParams::default(), &cm("other-owner", json!({}))).await.unwrap();
        let oref = |o: &ConfigMap| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": o.name_any(), "uid": o.uid().unwrap()});
        let dependent = |name: &str, refs: Value, finalizers: Value| -> ConfigMap {
            serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": refs, "finalizers": finalizers}})).unwrap()
        };
        cms.create(&PostParams::default(), &dependent("dep", json!([oref(&owner)]), json!([]))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("dep-held", json!([oref(&owner)]), json!(["example.com/hold"]))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("dep-shared", json!([oref(&owner), oref(&other)]), json!([]))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("grandchild", json!([]), json!([]))).await.unwrap();

        cms.delete("owner", &DeleteParams::background()).await.unwrap();
        collected(&s, &cms, "dep").await;
        deleting(&s, &cms, "dep-held").await;
        assert!(cms.get_opt("dep-shared").await.unwrap().is_some(), "a dependent with a live owner stays");
        assert!(cms.get_opt("grandchild").await.unwrap().is_some());

        // references that resolve to nothing (or across namespaces) are garbage
        let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"});
        let dangling = cms.create(&PostParams::default(), &dependent("dangling", json!([ghost]), json!([]))).await.unwrap();
        assert!(dangling.metadata.uid.is_some());
        collected(&s, &cms, "dangling").await;
        let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let foreign = elsewhere.create(&PostParams::default(), &cm("foreign-owner", json!({}))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("cross-ns", json!([oref(&foreign)]), json!([]))).await.unwrap();
        collected(&s, &cms, "cross-ns").await;

        // foreground: the owner waits for dependents that block its deletion
        let fg = cms.create(&PostParams::default(), &cm("fg-owner", json!({}))).await.unwrap();
        let mut blocking = oref(&fg);
        blocking["blockOwnerDeletion"] = json!(true);
        cms.create(&PostParams::default(), &dependent("fg-dep", json!([blocking]), json!(["example.com/hold"]))).await.unwrap();
        let pending = cms.delete("fg-owner", &DeleteParams::foreground()).await.unwrap().left().unwrap();
        assert!(pending.finalizers().contains(&"foregroundDeletion".to_string()));
        deleting(&s, &cms, "fg-dep").await;
        assert!(cms.get_opt("fg-owner").await.unwrap().is_some());
        cms.patch("fg-dep", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await
            .unwrap();
        assert!(cms.get_opt("fg-dep").await.unwrap().is_none());
        collected(&s, &cms, "fg-owner").await;

        // orphan propagation keeps dependents and strips the reference
        let orphaner = cms.create(&PostParams::default(), &cm("orphaner", json!({}))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("orphan", json!([oref(&orphaner)]), json!([]))).await.unwrap();
        cms.delete("orphaner", &DeleteParams::orphan()).await.unwrap();
        collected(&s, &cms, "orphaner").await;
        let orphan = cms.get("orphan").await.unwrap();
        assert!(orphan.metadata.owner_references.unwrap_or_default().is_empty());

        // deleting a namespace deletes its content
        let nss: Api<Namespace> = Api::all(client.clone());
        nss.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap())
            .await
            .unwrap();
        let doomed: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
        doomed.create(&PostParams::default(), &cm("inside", json!({}))).await.unwrap();
        nss.delete("doomed", &DeleteParams::default()).await.unwrap();
        if !s.is_real() {
            assert!(nss.get_opt("doomed").await.unwrap().is_none());
        }
        eventually("namespace doomed is gone", || {
            let nss = nss.clone();
            async move { nss.get_opt("doomed").await.unwrap().is_none().then_some(()) }
        })
        .await;
        assert_eq!(api_error(doomed.get("inside").await.unwrap_err()).0, 404);
    })
    .await;
}

#[tokio::test]
async fn crd_install_schema_errors_and_removal() {
    on_all(|s| async move {
        let client = s.client.clone();
        let widgets = install_widgets(&s).await;
        let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
        let (ar, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
            .unwrap();
        assert_eq!(ar.plural, "widgets");
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        let aggregated = kube::Discovery::new(client.clone())
            .run_aggregated()
            .await
            .unwrap();
        let (ar, caps) = aggregated
            .resolve_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"))
            .unwrap();
        assert_eq!(ar.plural, "widgets");
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status"),
            "{:?}",
            caps.subresources
        );
        assert!(
            aggregated
                .resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"))
                .is_some()
        );

        // unknown fields are pruned, defaults applied
        let mut w = widget("ok", json!({"color": "red", "junk": true}));
        w.data["extra"] = json!(1);
        let ok = widgets.create(&PostParams::default(), &w).await.unwrap();
        assert_eq!(ok.data["spec"], json!({"color": "red", "size": 3}));
        assert!(ok.data.get("extra").is_none());

        // field selectors on the CRD's selectable fields only
        let red = widgets
            .list(&ListParams::default().fields("spec.color=red"))
            .await
            .unwrap();
        assert_eq!(red.items.len(), 1);
        let (code, _, msg) = api_error(
            widgets
                .list(&ListParams::default().fields("spec.size=3"))
                .await
                .unwrap_err(),
        );
        assert_eq!((code, msg.as_str()), (400, "field label not supported: spec.size"));

        // schema violations: 422 with field paths
        let bad = widget(
            "bad",
            json!({"color": "green", "size": 11, "tags": ["toolong"]}),
        );
        let err = widgets
            .create(&PostParams::default(), &bad)
            .await
            .unwrap_err();
        let kube::Error::Api(status) = err else {
            panic!("{err:?}")
        };
        assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
        assert!(
            status
                .message
                .starts_with("Widget.example.com \"bad\" is invalid: ["),
            "{}",
            status.message
        );
        for field in ["spec.color", "spec.size", "spec.tags[0]"] {
            assert!(
                status.message.contains(&format!("{field}: ")),
                "{field} missing in {}",
                status.message
            );
        }
        assert!(status.message.contains(
            "spec.color: Unsupported value: \"green\": supported values: \"red\", \"blue\""
        ));
        assert!(status.message.contains(
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10, "
        ));
        let missing = widgets
            .create(&PostParams::default(), &widget("missing", json!({})))
            .await
            .unwrap_err();
        assert_eq!(
            api_error(missing).2,
            "Widget.example.com \"missing\" is invalid: [spec.color: Required value, <nil>: Invalid value: null: \
             some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]"
        );

        // a CEL rule
        let cel = widgets
            .create(
                &PostParams::default(),
                &widget("cel", json!({"color": "red", "size": 7})),
            )
            .await
            .unwrap_err();
        let (code, _, msg) = api_error(cel);
        assert_eq!(code, 422);
        assert!(
            msg.ends_with("is invalid: spec: Invalid value: red widgets are small"),
            "{msg}"
        );
        // rules are still evaluated beside an error that does not block them
        let both = widgets
            .create(
                &PostParams::default(),
                &widget("both", json!({"color": "red", "size": 70})),
            )
            .await
            .unwrap_err();
        assert_eq!(
            api_error(both).2,
            "Widget.example.com \"both\" is invalid: [spec.size: Invalid value: 70: spec.size in body \
             should be less than or equal to 10, spec: Invalid value: red widgets are small]"
        );
        let kube::Error::Api(typed) = widgets
            .create(
                &PostParams::default(),
                &widget("typed", json!({"color": "red", "size": "x"})),
            )
            .await
            .unwrap_err()
        else {
            panic!("expected an API error")
        };
        let causes = typed.details.unwrap().causes;
        assert_eq!(
            (causes[0].reason.as_str(), causes[0].field.as_str(), causes[0].message.as_str()),
            (
                "FieldValueTypeInvalid",
                "spec.size",
                "Invalid value: \"string\": spec.size in body must be of type integer: \"string\""
            )
        );

        // updates are validated too, and nothing changes when refused
        let before = widgets.get("ok").await.unwrap();
        let upd = widgets
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"size": 0}})),
            )
            .await
            .unwrap_err();
        assert!(api_error(upd).2.contains("spec.size: Invalid value: 0"));
        assert_eq!(
            widgets.get("ok").await.unwrap().resource_version(),
            before.resource_version()
        );

        // strategic merge patch is refused for custom resources
        let smp = widgets
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"size": 2}})),
            )
            .await;
        assert_eq!(api_error(smp.unwrap_err()).0, 415);

        // a second served version appears on update; objects are served at both
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        let mut crd = crds.get("widgets.example.com").await.unwrap();
        let mut v2 = crd.spec.versions[0].clone();
        v2.name = "v2".into();
        v2.storage = false;
        crd.spec.versions.push(v2);
        crds.replace("widgets.example.com", &PostParams::default(), &crd)
            .await
            .unwrap();
        let v2_api: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            "default",
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("example.com", "v2", "Widget"),
                "widgets",
            ),
        );
        // kubesim serves it when the update returns, the real server a moment later
        if !s.is_real() {
            assert!(v2_api.get("ok").await.is_ok());
        }
        let through_v2 = eventually("v2 is served", || {
            let v2_api = v2_api.clone();
            async move { v2_api.get("ok").await.ok() }
        })
        .await;
        assert_eq!(through_v2.types.unwrap().api_version, "example.com/v2");
        assert_eq!(through_v2.data["spec"]["color"], "red");

        // deleting the CRD deletes its objects and unregisters it
        crds.delete("widgets.example.com", &DeleteParams::default())
            .await
            .unwrap();
        eventually("the CRD is removed", || {
            let crds = crds.clone();
            async move {
                crds.get_opt("widgets.example.com")
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            }
        })
        .await;
        // The real server stops serving the kind a moment after the CRD is gone.
        eventually("the kind is no longer served", || {
            let widgets = widgets.clone();
            async move {
                match widgets.list(&ListParams::default()).await {
                    Err(e) => Some(api_error(e).0),
                    Ok(_) => None,
                }
            }
        })
        .await;
        assert_eq!(
            api_error(widgets.list(&ListParams::default()).await.unwrap_err()).0,
            404
        );
    })
    .await;
}

#[tokio::test]
async fn metadata_only_clients() {
    on_all(|s| async move {
        let client = s.client.clone();
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        cms.create(&PostParams::default(), &cm("m1", json!({"m": "yes"})))
            .await
            .unwrap();
        let list = cms
            .list_metadata(&ListParams::default().labels("m=yes"))
            .await
            .unwrap();
        assert_eq!(list.items.len(), 1);
        assert_eq!(
            list.items[0].types.as_ref().unwrap().kind,
            "PartialObjectMetadata"
        );
        let one = cms.get_metadata("m1").await.unwrap();
        assert_eq!(one.metadata.labels.unwrap()["m"], "yes");

        let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> =
            Api::default_namespaced(client.clone());
        let stream = watcher(metas, watcher::Config::default().labels("m=yes"))
            .applied_objects()
            .boxed();
        let creator = {
            let cms = cms.clone();
            tokio::spawn(async move {
                cms.create(&PostParams::default(), &cm("m2", json!({"m": "yes"})))
                    .await
                    .unwrap();
            })
        };
        let seen: BTreeSet<String> = tokio::time::timeout(
            WAIT,
            stream
                .take(2)
                .map(|o| o.unwrap().name_any())
                .collect::<BTreeSet<_>>(),
        )
        .await
        .unwrap();
        creator.await.unwrap();
        assert_eq!(seen, ["m1".to_string(), "m2".to_string()].into());
    })
    .await;
}

#[tokio::test]
async fn faults_and_write_counters() {
    // kubesim's instrumentation: the real server has neither
    on_kubesim(|s| async move {
        let sim = s.sim().unwrap();
        let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
        sim.reset_write_counts();
        sim.faults().fail_next_writes("configmaps", 2, 500);
        for _ in 0..2 {
            let (code, _, _) = api_error(
                cms.create(&PostParams::default(), &cm("f", json!({})))
                    .await
                    .unwrap_err(),
            );
            assert_eq!(code, 500);
        }
        assert!(
            cms.get_opt("f").await.unwrap().is_none(),
            "a failed write changes nothing"
        );
        cms.create(&PostParams::default(), &cm("f", json!({})))
            .await
            .unwrap();
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "b"}})),
        )
        .await
        .unwrap();
        cms.list(&ListParams::default()).await.unwrap();
        let counts = sim.write_counts();
        assert_eq!(counts.get("configmaps", Verb::Create), 3);
        assert_eq!(counts.get("configmaps", Verb::Patch), 1);
        assert_eq!(counts.total(), 4);

        sim.faults().set_delay(std::time::Duration::from_millis(50));
        let t = std::time::Instant::now();
        cms.get("f").await.unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(50));
        sim.faults().clear();
    })
    .await;
}

#[tokio::test]
async fn leases_are_served_like_everything_else() {
    on_all(|s| async move {
        let client = s.client.clone();
        let leases: Api<DynamicObject> = Api::default_namespaced_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
                "leases",
            ),
        );
        let mut lease = DynamicObject::new("leader", &leases_resource());
        lease.data = json!({"spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}});
        leases.create(&PostParams::default(), &lease).await.unwrap();
        assert_eq!(
            leases.get("leader").await.unwrap().data["spec"]["holderIdentity"],
            "me"
        );
    })
    .await;
}

#[tokio::test]
async fn events_are_one_store_served_in_two_shapes() {
    on_all(|s| async move {
        let client = s.client.clone();
        use k8s_openapi::api::core::v1::Event as CoreEvent;
        use k8s_openapi::api::events::v1::Event;
        let events: Api<Event> = Api::default_namespaced(client.clone());
        let core: Api<CoreEvent> = Api::default_namespaced(client.clone());
        let ev: Event = serde_json::from_value(json!({
            "metadata": {"name": "w.1"}, "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "ctl", "reportingInstance": "ctl-0", "action": "Reconcile",
            "reason": "Done", "type": "Normal", "note": "all good",
            "regarding": {"kind": "Widget", "name": "w", "namespace": "default", "uid": "u-1"}
        }))
        .unwrap();
        let created = events.create(&PostParams::default(), &ev).await.unwrap();
        assert_eq!(created.note.as_deref(), Some("all good"));

        // the same object through core/v1, as kubectl describe looks for it
        let found = core
            .list(&ListParams::default().fields("involvedObject.name=w,involvedObject.kind=Widget,involvedObject.uid=u-1"))
            .await
            .unwrap();
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].message.as_deref(), Some("all good"));
        assert_eq!(found.items[0].reporting_component.as_deref(), Some("ctl"));

        // events.k8s.io field selectors and patches use its own field names
        let by_regarding = events.list(&ListParams::default().fields("regarding.name=w")).await.unwrap();
        assert_eq!(by_regarding.items.len(), 1);
        // through events.k8s.io only the series may change, as a recorder counts repeats
        let series = json!({"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"});
        let patched = events
            .patch("w.1", &PatchParams::default(), &Patch::Merge(json!({"series": series})))
            .await
            .unwrap();
        assert_eq!(patched.series.unwrap().count, 2);
        let (code, _, msg) = api_error(
            events
                .patch("w.1", &PatchParams::default(), &Patch::Merge(json!({"note": "changed"})))
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (code, msg.as_str()),
            (422, "Event \"w.1\" is invalid: message: Invalid value: \"changed\": field is immutable")
        );
        let (code, _, msg) = api_error(
            events
                .patch("w.1", &PatchParams::default(), &Patch::Merge(json!({"series": {"count": 1}})))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 422);
        assert!(msg.contains("series.count: Invalid value: \"\": should be at least 2"), "{msg}");
        // through core/v1 anything may change
        core.patch("w.1", &PatchParams::default(), &Patch::Merge(json!({"message": "changed"})))
            .await
            .unwrap();
        assert_eq!(events.get("w.1").await.unwrap().note.as_deref(), Some("changed"));
        let jp: json_patch::Patch =
            serde_json::from_value(json!([{"op": "test", "path": "/note", "value": "changed"}])).unwrap();
        events.patch("w.1", &PatchParams::default(), &Patch::Json::<()>(jp)).await.unwrap();
        // creating through events.k8s.io wants its fields
        let mut bare = ev.clone();
        bare.metadata.name = Some("w.2".into());
        bare.action = None;
        bare.type_ = Some("Odd".into());
        let (code, _, msg) = api_error(events.create(&PostParams::default(), &bare).await.unwrap_err());
        assert_eq!(
            (code, msg.as_str()),
            (422, "Event \"w.2\" is invalid: [action: Required value, type: Invalid value: \"\": has invalid value: Odd]")
        );
        events.delete("w.1", &DeleteParams::default()).await.unwrap();
        assert!(core.get_opt("w.1").await.unwrap().is_none());
    })
    .await;
}

fn leases_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("coordination.k8s.io", "v1", "Lease"),
        "leases",
    )
}
