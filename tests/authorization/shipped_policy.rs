//! Under the shipped policy (`config/iam/operator-policy.json`): what it must refuse on a
//! role the operator does not own, and the controller's whole life of a binding naming an
//! existing role passing under it.

use std::sync::Arc;

use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateRole, IamApi, Tags};
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::{Value, json};

use crate::CLUSTER;
use crate::support;
use crate::support::{Env, READ_ONLY};

fn shipped_policy() -> Value {
    let shipped: Value =
        serde_json::from_str(include_str!("../../config/iam/operator-policy.json"))
            .expect("config/iam/operator-policy.json is JSON");
    // The simulator enforces this one by default.
    assert_eq!(pod_identity_operator::aws::sim::operator_policy(), shipped);
    shipped
}

#[tokio::test]
async fn the_shipped_policy_refuses_every_write_and_policy_read_on_a_role_it_does_not_own() {
    let aws = AwsSim::new(SimConfig::default());
    support::existing_role(&aws).await;
    aws.enforce(Some(&shipped_policy()));

    let doc = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let tags: Tags = [("team".to_owned(), "x".to_owned())].into();
    let results: Vec<(&str, pod_identity_operator::aws::Result<()>)> = vec![
        (
            "iam:GetRolePolicy",
            aws.get_role_policy("deploy", "deploy").await.map(|_| ()),
        ),
        (
            "iam:ListAttachedRolePolicies",
            aws.list_attached_role_policies("deploy").await.map(|_| ()),
        ),
        (
            "iam:ListRolePolicies",
            aws.list_role_policies("deploy").await.map(|_| ()),
        ),
        (
            "iam:PutRolePolicy",
            aws.put_role_policy("deploy", "admin", &doc).await,
        ),
        (
            "iam:DeleteRolePolicy",
            aws.delete_role_policy("deploy", "deploy").await,
        ),
        (
            "iam:AttachRolePolicy",
            aws.attach_role_policy("deploy", "arn:aws:iam::aws:policy/AdministratorAccess")
                .await,
        ),
        (
            "iam:DetachRolePolicy",
            aws.detach_role_policy("deploy", READ_ONLY).await,
        ),
        ("iam:DeleteRole", aws.delete_role("deploy").await),
        (
            "iam:UpdateAssumeRolePolicy",
            aws.update_assume_role_policy("deploy", &doc).await,
        ),
        ("iam:TagRole", aws.tag_role("deploy", &tags).await),
        (
            "iam:UntagRole",
            aws.untag_role("deploy", &["team".to_owned()]).await,
        ),
        (
            "iam:UpdateRole",
            aws.update_role("deploy", Some("taken over"), None).await,
        ),
        (
            "iam:PutRolePermissionsBoundary",
            aws.put_role_permissions_boundary("deploy", READ_ONLY).await,
        ),
        (
            "iam:DeleteRolePermissionsBoundary",
            aws.delete_role_permissions_boundary("deploy").await,
        ),
        (
            "iam:ListInstanceProfilesForRole",
            aws.list_instance_profiles_for_role("deploy")
                .await
                .map(|_| ()),
        ),
        (
            "iam:ListRoleTags",
            aws.list_role_tags("deploy").await.map(|_| ()),
        ),
        (
            "iam:CreateRole",
            aws.create_role(&CreateRole {
                name: "outside".into(),
                path: "/".into(),
                assume_role_policy: pod_identity_trust_policy(None),
                ..CreateRole::default()
            })
            .await
            .map(|_| ()),
        ),
    ];
    assert!(results.len() >= 15);
    for (action, result) in results {
        let e = result.expect_err(action);
        let aws_error = e.aws().unwrap_or_else(|| panic!("{action}: {e}"));
        assert_eq!(aws_error.code, "AccessDenied", "{action}: {e}");
        assert!(
            aws_error.message.contains(&format!(
                "perform: {action} on resource: arn:aws:iam::111122223333:role/"
            )),
            "{action}: {}",
            aws_error.message
        );
    }
    // What the operator needs of such a role is allowed: GetRole.
    assert!(aws.get_role("deploy").await.expect("GetRole").is_some());
    // Nothing changed.
    aws.enforce(None);
    let inv = aws.inventory();
    let role = inv.role("deploy").expect("kept");
    assert_eq!(role.attached_policy_arns, vec![READ_ONLY.to_owned()]);
    assert_eq!(role.inline_policies.len(), 1);
    assert!(inv.role("outside").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_with_an_existing_role_lives_and_dies_under_the_shipped_policy() {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    support::existing_role(&aws).await;
    aws.enforce(Some(&shipped_policy()));
    let env = Env::start(CLUSTER, aws.clone(), aws.clone(), |_| {}).await;

    let existing = support::EXISTING_ROLE_ARN;
    env.apply("app", json!({"role": {"arn": existing}})).await;
    env.wait_converged("app").await;
    env.patch_role(
        "app",
        json!({"arn": null, "managedPolicyArns": [READ_ONLY]}),
    )
    .await;
    env.wait_converged("app").await;
    env.patch_role("app", json!({"arn": existing, "managedPolicyArns": null}))
        .await;
    env.wait_converged("app").await;
    env.delete("app").await;
    env.wait_gone("app").await;

    assert!(
        !env.event_reasons()
            .await
            .iter()
            .any(|(_, reason)| reason == "AccessDenied"),
        "{:?}",
        env.event_reasons().await
    );
    aws.enforce(None);
    let inv = aws.inventory();
    assert_eq!(inv.roles.len(), 1, "only the existing role is left");
    assert!(inv.associations.is_empty());
    let role = inv.role("deploy").expect("kept");
    assert_eq!(role.attached_policy_arns, vec![READ_ONLY.to_owned()]);
    env.stop().await;
}
