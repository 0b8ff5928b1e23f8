//! Create, read, update and delete on ConfigMaps and custom resources: conflicts, label and
//! field selectors, bad input; every patch type; the status subresource and
//! `metadata.generation`.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::differential::{api_error, cm, configmap_versions, on_all, rv};
use crate::{install_widgets, widget};

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
