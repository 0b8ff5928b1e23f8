//! Request details on kubesim and on the real API server, with the same assertions:
//! request options, preconditions, malformed parameters and patches, paging, and the
//! metadata the server keeps. Every scenario runs on kubesim in-process, over TCP, and
//! on a real kube-apiserver (`support/differential.rs`); where kubesim deliberately
//! differs, each server's answer is asserted and `crates/kubesim/README.md` lists it.

#[path = "support/cluster.rs"]
mod cluster;
#[path = "support/differential.rs"]
mod differential;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use differential::{cm, on_all};

/// Sends a raw request; the answer's body, or the code, reason and message of its error.
async fn send(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> Result<Value, (u16, String, String)> {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    client.request::<Value>(req).await.map_err(|e| match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("{method} {path}: expected an API error, got {other:?}"),
    })
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const JSON: &str = "application/json";

#[tokio::test]
async fn options_preconditions_and_malformed_requests() {
    on_all(|s| async move {
        let c = &s.client;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        let g = cms
            .create(&PostParams::default(), &cm("g", json!({})))
            .await
            .unwrap();
        let uid = g.uid().unwrap();
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}});

        // request options take only the values the server knows
        let err = send(c, "POST", &format!("{CMS}?dryRun=Yes"), JSON, &body).await;
        assert_eq!(
            err.unwrap_err(),
            (
                422,
                "Invalid".into(),
                "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: [\"Yes\"]: \
                 supported values: \"All\""
                    .into()
            )
        );
        let err = send(c, "POST", &format!("{CMS}?fieldValidation=Bogus"), JSON, &body).await;
        assert_eq!(
            err.unwrap_err().2,
            "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Bogus\": \
             supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
        );
        let err = send(c, "DELETE", &format!("{CMS}/g?propagationPolicy=Bogus"), JSON, &Value::Null).await;
        assert_eq!(
            err.unwrap_err(),
            (
                422,
                "Invalid".into(),
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Bogus\": \
                 supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
                    .into()
            )
        );

        // a resourceVersion on create is refused by the storage
        let mut versioned = body.clone();
        versioned["metadata"]["resourceVersion"] = json!("5");
        assert_eq!(
            send(c, "POST", CMS, JSON, &versioned).await.unwrap_err(),
            (500, String::new(), "resourceVersion should not be set on objects to be created".into())
        );

        // resourceVersion parameters that are not numbers
        let parse = "resourceVersion: Invalid value: \"abc\": strconv.ParseUint: parsing \"abc\": invalid syntax";
        let get = send(c, "GET", &format!("{CMS}/g?resourceVersion=abc"), JSON, &Value::Null).await;
        assert_eq!(get.unwrap_err(), (500, String::new(), parse.into()));
        let list = send(c, "GET", &format!("{CMS}?resourceVersion=abc"), JSON, &Value::Null).await;
        assert_eq!(
            list.unwrap_err(),
            (400, "BadRequest".into(), format!("invalid resource version: {parse}"))
        );

        // JSON patches: a body that is no list, and operations that fail
        let jp = "application/json-patch+json";
        let err = send(c, "PATCH", &format!("{CMS}/g"), jp, &json!({"a": 1})).await;
        assert_eq!(
            err.unwrap_err(),
            (
                400,
                "BadRequest".into(),
                "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp"
                    .into()
            )
        );
        for ops in [
            json!([{"op": "test", "path": "/data/k", "value": "other"}]),
            json!([{"op": "remove", "path": "/data/missing"}]),
            json!([{"op": "bogus", "path": "/data/k"}]),
        ] {
            let err = send(c, "PATCH", &format!("{CMS}/g"), jp, &ops).await;
            assert_eq!(
                err.unwrap_err(),
                (
                    422,
                    "Invalid".into(),
                    "the server rejected our request due to an error in our request".into()
                ),
                "{ops}"
            );
        }

        // uid: a precondition in an update's body, immutable in a patch
        let mut other_uid = serde_json::to_value(&g).unwrap();
        other_uid["metadata"]["uid"] = json!("abc");
        let err = send(c, "PUT", &format!("{CMS}/g"), JSON, &other_uid).await;
        assert_eq!(
            err.unwrap_err(),
            (
                409,
                "Conflict".into(),
                format!(
                    "Operation cannot be fulfilled on configmaps \"g\": StorageError: invalid object, Code: 4, \
                     Key: /registry/configmaps/default/g, ResourceVersion: 0, AdditionalErrorMsg: \
                     Precondition failed: UID in precondition: abc, UID in object meta: {uid}"
                )
            )
        );
        let err = send(
            c,
            "PATCH",
            &format!("{CMS}/g"),
            "application/merge-patch+json",
            &json!({"metadata": {"uid": "abc"}}),
        )
        .await;
        assert_eq!(
            err.unwrap_err(),
            (
                422,
                "Invalid".into(),
                "ConfigMap \"g\" is invalid: metadata.uid: Invalid value: \"abc\": field is immutable".into()
            )
        );

        // delete preconditions
        let err = send(c, "DELETE", &format!("{CMS}/g"), JSON, &json!({"preconditions": {"uid": "nope"}})).await;
        assert_eq!(
            err.unwrap_err(),
            (
                409,
                "Conflict".into(),
                format!(
                    "Operation cannot be fulfilled on ConfigMap \"g\": the UID in the precondition (nope) does not \
                     match the UID in record ({uid}). The object might have been deleted and then recreated"
                )
            )
        );
        let rv = g.resource_version().unwrap();
        let err = send(c, "DELETE", &format!("{CMS}/g"), JSON, &json!({"preconditions": {"resourceVersion": "1"}})).await;
        assert_eq!(
            err.unwrap_err().2,
            format!(
                "Operation cannot be fulfilled on ConfigMap \"g\": the ResourceVersion in the precondition (1) does not \
                 match the ResourceVersion in record ({rv}). The object might have been modified"
            )
        );
        assert!(cms.get_opt("g").await.unwrap().is_some());

        // kubesim deliberately words these differently (same code and reason): a malformed
        // label selector (its own parser), a kind that does not match the resource (no
        // scheme conversion), a continue token that is not one of its own
        let (code, reason, msg) = send(c, "GET", &format!("{CMS}?labelSelector=app%20in%20("), JSON, &Value::Null)
            .await
            .unwrap_err();
        assert_eq!((code, reason.as_str()), (400, "BadRequest"));
        let want = if s.is_real() {
            "unable to parse requirement: found '', expected: ',', ')' or identifier"
        } else {
            "unable to parse requirement: \"app in (\""
        };
        assert_eq!(msg, want);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "g"}});
        let (code, reason, msg) = send(c, "PUT", &format!("{CMS}/g"), JSON, &secret).await.unwrap_err();
        assert_eq!((code, reason.as_str()), (400, "BadRequest"));
        let want = if s.is_real() {
            "Secret in version \"v1\" cannot be handled as a ConfigMap: converting (v1.Secret) to (core.ConfigMap): unknown conversion"
        } else {
            "the kind of the provided object (Secret) does not match the kind of the resource (ConfigMap)"
        };
        assert_eq!(msg, want);
        let (code, reason, msg) = send(c, "GET", &format!("{CMS}?limit=1&continue=garbage"), JSON, &Value::Null)
            .await
            .unwrap_err();
        assert_eq!((code, reason.as_str()), (400, "BadRequest"));
        if s.is_real() {
            assert!(msg.starts_with("invalid continue token: continue key is not valid: "), "{msg}");
        } else {
            assert_eq!(msg, "continue key is not valid");
        }
    })
    .await;
}

