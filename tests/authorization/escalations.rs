//! Under the policy rendered for one installation: a table of calls it must refuse (and
//! the operator's work it allows), the escalations it stops with the guardrail checks
//! switched off, and a binding naming the operator's own role refused.

use std::sync::Arc;

use pod_identity_operator::aws::{CreateAssociation, EksApi, IamApi};
use pod_identity_operator::guardrails::GuardrailSource;
use serde_json::json;

use crate::support;
use crate::support::{Env, READ_ONLY};
use crate::{
    ALLOWED_EXISTING, BOUNDARY, CLUSTER, OPERATOR_ROLE, OTHER_BOUNDARY, UNLISTED, ownership,
    rendered, role, tenant_account, tenant_guardrails,
};

const ADMINISTRATOR: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

fn unit<T>(
    result: pod_identity_operator::aws::Result<T>,
) -> pod_identity_operator::aws::Result<()> {
    result.map(|_| ())
}

fn association(cluster: &str, sa: &str, role_arn: &str) -> CreateAssociation {
    CreateAssociation {
        cluster_name: cluster.into(),
        namespace: "team".into(),
        service_account: sa.into(),
        role_arn: role_arn.into(),
        ..CreateAssociation::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_policy_refuses_every_escalation_of_the_table_and_allows_the_operators_work() {
    let (aws, other_association) = tenant_account().await;
    let before = aws.inventory();
    aws.enforce(Some(&rendered()));
    let doc = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let ours_arn = "arn:aws:iam::111122223333:role/pod-identity/prod/ours";
    let denied: Vec<(&str, &str, pod_identity_operator::aws::Result<()>)> = vec![
        (
            "AdministratorAccess attached",
            "iam:AttachRolePolicy",
            aws.attach_role_policy("ours", ADMINISTRATOR).await,
        ),
        (
            "a managed policy no rule allows attached",
            "iam:AttachRolePolicy",
            aws.attach_role_policy("ours", UNLISTED).await,
        ),
        (
            "a role created without the mandatory boundary",
            "iam:CreateRole",
            unit(
                aws.create_role(&role(
                    "nob",
                    "/pod-identity/prod/",
                    ownership(CLUSTER),
                    None,
                ))
                .await,
            ),
        ),
        (
            "a role created with another boundary",
            "iam:CreateRole",
            unit(
                aws.create_role(&role(
                    "lenient",
                    "/pod-identity/prod/",
                    ownership(CLUSTER),
                    Some(OTHER_BOUNDARY),
                ))
                .await,
            ),
        ),
        (
            "a role created under this path for another cluster",
            "iam:CreateRole",
            unit(
                aws.create_role(&role(
                    "squat",
                    "/pod-identity/prod/",
                    ownership("prod-eu"),
                    Some(BOUNDARY),
                ))
                .await,
            ),
        ),
        (
            "a role created under another cluster's path",
            "iam:CreateRole",
            unit(
                aws.create_role(&role(
                    "there",
                    "/pod-identity/prod-eu/",
                    ownership(CLUSTER),
                    Some(BOUNDARY),
                ))
                .await,
            ),
        ),
        (
            "a role created outside the operator's path",
            "iam:CreateRole",
            unit(
                aws.create_role(&role("anywhere", "/", ownership(CLUSTER), Some(BOUNDARY)))
                    .await,
            ),
        ),
        (
            "the boundary removed",
            "iam:DeleteRolePermissionsBoundary",
            aws.delete_role_permissions_boundary("ours").await,
        ),
        (
            "the boundary replaced",
            "iam:PutRolePermissionsBoundary",
            aws.put_role_permissions_boundary("ours", OTHER_BOUNDARY)
                .await,
        ),
        (
            "another cluster's role given a policy",
            "iam:PutRolePolicy",
            aws.put_role_policy("victim", "p", &doc).await,
        ),
        (
            "a role of this path owned by another cluster changed",
            "iam:PutRolePolicy",
            aws.put_role_policy("foreign", "p", &doc).await,
        ),
        (
            "a role of this path owned by another cluster deleted",
            "iam:DeleteRole",
            aws.delete_role("foreign").await,
        ),
        (
            "the ownership tag removed",
            "iam:UntagRole",
            aws.untag_role("ours", &["podidentity.dev/cluster".to_owned()])
                .await,
        ),
        (
            "an owned role retagged for another cluster",
            "iam:TagRole",
            aws.tag_role("ours", &ownership("prod-eu")).await,
        ),
        (
            "another cluster's role under this path claimed",
            "iam:TagRole",
            aws.tag_role("foreign", &ownership(CLUSTER)).await,
        ),
        (
            "a deploy role's trust rewritten",
            "iam:UpdateAssumeRolePolicy",
            aws.update_assume_role_policy("deploy", &doc).await,
        ),
        (
            "a deploy role's policies read",
            "iam:GetRolePolicy",
            unit(aws.get_role_policy("deploy", "deploy").await),
        ),
        (
            "a deploy role tagged",
            "iam:TagRole",
            aws.tag_role("deploy", &ownership(CLUSTER)).await,
        ),
        (
            "the operator's role read",
            "iam:GetRole",
            unit(aws.get_role("pod-identity-operator").await),
        ),
        (
            "the operator's role passed to pods",
            "iam:PassRole",
            unit(
                aws.create_pod_identity_association(&association(CLUSTER, "a", OPERATOR_ROLE))
                    .await,
            ),
        ),
        (
            "a role no rule allows passed to pods",
            "iam:PassRole",
            unit(
                aws.create_pod_identity_association(&association(
                    CLUSTER,
                    "b",
                    support::EXISTING_ROLE_ARN,
                ))
                .await,
            ),
        ),
        (
            "an association made in another cluster",
            "eks:CreatePodIdentityAssociation",
            unit(
                aws.create_pod_identity_association(&association("prod-eu", "c", ours_arn))
                    .await,
            ),
        ),
        (
            "another cluster's association deleted",
            "eks:DeletePodIdentityAssociation",
            aws.delete_pod_identity_association("prod-eu", &other_association)
                .await,
        ),
        (
            "another cluster described",
            "eks:DescribeCluster",
            unit(aws.describe_cluster("prod-eu").await),
        ),
    ];
    assert!(denied.len() >= 15, "{}", denied.len());
    let mut wrong = Vec::new();
    for (case, action, result) in denied {
        match result {
            Ok(()) => wrong.push(format!("{case}: allowed")),
            Err(e) => {
                let message = e.aws().map(|a| a.message.clone()).unwrap_or_default();
                let class = e.aws().map(|a| a.class);
                if class != Some(pod_identity_operator::error::ErrorClass::AccessDenied)
                    || !message.contains(&format!("perform: {action} on resource: arn:aws:"))
                {
                    wrong.push(format!("{case}: want {action} denied, got {e}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    aws.enforce(None);
    assert_eq!(
        aws.inventory(),
        before,
        "nothing changed by the refused calls"
    );

    // What the operator does for this cluster under these guardrails is allowed.
    aws.enforce(Some(&rendered()));
    let made = aws
        .create_role(&role(
            "made",
            "/pod-identity/prod/",
            ownership(CLUSTER),
            Some(BOUNDARY),
        ))
        .await
        .expect("CreateRole with the boundary and the ownership tags");
    aws.attach_role_policy("made", READ_ONLY)
        .await
        .expect("an allowed policy");
    aws.put_role_policy("made", "p", &doc)
        .await
        .expect("inline policy");
    aws.tag_role("made", &[("team".to_owned(), "x".to_owned())].into())
        .await
        .expect("tag an owned role");
    aws.get_role("allowed-app")
        .await
        .expect("an allowed existing role");
    aws.create_pod_identity_association(&association(CLUSTER, "d", ALLOWED_EXISTING))
        .await
        .expect("pass an allowed existing role");
    aws.create_pod_identity_association(&association(CLUSTER, "e", &made.arn))
        .await
        .expect("pass an owned role");
    aws.delete_role_policy("made", "p")
        .await
        .expect("inline policy removed");
    aws.detach_role_policy("made", READ_ONLY)
        .await
        .expect("detach");
}

/// The controller with its guardrail checks switched off (the guardrails only place
/// roles), under the policy rendered from the same guardrails: each binding asks for
/// what the guardrails would have refused, IAM refuses it, the status names the call and
/// says the operator should not need it, and the account keeps no trace of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_guardrail_checks_off_the_rendered_policy_alone_stops_each_escalation() {
    let (aws, _) = tenant_account().await;
    let before = aws.inventory();
    aws.enforce(Some(&rendered()));
    let env = Env::start(CLUSTER, aws.clone(), aws.clone(), |s| {
        s.guardrails = Arc::new(GuardrailSource::fixed(tenant_guardrails()));
        s.guardrail_checks = false;
        s.operator_role_arn = Some(OPERATOR_ROLE.into());
    })
    .await;

    // Allowed by the guardrails: converges, and is the role whose boundary is removed.
    env.apply(
        "bounded",
        json!({"role": {"permissionsBoundaryArn": BOUNDARY, "managedPolicyArns": [READ_ONLY]}}),
    )
    .await;
    env.wait_converged("bounded").await;
    env.patch_role("bounded", json!({"permissionsBoundaryArn": null}))
        .await;

    let cases = [
        (
            "admin",
            json!({"role": {"permissionsBoundaryArn": BOUNDARY, "managedPolicyArns": [ADMINISTRATOR]}}),
            "iam:AttachRolePolicy",
        ),
        ("unbounded", json!({}), "iam:CreateRole"),
        (
            "lenient",
            json!({"role": {"permissionsBoundaryArn": OTHER_BOUNDARY}}),
            "iam:CreateRole",
        ),
        (
            "other-cluster",
            json!({"role": {"arn": "arn:aws:iam::111122223333:role/pod-identity/prod-eu/victim"}}),
            "iam:PassRole",
        ),
        (
            "operator",
            json!({"role": {"arn": OPERATOR_ROLE}}),
            "iam:GetRole",
        ),
        (
            "deploy",
            json!({"role": {"arn": support::EXISTING_ROLE_ARN}}),
            "iam:PassRole",
        ),
    ];
    for (name, spec, _) in &cases {
        env.apply(name, spec.clone()).await;
    }
    let mut all = cases.to_vec();
    all.push(("bounded", json!(null), "iam:DeleteRolePermissionsBoundary"));
    for (name, _, action) in &all {
        let message = env.wait_warning(name, "AccessDenied").await;
        assert!(message.contains(action), "{name}: {message}");
        assert!(message.contains("should not need it"), "{name}: {message}");
    }
    let operator = env.wait_warning("operator", "AccessDenied").await;
    assert!(
        operator.contains("NeverTouchTheOperatorsOwnRole"),
        "{operator}"
    );

    aws.enforce(None);
    let inv = aws.inventory();
    for r in &inv.roles {
        assert!(
            !r.attached_policy_arns.iter().any(|p| p == ADMINISTRATOR),
            "{} has AdministratorAccess",
            r.role.name
        );
        if r.role
            .tags
            .get("podidentity.dev/cluster")
            .map(String::as_str)
            == Some(CLUSTER)
        {
            assert_eq!(
                r.role.permissions_boundary_arn.as_deref(),
                Some(BOUNDARY),
                "{} lost or never had the mandatory boundary",
                r.role.name
            );
        }
    }
    let made: Vec<_> = inv
        .roles
        .iter()
        .filter(|r| !before.roles.iter().any(|b| b.role.name == r.role.name))
        .map(|r| r.role.name.clone())
        .collect();
    assert_eq!(
        made.len(),
        2,
        "the bounded role and admin's role only: {made:?}"
    );
    let associations: Vec<_> = inv
        .associations
        .iter()
        .filter(|a| a.cluster_name == CLUSTER)
        .map(|a| a.role_arn.clone())
        .collect();
    assert_eq!(
        associations.len(),
        1,
        "only the bounded binding's: {associations:?}"
    );
    assert!(
        associations[0].contains("/pod-identity/prod/"),
        "{associations:?}"
    );
    env.stop().await;
}

/// With the checks on, a binding naming the operator's own role is refused before any
/// AWS call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_naming_the_operators_own_role_is_refused() {
    let (aws, _) = tenant_account().await;
    aws.enforce(Some(&rendered()));
    let mut guardrails = tenant_guardrails();
    guardrails.rules[0].allowed_existing_role_arns = vec!["*".into()];
    let env = Env::start(CLUSTER, aws.clone(), aws.clone(), |s| {
        s.guardrails = Arc::new(GuardrailSource::fixed(guardrails));
        s.operator_role_arn = Some(OPERATOR_ROLE.into());
    })
    .await;
    env.apply("own", json!({"role": {"arn": OPERATOR_ROLE}}))
        .await;
    env.apply(
        "chained",
        json!({"role": {"arn": ALLOWED_EXISTING}, "targetRoleArn": OPERATOR_ROLE}),
    )
    .await;
    for (name, field) in [("own", "spec.role.arn"), ("chained", "spec.targetRoleArn")] {
        let message = env.wait_warning(name, "PolicyDenied").await;
        assert!(
            message.contains(field) && message.contains("operator's own role"),
            "{message}"
        );
    }
    env.stop().await;
}
