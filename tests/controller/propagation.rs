//! The create path's crash-safety (every failed write converges to exactly one of each),
//! AWS's windows: a role not yet visible to EKS, a role gone before its delete lands, a
//! binding recreated while its association is being released; and a role held by an
//! instance profile blocking cleanup until released.

use std::time::{Duration, Instant};

use kube::ResourceExt;
use pod_identity_operator::aws::faults::Fault;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::naming;
use serde_json::json;

use crate::support::{NS, WAIT, ready};
use crate::{CLUSTER_ARN, READ_ONLY, owned_roles, start};

/// For every write of the create path, failing it once (before it acts, or after it
/// acted with the answer lost) still ends with one role, one association and Ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_create_write_converges_to_exactly_one_of_each() {
    let create_path = [
        "CreateRole",
        "AttachRolePolicy",
        "PutRolePolicy",
        "CreatePodIdentityAssociation",
    ];
    let spec = json!({"role": {"managedPolicyArns": [READ_ONLY],
        "inlinePolicies": {"s3": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}}}});
    for (k, op) in create_path.iter().enumerate() {
        for after_effect in [false, true] {
            let (env, aws) = start(SimConfig::default(), |_| {}).await;
            let fault = if after_effect {
                Fault::timeout().after_effect()
            } else {
                Fault::timeout()
            };
            aws.knobs().fail_nth(op, 1, fault);
            env.apply("crashy", spec.clone()).await;
            env.wait_converged("crashy").await;
            let case = format!(
                "write {} ({op}) failed, after effect: {after_effect}",
                k + 1
            );
            // A write failed before acting is repeated; one that acted with its answer
            // lost is not (the next pass observes what it made).
            let expected_calls = if after_effect { 1 } else { 2 };
            assert_eq!(aws.knobs().calls_of(op), expected_calls, "{case}");
            let reasons = env.event_reasons().await;
            assert!(
                reasons
                    .iter()
                    .any(|(t, r)| t == "Warning" && r == "Retrying"),
                "{case}: the failure was not reported: {reasons:?}"
            );
            assert_eq!(owned_roles(&aws, "crashy"), 1, "{case}");
            let inv = aws.inventory();
            assert_eq!(inv.associations_for(NS, "crashy").len(), 1, "{case}");
            let role = inv
                .role(&naming::default_role_name(CLUSTER_ARN, NS, "crashy"))
                .expect("role");
            assert_eq!(role.attached_policy_arns, [READ_ONLY], "{case}");
            assert_eq!(role.inline_policies.len(), 1, "{case}");
            env.stop().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_not_yet_visible_to_eks_reports_role_propagating_then_ready() {
    let config = SimConfig {
        role_propagation: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let (env, aws) = start(config, |_| {}).await;
    env.apply("fresh", json!({})).await;
    env.wait_warning("fresh", "RolePropagating").await;
    let b = env.wait_converged("fresh").await;
    assert_eq!(ready(&b).map(|c| c.reason.as_str()), Some("Reconciled"));
    assert_eq!(aws.inventory().associations_for(NS, "fresh").len(), 1);
    env.stop().await;
}

/// A role already gone when the operator's DeleteRole lands (an earlier DeleteRole whose
/// answer was lost and that the SDK sent again, or one a killed operator left in flight):
/// IAM authorizes a call on a role it does not find by `role/<name>`, outside the path
/// the operator's policy allows DeleteRole on, and answers AccessDenied. The operator
/// reads the role again, finds it gone, and lets the binding go in that same pass rather
/// than waiting out the slow retry of an AccessDenied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_gone_before_its_delete_lands_answers_access_denied_and_the_cleanup_ends() {
    let (env, aws) = start(SimConfig::default(), |s| {
        s.retry_slow = Duration::from_secs(3600);
    })
    .await;
    env.apply(
        "doomed",
        json!({"role": {"managedPolicyArns": [READ_ONLY]}}),
    )
    .await;
    env.wait_converged("doomed").await;
    let role = naming::default_role_name(CLUSTER_ARN, NS, "doomed");
    let arn = aws.inventory().role(&role).expect("role").role.arn.clone();
    aws.record_authorizations();
    aws.knobs()
        .set_operation_latency("DeleteRole", Duration::from_millis(500));
    env.delete("doomed").await;
    let deadline = Instant::now() + WAIT;
    while aws.knobs().writes_in_flight() == 0 || aws.knobs().calls_of("DeleteRole") == 0 {
        assert!(Instant::now() < deadline, "DeleteRole never sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The operator's DeleteRole waits out its latency; the role goes before it lands.
    aws.knobs()
        .set_operation_latency("DeleteRole", Duration::ZERO);
    AwsSim::as_admin(pod_identity_operator::aws::IamApi::delete_role(
        aws.as_ref(),
        &role,
    ))
    .await
    .expect("the role deleted under the operator");
    env.wait_gone("doomed").await;
    let bare = format!("arn:aws:iam::111122223333:role/{role}");
    let decided: Vec<_> = aws
        .authorizations()
        .into_iter()
        .filter(|(action, _, _)| action == "iam:DeleteRole")
        .map(|(_, resource, allowed)| (resource, allowed))
        .collect();
    assert_eq!(
        decided,
        [(bare, false)],
        "the operator's DeleteRole met the gone role as AccessDenied (the role was {arn})"
    );
    assert_eq!(owned_roles(&aws, "doomed"), 0);
    assert!(aws.inventory().associations_for(NS, "doomed").is_empty());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_recreate_during_the_association_release_window_converges() {
    let config = SimConfig {
        association_release: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let (env, aws) = start(config, |_| {}).await;
    env.apply("replaced", json!({})).await;
    env.wait_converged("replaced").await;
    env.delete("replaced").await;
    env.wait_gone("replaced").await;
    let b = env.apply("replaced", json!({})).await;
    let b2 = env.wait_converged("replaced").await;
    assert_eq!(b.uid(), b2.uid());
    let inv = aws.inventory();
    assert_eq!(inv.associations_for(NS, "replaced").len(), 1);
    assert_eq!(owned_roles(&aws, "replaced"), 1);
    assert!(
        aws.knobs().calls_of("CreatePodIdentityAssociation") >= 3,
        "the release window was not hit"
    );
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_held_by_an_instance_profile_blocks_cleanup_until_released() {
    let (env, aws) = start(SimConfig::default(), |_| {}).await;
    env.apply("held", json!({})).await;
    env.wait_converged("held").await;
    let name = naming::default_role_name(CLUSTER_ARN, NS, "held");
    aws.add_instance_profile("stray-profile", &name)
        .expect("instance profile");
    env.delete("held").await;
    let b = env
        .wait_ready("held", "CleanupBlocked", |_, c| {
            c.reason == "CleanupBlocked"
        })
        .await;
    assert!(ready(&b).is_some_and(|c| c.message.contains("stray-profile")));
    assert!(
        aws.inventory().associations_for(NS, "held").is_empty(),
        "association went first"
    );
    aws.remove_instance_profile("stray-profile", &name);
    env.wait_gone("held").await;
    assert!(aws.inventory().role(&name).is_none());
    env.stop().await;
}