#[tokio::test]
async fn paging_and_the_metadata_the_server_keeps() {
    on_all(|s| async move {
        let c = &s.client;
        let cms: Api<ConfigMap> = Api::default_namespaced(c.clone());
        for name in ["p1", "p2", "p3"] {
            cms.create(&PostParams::default(), &cm(name, json!({"paged": "yes"})))
                .await
                .unwrap();
        }

        // pages: a continue token, and the count of what is left when nothing filters
        let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
        let names: Vec<String> = first.items.iter().map(|c| c.name_any()).collect();
        assert_eq!(names, ["p1", "p2"]);
        assert_eq!(first.metadata.remaining_item_count, Some(1));
        let token = first.metadata.continue_.clone().unwrap();
        let rest = cms
            .list(&ListParams::default().limit(2).continue_token(&token))
            .await
            .unwrap();
        assert_eq!(rest.items.len(), 1);
        assert_eq!(rest.items[0].name_any(), "p3");
        assert!(rest.metadata.continue_.is_none());
        assert_eq!(rest.metadata.remaining_item_count, None);
        let filtered = cms
            .list(&ListParams::default().labels("paged=yes").limit(2))
            .await
            .unwrap();
        assert!(filtered.metadata.continue_.is_some());
        assert_eq!(filtered.metadata.remaining_item_count, None);

        // generation: ConfigMaps have none, Pods start at 1
        assert_eq!(first.items[0].metadata.generation, None);
        let pods: Api<Pod> = Api::default_namespaced(c.clone());
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "pod"}, "spec": {"containers": [{"name": "a", "image": "a:1"}]}}),
        )
        .unwrap();
        let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
        assert_eq!(pod.metadata.generation, Some(1));

        // every Namespace carries its name as a label, which it cannot lose
        let nss: Api<Namespace> = Api::all(c.clone());
        let created = nss
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "labelled", "labels": {"team": "a"}}})).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(created.metadata.generation, None);
        let labels = created.labels();
        assert_eq!(labels.get("kubernetes.io/metadata.name").map(String::as_str), Some("labelled"));
        assert_eq!(labels.get("team").map(String::as_str), Some("a"));
        let mut stripped = created.clone();
        stripped.metadata.labels = None;
        let replaced = nss.replace("labelled", &PostParams::default(), &stripped).await.unwrap();
        assert_eq!(
            replaced.labels().keys().collect::<Vec<_>>(),
            ["kubernetes.io/metadata.name"]
        );
        let default = nss.get("default").await.unwrap();
        assert_eq!(default.labels()["kubernetes.io/metadata.name"], "default");
    })
    .await;
}

