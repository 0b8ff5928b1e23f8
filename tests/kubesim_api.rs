//! kubesim against kube-rs, in-process and over TCP: every scenario runs on both.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use pod_identity_operator::kubesim::{KubeSim, Options, Verb};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// Runs `scenario` against a fresh server in-process, then against another over TCP.
async fn on_both<F, Fut>(scenario: F)
where
    F: Fn(KubeSim, Client) -> Fut,
    Fut: Future<Output = ()>,
{
    on_both_with(Options::default(), scenario).await;
}

async fn on_both_with<F, Fut>(options: Options, scenario: F)
where
    F: Fn(KubeSim, Client) -> Fut,
    Fut: Future<Output = ()>,
{
    let sim = KubeSim::with_options(options.clone());
    scenario(sim.clone(), sim.client()).await;

    let sim = KubeSim::with_options(options);
    let server = sim
        .serve_tcp("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind loopback");
    let client = server.client().await.expect("client from kubeconfig");
    scenario(sim.clone(), client).await;
    let addr = server.addr();
    server.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the server still accepts after shutdown"
    );
}

fn api_error(e: kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .unwrap()
}

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

async fn install_widgets(client: &Client) -> Api<DynamicObject> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let created = crds
        .create(&PostParams::default(), &widget_crd())
        .await
        .unwrap();
    let conds = created.status.unwrap().conditions.unwrap();
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    Api::namespaced_with(client.clone(), "default", &widget_resource())
}

#[tokio::test]
async fn crud_conflicts_selectors_and_bad_input() {
    on_both(|sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let rv0 = sim.resource_version();
        let a = cms
            .create(&PostParams::default(), &cm("a", json!({"app": "web"})))
            .await
            .unwrap();
        assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
        assert!(a.resource_version().unwrap().parse::<u64>().unwrap() > rv0);
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
        let before = sim.resource_version();
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
        assert_eq!(sim.resource_version(), before);
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
    on_both(|_sim, client| async move {
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
        assert_eq!(api_error(client.request::<Value>(raw).await.unwrap_err()).0, 400, "apply needs a fieldManager");
    })
    .await;
}

#[tokio::test]
async fn status_subresource_and_generation() {
    on_both(|_sim, client| async move {
        let widgets = install_widgets(&client).await;
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

#[tokio::test]
async fn finalizer_lifecycle_seen_by_a_watch() {
    on_both(|_sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let mut held = cm("held", json!({}));
        held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
        let created = cms.create(&PostParams::default(), &held).await.unwrap();
        let wp = WatchParams::default().fields("metadata.name=held");
        let mut events = cms
            .watch(&wp, &created.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();

        let pending = cms.delete("held", &DeleteParams::default()).await.unwrap();
        let pending = pending
            .left()
            .expect("object returned while finalizers remain");
        assert!(pending.metadata.deletion_timestamp.is_some());
        assert!(cms.get("held").await.is_ok());

        // deleting again changes nothing; new finalizers are refused
        assert!(
            cms.delete("held", &DeleteParams::default())
                .await
                .unwrap()
                .is_left()
        );
        let (code, _, msg) = api_error(
            cms.patch(
                "held",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "new"]}})),
            )
            .await
            .unwrap_err(),
        );
        assert_eq!(code, 422);
        assert!(
            msg.contains("no new finalizers can be added if the object is being deleted"),
            "{msg}"
        );

        // removing the last finalizer (JSON patch with test, like kube-rs's finalizer helper)
        let jp: json_patch::Patch = serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/hold"},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ]))
        .unwrap();
        cms.patch("held", &PatchParams::default(), &Patch::Json::<()>(jp))
            .await
            .unwrap();
        assert_eq!(api_error(cms.get("held").await.unwrap_err()).0, 404);

        let mut seen = Vec::new();
        while seen.len() < 2 {
            match tokio::time::timeout(WAIT, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                WatchEvent::Modified(o) => {
                    seen.push(("MODIFIED", o.metadata.deletion_timestamp.is_some()))
                }
                WatchEvent::Deleted(o) => {
                    seen.push(("DELETED", o.metadata.deletion_timestamp.is_some()))
                }
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, vec![("MODIFIED", true), ("DELETED", true)]);
    })
    .await;
}

