//! What the operator notices beside AWS state and reports as `status.warnings` and
//! Warning Events, with `Ready` unaffected: the Pod Identity Agent not running (and the
//! `pod_identity_agent_running` metric), an IRSA annotation on the binding's
//! ServiceAccount, and running pods that keep the old role's credentials after the
//! association moved to another role. Each case runs on kubesim and on a real
//! kube-apiserver.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::Settings;
use pod_identity_operator::crd::{PodIdentityBinding, StatusWarning};
use pod_identity_operator::runtime::health::Health;
use pod_identity_operator::runtime::metrics::Metrics;
use serde_json::json;

mod support;

use support::apiserver::{self, ApiServer, Running};
use support::{EXISTING_ROLE_ARN, NS, WAIT, ready};

const CLUSTER: &str = "prod";

async fn start(server: ApiServer, tune: impl FnOnce(&mut Settings)) -> (Running, Arc<AwsSim>) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    let env = apiserver::start(server, CLUSTER, aws.clone(), aws.clone(), tune).await;
    (env, aws)
}

fn warnings(b: &PodIdentityBinding) -> Vec<StatusWarning> {
    b.status
        .as_ref()
        .map(|s| s.warnings.clone())
        .unwrap_or_default()
}

fn reasons(b: &PodIdentityBinding) -> Vec<String> {
    warnings(b).into_iter().map(|w| w.reason).collect()
}

/// Waits until binding `name` is Ready for its generation and `check` holds of it.
async fn wait_for(
    env: &Running,
    name: &str,
    what: &str,
    check: impl Fn(&PodIdentityBinding) -> bool,
) -> PodIdentityBinding {
    let deadline = Instant::now() + WAIT;
    loop {
        let b = env.bindings().get(name).await.expect("binding");
        let converged = ready(&b)
            .is_some_and(|c| c.status == "True" && c.observed_generation == b.metadata.generation);
        if converged && check(&b) {
            return b;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got {what}: {:?}",
            b.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(metrics: &Metrics, name: &str) -> Option<String> {
    metrics
        .encode()
        .lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
}

crate::both!(
    without_the_agent_each_binding_is_warned_and_still_ready,
    without_the_agent_each_binding_is_warned_and_still_ready_on_a_real_apiserver,
    without_the_agent_each_binding_is_warned_and_still_ready_on
);

async fn without_the_agent_each_binding_is_warned_and_still_ready_on(server: ApiServer) {
    let metrics = Metrics::new(Arc::new(Health::default()));
    const GAUGE: &str = "pod_identity_operator_pod_identity_agent_running";
    assert_eq!(metric(&metrics, GAUGE).as_deref(), Some("-1"));
    let m = metrics.clone();
    let (env, _aws) = start(server, move |s| {
        s.metrics = Some(m);
        // The agent is looked at again once a resync interval has passed.
        s.resync = Duration::from_secs(1);
    })
    .await;
    support::remove_agent(env.client()).await;
    for name in ["one", "two"] {
        env.apply(name, json!({})).await;
    }
    for name in ["one", "two"] {
        let b = wait_for(&env, name, "the agent warning", |b| {
            reasons(b) == ["PodIdentityAgentMissing"]
        })
        .await;
        assert!(
            warnings(&b)[0]
                .message
                .contains("kube-system/eks-pod-identity-agent"),
            "{:?}",
            warnings(&b)
        );
        let note = env.wait_warning(name, "PodIdentityAgentMissing").await;
        assert!(note.contains("create-addon"), "{note}");
    }
    assert_eq!(metric(&metrics, GAUGE).as_deref(), Some("0"));

    // The agent installed: the next resyncs drop the warning.
    support::install_agent(env.client())
        .await
        .expect("agent installed");
    for name in ["one", "two"] {
        wait_for(&env, name, "no warning", |b| warnings(b).is_empty()).await;
    }
    assert_eq!(metric(&metrics, GAUGE).as_deref(), Some("1"));
    env.stop().await;
}

crate::both!(
    an_irsa_annotation_on_the_service_account_is_warned_about,
    an_irsa_annotation_on_the_service_account_is_warned_about_on_a_real_apiserver,
    an_irsa_annotation_on_the_service_account_is_warned_about_on
);

async fn an_irsa_annotation_on_the_service_account_is_warned_about_on(server: ApiServer) {
    let (env, _aws) = start(server, |s| s.resync = Duration::from_secs(1)).await;
    let irsa_role = "arn:aws:iam::111122223333:role/irsa-app";
    let sas: Api<ServiceAccount> = Api::namespaced(env.client().clone(), NS);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "app", "namespace": NS,
            "annotations": {"eks.amazonaws.com/role-arn": irsa_role}}}))
        .expect("ServiceAccount"),
    )
    .await
    .expect("ServiceAccount created");
    env.apply("app", json!({"serviceAccount": {"create": false}}))
        .await;
    let b = wait_for(&env, "app", "the IRSA warning", |b| {
        reasons(b) == ["IrsaAnnotation"]
    })
    .await;
    assert!(warnings(&b)[0].message.contains(irsa_role));
    let note = env.wait_warning("app", "IrsaAnnotation").await;
    assert!(note.contains("default/app"), "{note}");

    // The annotation removed: the warning goes with the next pass.
    sas.patch(
        "app",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Json::<()>(
            serde_json::from_value(json!([
                {"op": "remove", "path": "/metadata/annotations/eks.amazonaws.com~1role-arn"}
            ]))
            .expect("patch"),
        ),
    )
    .await
    .expect("annotation removed");
    wait_for(&env, "app", "no warning", |b| warnings(b).is_empty()).await;
    env.stop().await;
}

