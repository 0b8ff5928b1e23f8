//! The operator's Kubernetes rights proven on a real kube-apiserver: the controller runs
//! as the user `config/rbac/` binds (a client certificate naming the operator's
//! ServiceAccount) and a binding goes through create, ServiceAccount, update and delete;
//! then one verb is taken from the ClusterRole and the same work is refused, which shows
//! the rights are what the run stood on. The end-to-end suite runs the operator binary
//! under the same identity (`E2E_OPERATOR_KUBECONFIG`, set by `scripts/test`).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::crd::PodIdentityBinding;
use serde_json::json;
use support::cluster::{ControlPlane, client_from, install_operator_identity};
use support::{Env, WAIT};

const CLUSTER: &str = "rbac";
const NS: &str = "tenant";

fn binding(name: &str, sa: &str) -> PodIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"serviceAccount": {"name": sa},
                 "role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}},
    }))
    .expect("binding")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_works_with_exactly_the_shipped_rbac_and_not_with_less() {
    let plane = ControlPlane::start(Default::default())
        .await
        .unwrap_or_else(|e| panic!("the real control plane did not start: {e}"));
    let operator_kubeconfig = install_operator_identity(&plane);
    let admin = plane.admin_client().await.expect("admin client");
    let operator = client_from(&operator_kubeconfig)
        .await
        .expect("operator client");
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("namespace"),
        )
        .await
        .expect("namespace created");

    // The identity is not an admin: it cannot create bindings.
    let as_operator: Api<PodIdentityBinding> = Api::namespaced(operator.clone(), NS);
    match as_operator
        .create(&PostParams::default(), &binding("nope", "nope"))
        .await
    {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{e:?}"),
        other => panic!("the operator's identity created a binding: {other:?}"),
    }

    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    // The controller as the operator's identity, watching the whole cluster as it does
    // when installed (the namespace setting only applies where the Env is shared).
    let env = Env::start_on(
        operator.clone(),
        None,
        NS,
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, |s| {
            s.namespace = None;
        }),
    )
    .await;
    let bindings: Api<PodIdentityBinding> = Api::namespaced(admin.clone(), NS);
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NS);

    bindings
        .create(&PostParams::default(), &binding("reader", "reader"))
        .await
        .expect("binding created");
    env.wait_converged("reader").await;
    let sa = accounts
        .get("reader")
        .await
        .expect("ServiceAccount created");
    assert!(
        sa.metadata.owner_references.as_ref().is_some_and(|o| o
            .iter()
            .any(|r| r.name == "reader" && r.controller == Some(true))),
        "the ServiceAccount is owned by its binding: {:?}",
        sa.metadata.owner_references
    );
    assert_eq!(aws.inventory().roles.len(), 1);
    assert_eq!(aws.inventory().associations.len(), 1);
    // The operator's identity could not install the agent's DaemonSet; the shipped
    // rights let it see that none runs.
    let reader = bindings.get("reader").await.expect("binding");
    assert_eq!(
        reader
            .status
            .iter()
            .flat_map(|s| &s.warnings)
            .map(|w| w.reason.as_str())
            .collect::<Vec<_>>(),
        ["PodIdentityAgentMissing"]
    );

    // A rename makes a new ServiceAccount and deletes the one the operator made.
    bindings
        .patch(
            "reader",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccount": {"name": "reader-2"}}})),
        )
        .await
        .expect("rename");
    env.wait_converged("reader").await;
    accounts.get("reader-2").await.expect("new ServiceAccount");
    wait_until("the old ServiceAccount is deleted", || async {
        accounts.get_opt("reader").await.expect("get").is_none()
    })
    .await;

    bindings
        .delete("reader", &DeleteParams::default())
        .await
        .expect("delete");
    env.wait_gone("reader").await;
    assert!(aws.inventory().roles.is_empty(), "role cleaned up");
    assert!(
        aws.inventory().associations.is_empty(),
        "association cleaned up"
    );

    // One verb less: ServiceAccounts may no longer be created. A new binding is not
    // served (the API server refuses the create), while the old rights still let the
    // operator say so on the binding's status.
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let mut role = roles
        .get("pod-identity-operator")
        .await
        .expect("ClusterRole");
    for rule in role.rules.iter_mut().flatten() {
        if rule
            .resources
            .iter()
            .flatten()
            .any(|r| r == "serviceaccounts")
        {
            rule.verbs.retain(|v| v != "create");
        }
    }
    role.metadata.managed_fields = None;
    roles
        .replace("pod-identity-operator", &PostParams::default(), &role)
        .await
        .expect("ClusterRole narrowed");
    bindings
        .create(&PostParams::default(), &binding("writer", "writer"))
        .await
        .expect("binding created");
    let refused = env
        .wait_ready("writer", "a refusal on its status", |_, c| {
            c.status == "False" && c.message.to_lowercase().contains("forbidden")
        })
        .await;
    let message = support::ready(&refused)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("serviceaccounts"), "{message}");
    assert!(accounts.get_opt("writer").await.expect("get").is_none());
    assert!(
        aws.inventory().associations.is_empty(),
        "no association for a ServiceAccount that could not be made"
    );

    // The shipped rights again: it converges without being touched.
    let rbac = concat!(env!("CARGO_MANIFEST_DIR"), "/config/rbac");
    support::kubectl::kubectl(
        plane.kubeconfig(),
        &["apply", "-n", "pod-identity-system", "-k", rbac],
    );
    env.wait_converged("writer").await;

    // The shipped rights let it count the pods that keep an old role's credentials.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NS);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "writer-pod", "namespace": NS},
            "spec": {"serviceAccountName": "writer", "automountServiceAccountToken": false,
                "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}))
        .expect("pod"),
    )
    .await
    .expect("pod created");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    support::existing_role(&aws).await;
    bindings
        .patch(
            "writer",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {
                "arn": support::EXISTING_ROLE_ARN, "managedPolicyArns": null}}})),
        )
        .await
        .expect("role switched");
    wait_until("the moved association's pods counted", || async {
        bindings
            .get("writer")
            .await
            .expect("binding")
            .status
            .iter()
            .flat_map(|s| &s.warnings)
            .any(|w| w.message.contains("1 running pod(s) of it (writer-pod)"))
    })
    .await;
    env.stop().await;
}

async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