#[tokio::test]
async fn garbage_collection_by_owner_references() {
    on_both(|_sim, client| async move {
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
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let gone = cms.get_opt("dep").await.unwrap().is_none();
            let held = cms.get_opt("dep-held").await.unwrap();
            if gone && held.as_ref().is_some_and(|h| h.metadata.deletion_timestamp.is_some()) {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "garbage collector did not act");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(cms.get_opt("dep-shared").await.unwrap().is_some(), "a dependent with a live owner stays");
        assert!(cms.get_opt("grandchild").await.unwrap().is_some());

        // references that resolve to nothing (or across namespaces) are garbage
        let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"});
        let dangling = cms.create(&PostParams::default(), &dependent("dangling", json!([ghost]), json!([]))).await.unwrap();
        assert!(dangling.metadata.uid.is_some());
        assert!(cms.get_opt("dangling").await.unwrap().is_none());
        let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let foreign = elsewhere.create(&PostParams::default(), &cm("foreign-owner", json!({}))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("cross-ns", json!([oref(&foreign)]), json!([]))).await.unwrap();
        assert!(cms.get_opt("cross-ns").await.unwrap().is_none());

        // foreground: the owner waits for dependents that block its deletion
        let fg = cms.create(&PostParams::default(), &cm("fg-owner", json!({}))).await.unwrap();
        let mut blocking = oref(&fg);
        blocking["blockOwnerDeletion"] = json!(true);
        cms.create(&PostParams::default(), &dependent("fg-dep", json!([blocking]), json!(["example.com/hold"]))).await.unwrap();
        let pending = cms.delete("fg-owner", &DeleteParams::foreground()).await.unwrap().left().unwrap();
        assert!(pending.finalizers().contains(&"foregroundDeletion".to_string()));
        assert!(cms.get("fg-dep").await.unwrap().metadata.deletion_timestamp.is_some());
        assert!(cms.get_opt("fg-owner").await.unwrap().is_some());
        cms.patch("fg-dep", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
            .await
            .unwrap();
        assert!(cms.get_opt("fg-dep").await.unwrap().is_none());
        assert!(cms.get_opt("fg-owner").await.unwrap().is_none(), "owner goes with its last blocking dependent");

        // orphan propagation keeps dependents and strips the reference
        let orphaner = cms.create(&PostParams::default(), &cm("orphaner", json!({}))).await.unwrap();
        cms.create(&PostParams::default(), &dependent("orphan", json!([oref(&orphaner)]), json!([]))).await.unwrap();
        cms.delete("orphaner", &DeleteParams::orphan()).await.unwrap();
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
        assert!(nss.get_opt("doomed").await.unwrap().is_none());
        assert_eq!(api_error(doomed.get("inside").await.unwrap_err()).0, 404);
    })
    .await;
}

#[tokio::test]
async fn crd_install_schema_errors_and_removal() {
    on_both(|_sim, client| async move {
        let widgets = install_widgets(&client).await;
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
            "spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"
        ));
        let missing = widgets
            .create(&PostParams::default(), &widget("missing", json!({})))
            .await
            .unwrap_err();
        assert!(api_error(missing).2.ends_with("spec.color: Required value"));

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
            msg.contains("spec: Invalid value: \"object\": red widgets are small"),
            "{msg}"
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
        let through_v2 = v2_api.get("ok").await.unwrap();
        assert_eq!(through_v2.types.unwrap().api_version, "example.com/v2");
        assert_eq!(through_v2.data["spec"]["color"], "red");

        // deleting the CRD deletes its objects and unregisters it
        crds.delete("widgets.example.com", &DeleteParams::default())
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + WAIT;
        while crds.get_opt("widgets.example.com").await.unwrap().is_some() {
            assert!(tokio::time::Instant::now() < deadline, "CRD not removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            api_error(widgets.list(&ListParams::default()).await.unwrap_err()).0,
            404
        );
    })
    .await;
}