crate::both!(
    pods_keeping_the_old_roles_credentials_are_counted_after_the_association_moves,
    pods_keeping_the_old_roles_credentials_are_counted_after_the_association_moves_on_a_real_apiserver,
    pods_keeping_the_old_roles_credentials_are_counted_after_the_association_moves_on
);

async fn pods_keeping_the_old_roles_credentials_are_counted_after_the_association_moves_on(
    server: ApiServer,
) {
    let (env, aws) = start(server, |s| s.resync = Duration::from_secs(1)).await;
    support::existing_role(&aws).await;
    env.apply("app", json!({})).await;
    let b = env.wait_converged("app").await;
    let managed = b
        .status
        .as_ref()
        .and_then(|s| s.role_arn.clone())
        .expect("role ARN");
    // Two pods of the ServiceAccount, one of another.
    let sas: Api<ServiceAccount> = Api::namespaced(env.client().clone(), NS);
    sas.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other", "namespace": NS}}))
            .expect("ServiceAccount"),
    )
    .await
    .expect("ServiceAccount created");
    let pods: Api<Pod> = Api::namespaced(env.client().clone(), NS);
    for (pod, sa) in [("app-1", "app"), ("app-2", "app"), ("other", "other")] {
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": pod, "namespace": NS},
                "spec": {"serviceAccountName": sa, "automountServiceAccountToken": false,
                    "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}))
            .expect("pod"),
        )
        .await
        .expect("pod created");
    }
    // Creation timestamps have one-second resolution: the move comes later.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    env.patch_role("app", json!({"arn": EXISTING_ROLE_ARN}))
        .await;
    let b = wait_for(&env, "app", "the moved-role warning", |b| {
        reasons(b) == ["PodsHoldOldRoleCredentials"]
    })
    .await;
    let w = &warnings(&b)[0];
    assert!(
        w.message
            .contains(&format!("from role {managed} to {EXISTING_ROLE_ARN}"))
            && w.message.contains("2 running pod(s) of it (app-1, app-2)")
            && w.message.contains("kubectl rollout restart"),
        "{}",
        w.message
    );
    assert!(w.since.is_some());
    let note = env.wait_warning("app", "AssociationRoleChanged").await;
    assert!(note.contains("2 running pod(s)"), "{note}");
    assert_eq!(
        aws.inventory().associations_for(NS, "app")[0].role_arn,
        EXISTING_ROLE_ARN
    );

    // One pod rolled, then the other: the count follows, then the warning goes.
    pods.delete("app-1", &DeleteParams::default().grace_period(0))
        .await
        .expect("pod deleted");
    wait_for(&env, "app", "one pod left", |b| {
        warnings(b)
            .first()
            .is_some_and(|w| w.message.contains("1 running pod(s) of it (app-2)"))
    })
    .await;
    pods.delete("app-2", &DeleteParams::default().grace_period(0))
        .await
        .expect("pod deleted");
    wait_for(&env, "app", "no warning", |b| warnings(b).is_empty()).await;
    env.stop().await;
}