#[tokio::test]
async fn managed_fields_order_and_times() {
    on_all(|s| async move {
        let cms: Api<ConfigMap> = Api::default_namespaced(s.client.clone());
        let pp = |m: &str| PostParams {
            field_manager: Some(m.into()),
            ..Default::default()
        };
        cms.create(&pp("me"), &cm("mf", json!({"a": "b"})))
            .await
            .unwrap();
        // managedFields times have seconds: let the next writers' differ
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let editor = PatchParams {
            field_manager: Some("other".into()),
            ..Default::default()
        };
        cms.patch("mf", &editor, &Patch::Merge(json!({"data": {"y": "2"}})))
            .await
            .unwrap();
        let applied = cms
            .patch(
                "mf",
                &PatchParams::apply("applier"),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "mf"}, "data": {"z": "3"}})),
            )
            .await
            .unwrap();
        // Apply entries first, then by time; each keeps the time of its own last change
        let entries = applied.metadata.managed_fields.unwrap();
        let managers: Vec<(&str, &str)> = entries
            .iter()
            .map(|e| {
                (
                    e.manager.as_deref().unwrap(),
                    e.operation.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            managers,
            [("applier", "Apply"), ("me", "Update"), ("other", "Update")]
        );
        assert!(entries[1].time.as_ref().unwrap().0 < entries[2].time.as_ref().unwrap().0);
        // the real server also records a map an update created as owned (".");
        // kubesim records its keys only
        let mine = &entries[1].fields_v1.as_ref().unwrap().0;
        if s.is_real() {
            assert_eq!(mine["f:data"], json!({".": {}, "f:k": {}}));
            assert_eq!(mine["f:metadata"]["f:labels"], json!({".": {}, "f:a": {}}));
        } else {
            assert_eq!(mine["f:data"], json!({"f:k": {}}));
            assert_eq!(mine["f:metadata"]["f:labels"], json!({"f:a": {}}));
        }
    })
    .await;
}