#[tokio::test]
async fn watcher_survives_disconnects_and_expired_versions() {
    on_both(|sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        for i in 0..5 {
            cms.create(
                &PostParams::default(),
                &cm(&format!("w{i}"), json!({"w": "yes"})),
            )
            .await
            .unwrap();
        }
        // one list-then-watch watcher, one streaming-list watcher (sendInitialEvents)
        let mut readers = Vec::new();
        let mut drivers = Vec::new();
        for streaming in [false, true] {
            let (reader, writer) = reflector::store::<ConfigMap>();
            let mut config = watcher::Config::default().labels("w=yes");
            config.bookmarks = true;
            if streaming {
                config = config.streaming_lists();
            }
            let stream = watcher(cms.clone(), config)
                .default_backoff()
                .reflect(writer)
                .applied_objects()
                .for_each(|_| async {});
            drivers.push(tokio::spawn(stream));
            readers.push(reader);
        }

        let names = |r: &reflector::Store<ConfigMap>| -> BTreeSet<String> {
            r.state().iter().map(|c| c.name_any()).collect()
        };
        let wait_for = |want: BTreeSet<String>| {
            let readers = readers.clone();
            async move {
                let deadline = tokio::time::Instant::now() + WAIT;
                for reader in &readers {
                    loop {
                        if names(reader) == want {
                            break;
                        }
                        assert!(
                            tokio::time::Instant::now() < deadline,
                            "store is {:?}, want {want:?}",
                            names(reader)
                        );
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        };
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        wait_for(set(&["w0", "w1", "w2", "w3", "w4"])).await;

        // forced disconnect, then changes
        sim.faults().drop_watches();
        cms.delete("w0", &DeleteParams::default()).await.unwrap();
        cms.create(&PostParams::default(), &cm("w5", json!({"w": "yes"})))
            .await
            .unwrap();
        wait_for(set(&["w1", "w2", "w3", "w4", "w5"])).await;

        // history gone and watch dropped: the watcher must get 410 and relist
        sim.compact_history();
        sim.faults().drop_watches();
        cms.delete("w1", &DeleteParams::default()).await.unwrap();
        cms.patch(
            "w2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"w": "no"}}})),
        )
        .await
        .unwrap();
        cms.create(&PostParams::default(), &cm("w6", json!({"w": "yes"})))
            .await
            .unwrap();
        cms.create(
            &PostParams::default(),
            &cm("not-watched", json!({"w": "no"})),
        )
        .await
        .unwrap();
        sim.compact_history();
        sim.faults().drop_watches();
        wait_for(set(&["w3", "w4", "w5", "w6"])).await;
        for d in drivers {
            d.abort();
        }
    })
    .await;
}

#[tokio::test]
async fn metadata_only_clients() {
    on_both(|_sim, client| async move {
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
async fn a_watcher_that_falls_behind_gets_410() {
    // in-process only: over TCP the socket buffers absorb the backlog
    let sim = KubeSim::with_options(Options {
        watch_buffer: 64,
        ..Options::default()
    });
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let start = sim.resource_version().to_string();
    let mut events = cms
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    for i in 0..1000 {
        cms.create(&PostParams::default(), &cm(&format!("lag{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut added = 0;
    let status = tokio::time::timeout(WAIT, async {
        loop {
            match events
                .try_next()
                .await
                .unwrap()
                .expect("stream ended without an error")
            {
                WatchEvent::Added(_) => added += 1,
                WatchEvent::Error(e) => return e,
                WatchEvent::Bookmark(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert!(
        added < 1000,
        "all {added} events arrived, the watcher never fell behind"
    );
}

#[tokio::test]
async fn expired_resource_version_is_an_error_event() {
    on_both(|sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let first = cms
            .create(&PostParams::default(), &cm("e", json!({})))
            .await
            .unwrap();
        cms.patch(
            "e",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2"}})),
        )
        .await
        .unwrap();
        sim.compact_history();
        let mut events = cms
            .watch(&WatchParams::default(), &first.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        match tokio::time::timeout(WAIT, events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
            other => panic!("expected 410, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn watch_bookmarks_and_timeouts() {
    let options = Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    };
    on_both_with(options, |_sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let first = cms
            .create(&PostParams::default(), &cm("b", json!({})))
            .await
            .unwrap();
        // a write to another resource moves the bookmark too
        let nss: Api<Namespace> = Api::all(client.clone());
        let ns = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).unwrap(),
            )
            .await
            .unwrap();
        let ns_rv: u64 = ns.resource_version().unwrap().parse().unwrap();
        let wp = WatchParams::default().timeout(2);
        assert!(wp.bookmarks);
        let mut events = cms
            .watch(&wp, &first.resource_version().unwrap())
            .await
            .unwrap()
            .boxed();
        let mut bookmark_rv = 0;
        let ended = tokio::time::timeout(WAIT, async {
            while let Some(ev) = events.try_next().await.unwrap() {
                match ev {
                    WatchEvent::Bookmark(b) => {
                        bookmark_rv = b.metadata.resource_version.parse().unwrap()
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "timeoutSeconds did not end the watch");
        assert!(
            bookmark_rv >= ns_rv,
            "bookmark at {bookmark_rv}, expected at least {ns_rv}"
        );

        // deletecollection with a selector, and dry runs that change nothing
        cms.create(&PostParams::default(), &cm("x1", json!({"g": "x"})))
            .await
            .unwrap();
        cms.create(&PostParams::default(), &cm("x2", json!({"g": "x"})))
            .await
            .unwrap();
        let dry = PostParams {
            dry_run: true,
            ..Default::default()
        };
        let would = cms
            .create(&dry, &cm("x3", json!({"g": "x"})))
            .await
            .unwrap();
        assert_eq!(would.name_any(), "x3");
        assert!(cms.get_opt("x3").await.unwrap().is_none());
        let deleted = cms
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels("g=x"),
            )
            .await
            .unwrap();
        assert_eq!(deleted.left().unwrap().items.len(), 2);
        assert_eq!(
            cms.list(&ListParams::default()).await.unwrap().items.len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_lose_nothing_and_versions_only_grow() {
    on_both(|_sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
        let start = cms
            .create(&PostParams::default(), &cm("counter", json!({})))
            .await
            .unwrap();
        let mut watch = cms
            .watch(
                &WatchParams::default().fields("metadata.name=counter"),
                &start.resource_version().unwrap(),
            )
            .await
            .unwrap()
            .boxed();
        let tasks = 16;
        let per_task = 10;
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let cms = cms.clone();
                tokio::spawn(async move {
                    let mut last_rv = 0u64;
                    for _ in 0..per_task {
                        loop {
                            let mut cur = cms.get("counter").await.unwrap();
                            let rv: u64 = cur.resource_version().unwrap().parse().unwrap();
                            assert!(rv >= last_rv, "resourceVersion went backwards");
                            last_rv = rv;
                            let n: u64 = cur
                                .data
                                .as_ref()
                                .and_then(|d| d.get("n"))
                                .map_or(0, |s| s.parse().unwrap());
                            cur.data = Some(
                                [
                                    ("n".to_string(), (n + 1).to_string()),
                                    (format!("t{t}"), "1".into()),
                                ]
                                .into(),
                            );
                            match cms.replace("counter", &PostParams::default(), &cur).await {
                                Ok(done) => {
                                    let rv: u64 = done.resource_version().unwrap().parse().unwrap();
                                    assert!(rv > last_rv);
                                    last_rv = rv;
                                    break;
                                }
                                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
        let end = cms.get("counter").await.unwrap();
        assert_eq!(end.data.unwrap()["n"], (tasks * per_task).to_string());

        let mut last = start.resource_version().unwrap().parse::<u64>().unwrap();
        let mut modified = 0;
        while modified < tasks * per_task {
            let ev = tokio::time::timeout(WAIT, watch.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let WatchEvent::Modified(o) = ev {
                let rv: u64 = o.resource_version().unwrap().parse().unwrap();
                assert!(rv > last, "watch resourceVersion went backwards");
                last = rv;
                modified += 1;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn faults_and_write_counters() {
    on_both(|sim, client| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
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

        sim.faults().set_delay(Duration::from_millis(50));
        let t = std::time::Instant::now();
        cms.get("f").await.unwrap();
        assert!(t.elapsed() >= Duration::from_millis(50));
        sim.faults().clear();

        // Leases and events are served like everything else
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
    on_both(|_sim, client| async move {
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
        let patched = events
            .patch("w.1", &PatchParams::default(), &Patch::Merge(json!({"note": "changed", "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}})))
            .await
            .unwrap();
        assert_eq!(patched.note.as_deref(), Some("changed"));
        assert_eq!(core.get("w.1").await.unwrap().message.as_deref(), Some("changed"));
        let jp: json_patch::Patch =
            serde_json::from_value(json!([{"op": "test", "path": "/note", "value": "changed"}])).unwrap();
        events.patch("w.1", &PatchParams::default(), &Patch::Json::<()>(jp)).await.unwrap();
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
