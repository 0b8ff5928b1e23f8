//! Under the policy rendered for one installation: a binding's whole life needs exactly
//! the actions it allows, and an AccessDenied status names the statement the operator's
//! role lacks.

use std::sync::Arc;

use pod_identity_operator::aws::IamApi;
use pod_identity_operator::aws::sim::AwsSim;
use pod_identity_operator::guardrails::GuardrailSource;
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::{Value, json};

use crate::support::{Env, READ_ONLY};
use crate::{
    ALLOWED_EXISTING, CLUSTER, OPERATOR_ROLE, rendered, tenant_account, tenant_guardrails,
};

/// The actions of the policy's Allow statements.
fn allowed_actions(policy: &Value) -> std::collections::BTreeSet<String> {
    policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|st| st["Effect"] == "Allow")
        .flat_map(|st| match &st["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// A binding's whole life under the rendered policy, with the simulator recording every
/// authorization: created with a managed role (policies, inline policy, tags, session
/// policy), changed, its role tampered with and repaired, switched to an existing role
/// and back, its role held by an instance profile at deletion, then deleted. Every call
/// is allowed, and every action the policy allows was needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bindings_whole_life_needs_exactly_the_actions_the_rendered_policy_allows() {
    let (aws, _) = tenant_account().await;
    let policy = rendered();
    aws.enforce(Some(&policy));
    aws.record_authorizations();
    let env = Env::start(CLUSTER, aws.clone(), aws.clone(), |s| {
        s.guardrails = Arc::new(GuardrailSource::fixed(tenant_guardrails()));
        s.operator_role_arn = Some(OPERATOR_ROLE.into());
    })
    .await;
    let inline = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}]});

    env.apply(
        "app",
        json!({"role": {"managedPolicyArns": [READ_ONLY], "inlinePolicies": {"read": inline},
                        "description": "app"},
               "tags": {"team": "a", "tier": "web"}}),
    )
    .await;
    let b = env.wait_converged("app").await;
    let role_name = b
        .status
        .as_ref()
        .and_then(|s| s.role_arn.as_deref())
        .and_then(|arn| arn.rsplit('/').next())
        .expect("role arn")
        .to_owned();

    // Drift behind the operator's back, then a spec change that repairs it and changes
    // the role and the association.
    AwsSim::as_admin(async {
        aws.update_assume_role_policy(&role_name, &pod_identity_trust_policy(None))
            .await
            .expect("trust tampered");
        aws.delete_role_permissions_boundary(&role_name)
            .await
            .expect("boundary removed");
    })
    .await;
    env.patch_spec(
        "app",
        json!({"role": {"description": "app, changed", "maxSessionDuration": 7200,
                        "managedPolicyArns": null, "inlinePolicies": null},
               "tags": {"team": "b", "tier": null}}),
    )
    .await;
    env.wait_converged("app").await;

    // To an existing role and back to a managed one.
    env.patch_role(
        "app",
        json!({"arn": ALLOWED_EXISTING, "description": null, "maxSessionDuration": null}),
    )
    .await;
    env.wait_converged("app").await;
    env.patch_role("app", json!({"arn": null})).await;
    let b = env.wait_converged("app").await;
    let role_name = b
        .status
        .as_ref()
        .and_then(|s| s.role_arn.as_deref())
        .and_then(|arn| arn.rsplit('/').next())
        .expect("role arn")
        .to_owned();

    // An instance profile holds the role at deletion; once it is gone, the delete ends.
    aws.add_instance_profile("holder", &role_name)
        .expect("instance profile");
    env.delete("app").await;
    env.wait_warning("app", "CleanupBlocked").await;
    aws.remove_instance_profile("holder", &role_name);
    env.wait_gone("app").await;
    env.stop().await;

    let log = aws.authorizations();
    let refused: Vec<_> = log.iter().filter(|(_, _, allowed)| !allowed).collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let used: std::collections::BTreeSet<String> =
        log.iter().map(|(action, _, _)| action.clone()).collect();
    let allowed = allowed_actions(&policy);
    let unused: Vec<_> = allowed.difference(&used).collect();
    let unknown: Vec<_> = used.difference(&allowed).collect();
    assert!(
        unused.is_empty() && unknown.is_empty(),
        "allowed but never needed: {unused:?}; needed but not listed: {unknown:?}"
    );
    // Every resource was this cluster's, or an existing role the guardrails allow.
    for (action, resource, _) in &log {
        assert!(
            resource.starts_with("arn:aws:iam::111122223333:role/pod-identity/prod/")
                || resource.starts_with("arn:aws:eks:us-east-1:111122223333:cluster/prod")
                || resource.starts_with("arn:aws:eks:us-east-1:111122223333:podidentityassociation/prod/")
                || resource == ALLOWED_EXISTING
                // GetRole by name of a role that does not exist yet.
                || (action == "iam:GetRole" && resource.starts_with("arn:aws:iam::111122223333:role/")),
            "{action} on {resource}"
        );
    }
}

/// When the operator's role lacks a statement of the rendered policy, the status names
/// that statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_denied_status_names_the_statement_the_operators_role_lacks() {
    let (aws, _) = tenant_account().await;
    let mut partial = rendered();
    let statements = partial["Statement"].as_array_mut().expect("statements");
    statements.retain(|st| st["Sid"] != "AttachManagedPoliciesTheGuardrailsAllow");
    aws.enforce(Some(&partial));
    let env = Env::start(CLUSTER, aws.clone(), aws.clone(), |s| {
        s.guardrails = Arc::new(GuardrailSource::fixed(tenant_guardrails()));
        s.operator_role_arn = Some(OPERATOR_ROLE.into());
    })
    .await;
    env.apply("app", json!({"role": {"managedPolicyArns": [READ_ONLY]}}))
        .await;
    let message = env.wait_warning("app", "AccessDenied").await;
    assert!(
        message.contains("AttachRolePolicy failed: AccessDenied: iam:AttachRolePolicy on arn:aws:iam::111122223333:role/pod-identity/prod/")
            && message.contains("statement AttachManagedPoliciesTheGuardrailsAllow of this installation's policy allows it only when"),
        "{message}"
    );
    env.stop().await;
}
