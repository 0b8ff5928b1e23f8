//! Garbage collection by owner references: dependents collected when their owner goes,
//! and the deletion propagation policies.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::differential::{Server, api_error, cm, eventually, on_all};

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
