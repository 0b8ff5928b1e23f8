//! Leases served like everything else, and Events: one store served in two shapes
//! (`events.k8s.io/v1` and `v1`).

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::json;

use crate::differential::{api_error, on_all};

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
