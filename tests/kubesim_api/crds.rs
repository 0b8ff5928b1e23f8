//! A CustomResourceDefinition's install (served once Established), its schema's errors,
//! and its removal (the custom resources going with it).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::json;

use crate::differential::{api_error, eventually, on_all};
use crate::{install_widgets, widget};

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
