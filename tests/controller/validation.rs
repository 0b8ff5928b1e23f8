//! What bindings are accepted: the CRD schema and CEL rules reject bad ones, and every
//! example is accepted by the schema and the operator.

use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use pod_identity_operator::aws::sim::SimConfig;
use pod_identity_operator::crd::PodIdentityBinding;
use serde_json::json;

use crate::support;
use crate::support::NS;
use crate::{CLUSTER, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_schema_and_cel_rules_reject_bad_bindings() {
    let (env, _aws) = start(SimConfig::default(), |_| {}).await;
    let bad = [
        json!({"role": {"arn": "arn:aws:iam::111122223333:role/x", "name": "y"}}),
        json!({"role": {"maxSessionDuration": 60}}),
        json!({"role": {"arn": "not-an-arn"}}),
        json!({"role": {"arn": "arn:aws-xx:iam::111122223333:role/x"}}),
        json!({"role": {"managedPolicyArns": ["arn:awsfoo:iam::aws:policy/ReadOnlyAccess"]}}),
        json!({"sessionPolicy": {"Version": "2012-10-17"}}),
        json!({"tags": {"aws:reserved": "x"}}),
        json!({"deletionPolicy": "Sometimes"}),
        json!({"serviceAccount": {"name": "Not_DNS"}}),
    ];
    let raw: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        NS,
        &ApiResource::erase::<PodIdentityBinding>(&()),
    );
    for (i, spec) in bad.into_iter().enumerate() {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": format!("bad-{i}"), "namespace": NS}, "spec": spec.clone(),
        }))
        .expect("object");
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("{spec} must be refused"));
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 422),
            "{spec}: {err:?}"
        );
    }
    env.apply("good", json!({"sessionPolicy": {"Version": "2012-10-17", "Statement": []}, "disableSessionTags": true}))
        .await;
    env.stop().await;
}

/// Every file in `examples/` passes the CRD's schema and CEL rules, and the operator's
/// own validation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_accepted_by_the_schema_and_the_operator() {
    use k8s_openapi::api::core::v1::Namespace;
    use pod_identity_operator::aws::Cluster;
    use pod_identity_operator::controller::desired::desired;
    let kube = pod_identity_operator::kubesim::KubeSim::new();
    let client = kube.client();
    support::install_crd(&client).await;
    let cluster = Cluster {
        name: CLUSTER.into(),
        arn: format!("arn:aws:eks:us-east-1:111122223333:cluster/{CLUSTER}"),
        account_id: "111122223333".into(),
        status: None,
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    let manifests = pod_identity_operator::sandbox::manifests::read_manifests(dir.as_ref())
        .expect("examples/ reads");
    for manifest in manifests
        .into_iter()
        .filter(|m| m.kind() == "PodIdentityBinding")
    {
        let path = manifest.file;
        let value = manifest.object;
        let ns = value["metadata"]["namespace"]
            .as_str()
            .expect("namespaced")
            .to_owned();
        let namespaces: Api<Namespace> = Api::all(client.clone());
        if namespaces.get_opt(&ns).await.expect("get ns").is_none() {
            let n: Namespace =
                serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
            namespaces
                .create(&PostParams::default(), &n)
                .await
                .expect("create ns");
        }
        let raw: Api<DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &ApiResource::erase::<PodIdentityBinding>(&()),
        );
        let obj: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        let stored = raw
            .create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("{}: refused by the schema: {e}", path.display()));
        let mut binding: PodIdentityBinding =
            serde_json::from_value(serde_json::to_value(&stored).expect("json"))
                .expect("typed binding");
        binding.metadata.uid.get_or_insert_with(|| "uid".into());
        desired(&binding, &cluster)
            .unwrap_or_else(|e| panic!("{}: refused by the operator: {e}", path.display()));
        seen += 1;
    }
    assert!(seen >= 6, "examples found: {seen}");
}
