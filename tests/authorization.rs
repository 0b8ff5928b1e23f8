//! The AWS simulator authorizing every call against the operator's IAM policy,
//! evaluated as IAM does. Under the shipped policy (`config/iam/operator-policy.json`):
//! what it must refuse on a role the operator does not own, and the controller's whole
//! life of a binding naming an existing role passing under it. Under the policy rendered
//! for one installation (`operator_policy`, `pod-identity-operator iam-policy`): a table
//! of calls it must refuse, the escalations it stops with the guardrail checks switched
//! off, and a binding's whole life needing exactly what it allows.

mod support;

use std::sync::Arc;

use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateAssociation, CreateRole, EksApi, IamApi, Tags};
use pod_identity_operator::guardrails::{GuardrailConfig, GuardrailSource};
use pod_identity_operator::operator_policy::{self, Installation};
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::{Value, json};
use support::{Env, READ_ONLY};

const CLUSTER: &str = "prod";

fn shipped_policy() -> Value {
    let shipped: Value = serde_json::from_str(include_str!("../config/iam/operator-policy.json"))
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
    let results: Vec<(&str, pod_identity_operator::Result<()>)> = vec![
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

const ACCOUNT: &str = "111122223333";
const OPERATOR_ROLE: &str = "arn:aws:iam::111122223333:role/pod-identity-operator";
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/boundary";
const OTHER_BOUNDARY: &str = "arn:aws:iam::111122223333:policy/lenient";
const ADMINISTRATOR: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const UNLISTED: &str = "arn:aws:iam::111122223333:policy/unlisted";
const ALLOWED_EXISTING: &str = "arn:aws:iam::111122223333:role/allowed-app";

/// A platform team's guardrails: one managed policy, a mandatory boundary, existing
/// roles named `allowed-*` only.
const TENANT_GUARDRAILS: &str = r#"
rules:
- name: tenants
  namespaces: ["*"]
  allowedManagedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
  deniedManagedPolicyArns: ["arn:aws:iam::aws:policy/AdministratorAccess"]
  inlinePolicies: {allowed: true}
  allowedExistingRoleArns: ["arn:aws:iam::111122223333:role/allowed-*"]
  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/boundary
"#;

fn tenant_guardrails() -> GuardrailConfig {
    GuardrailConfig::parse(TENANT_GUARDRAILS).expect("guardrails")
}

fn installation() -> Installation {
    Installation::new(CLUSTER, ACCOUNT, "us-east-1").with_operator_role(Some(OPERATOR_ROLE.into()))
}

fn rendered() -> Value {
    operator_policy::permissions(&installation(), &tenant_guardrails())
}

fn ownership(cluster: &str) -> Tags {
    let arn = format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{cluster}");
    pod_identity_operator::naming::ownership_tags(&arn, "team", "app")
}

fn role(name: &str, path: &str, tags: Tags, boundary: Option<&str>) -> CreateRole {
    CreateRole {
        name: name.into(),
        path: path.into(),
        assume_role_policy: pod_identity_trust_policy(None),
        permissions_boundary_arn: boundary.map(str::to_owned),
        tags,
        ..CreateRole::default()
    }
}

/// An account with this cluster and another (`prod-eu`), made by an administrator: the
/// operator's own role, a deploy role, an allowed existing role, a role of `prod-eu`
/// (`victim`), a role under this cluster's path tagged for `prod-eu` (`foreign`), one
/// owned by this cluster (`ours`, with the boundary), and an association of `prod-eu`.
async fn tenant_account() -> (Arc<AwsSim>, String) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    aws.add_cluster("prod-eu");
    for p in [BOUNDARY, OTHER_BOUNDARY, UNLISTED] {
        aws.add_managed_policy(p);
    }
    support::existing_role(&aws).await;
    let other_association = AwsSim::as_admin(async {
        for r in [
            role("pod-identity-operator", "/", Tags::new(), None),
            role("allowed-app", "/", Tags::new(), None),
            role(
                "victim",
                "/pod-identity/prod-eu/",
                ownership("prod-eu"),
                None,
            ),
            role("foreign", "/pod-identity/prod/", ownership("prod-eu"), None),
            role(
                "ours",
                "/pod-identity/prod/",
                ownership(CLUSTER),
                Some(BOUNDARY),
            ),
        ] {
            aws.create_role(&r).await.expect("role");
        }
        aws.create_pod_identity_association(&CreateAssociation {
            cluster_name: "prod-eu".into(),
            namespace: "team".into(),
            service_account: "app".into(),
            role_arn: "arn:aws:iam::111122223333:role/pod-identity/prod-eu/victim".into(),
            ..CreateAssociation::default()
        })
        .await
        .expect("association")
        .association_id
    })
    .await;
    (aws, other_association)
}

fn unit<T>(result: pod_identity_operator::Result<T>) -> pod_identity_operator::Result<()> {
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
    let denied: Vec<(&str, &str, pod_identity_operator::Result<()>)> = vec![
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
