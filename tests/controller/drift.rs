//! Changes made outside the operator and to the spec: drift in AWS repaired on resync, and
//! renaming the ServiceAccount or the role moving the association.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams};
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::naming;
use serde_json::json;

use crate::support::{NS, WAIT};
use crate::{CLUSTER_ARN, READ_ONLY, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_aws_is_repaired_on_resync() {
    use pod_identity_operator::aws::IamApi;
    let (env, aws) = start(SimConfig::default(), |s| {
        s.resync = Duration::from_millis(100)
    })
    .await;
    env.apply(
        "drifty",
        json!({"role": {"managedPolicyArns": [READ_ONLY]}, "targetRoleArn": "arn:aws:iam::444455556666:role/target"}),
    )
    .await;
    env.wait_converged("drifty").await;
    let name = naming::default_role_name(CLUSTER_ARN, NS, "drifty");
    let role = aws.inventory().role(&name).expect("role").clone();
    assert!(
        role.inline_policies.values().any(|d| d
            .to_string()
            .contains("arn:aws:iam::444455556666:role/target")),
        "the role may assume the target role"
    );
    // Someone loosens the trust policy and detaches the policy.
    AwsSim::as_admin(aws.update_assume_role_policy(
        &name,
        &pod_identity_operator::policy::pod_identity_trust_policy(None),
    ))
    .await
    .expect("tamper trust");
    AwsSim::as_admin(aws.detach_role_policy(&name, READ_ONLY))
        .await
        .expect("tamper policy");
    let deadline = Instant::now() + WAIT;
    loop {
        let now = aws.inventory().role(&name).expect("role").clone();
        if now.attached_policy_arns == [READ_ONLY]
            && pod_identity_operator::policy::documents_equivalent(
                &now.role.assume_role_policy,
                &role.role.assume_role_policy,
            )
        {
            break;
        }
        assert!(Instant::now() < deadline, "drift never repaired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(aws.knobs().calls_of("UpdateAssumeRolePolicy"), 2);
    assert_eq!(aws.knobs().calls_of("AttachRolePolicy"), 2);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_the_service_account_or_role_moves_the_association() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("mover", json!({})).await;
    env.wait_converged("mover").await;
    let sas: Api<ServiceAccount> = Api::namespaced(env.client.clone(), NS);

    env.bindings()
        .patch(
            "mover",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceAccount": {"name": "moved"}}})),
        )
        .await
        .expect("rename sa");
    let b = env.wait_converged("mover").await;
    assert_eq!(
        b.status
            .as_ref()
            .and_then(|s| s.service_account.as_ref())
            .map(|s| s.name.as_str()),
        Some("moved")
    );
    let inv = aws.inventory();
    assert!(inv.associations_for(NS, "mover").is_empty());
    assert_eq!(inv.associations_for(NS, "moved").len(), 1);
    assert!(
        sas.get_opt("mover").await.expect("get").is_none(),
        "old ServiceAccount removed"
    );
    assert!(sas.get_opt("moved").await.expect("get").is_some());

    env.bindings()
        .patch(
            "mover",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"role": {"name": "mover-renamed"}}})),
        )
        .await
        .expect("rename role");
    env.wait_converged("mover").await;
    let inv = aws.inventory();
    assert!(
        inv.role(&naming::default_role_name(CLUSTER_ARN, NS, "mover"))
            .is_none()
    );
    assert!(inv.role("mover-renamed").is_some());
    let assocs = inv.associations_for(NS, "moved");
    assert_eq!(assocs.len(), 1);
    assert!(assocs[0].role_arn.ends_with("/mover-renamed"));
    assert_eq!(aws.knobs().calls_of("UpdatePodIdentityAssociation"), 1);
    env.stop().await;
}
