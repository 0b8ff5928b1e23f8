//! The policy rendered for one installation under its guardrails decides alike on the
//! simulator and on moto: the operator's work allowed, others' roles and escalations
//! refused.

use pod_identity_operator::aws::Tags;
use pod_identity_operator::guardrails::GuardrailConfig;
use pod_identity_operator::naming::{self, TAG_CLUSTER, TAG_CLUSTER_ARN, TAG_NAME, TAG_NAMESPACE};
use pod_identity_operator::operator_policy::{self, Installation};

use super::harness::{Call, Decision, Fixture, Table, case, check, deploy};
use super::{ADMINISTRATOR, POWER_USER, READ_ONLY};
use crate::aws_servers::ACCOUNT_ID;
use crate::cases::tags;
use crate::wire_backend::REGION;

/// The customer-managed policy the installed guardrails demand as a permissions
/// boundary, and another one (in [`ACCOUNT_ID`]).
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/boundary";
const OTHER_BOUNDARY: &str = "arn:aws:iam::111122223333:policy/other-boundary";
/// The operator's own role in the installed policy's account.
const OPERATOR_ROLE: &str = "pod-identity-operator";

/// The guardrails the installed policy is rendered for: one rule for every namespace,
/// ReadOnlyAccess attachable, AdministratorAccess refused, inline policies allowed,
/// existing roles `allowed-*`, and [`BOUNDARY`] on every role.
fn installed_guardrails() -> GuardrailConfig {
    let yaml = format!(
        r#"rules:
- name: tenants
  namespaces: ["*"]
  allowedManagedPolicyArns: ["{READ_ONLY}"]
  deniedManagedPolicyArns: ["{ADMINISTRATOR}"]
  inlinePolicies: {{allowed: true}}
  allowedExistingRoleArns: ["arn:aws:iam::{ACCOUNT_ID}:role/allowed-*"]
  permissionsBoundaryArn: {BOUNDARY}
"#
    );
    GuardrailConfig::parse(&yaml).expect("the installed guardrails parse")
}

/// The ownership tags of the role `ours` the operator made for `team-a/app` in `prod`.
const OURS_TAGS: &[(&str, &str)] = &[
    (TAG_CLUSTER, "prod"),
    (
        TAG_CLUSTER_ARN,
        "arn:aws:eks:us-east-1:111122223333:cluster/prod",
    ),
    (TAG_NAMESPACE, "team-a"),
    (TAG_NAME, "app"),
    ("team", "payments"),
];

/// `ours`: a role of the `prod` cluster's path carrying its ownership tags (and a
/// `team` tag of its own).
fn ours() -> Fixture {
    Fixture::Role {
        name: "ours",
        path: "/pod-identity/prod/",
        tags: OURS_TAGS,
    }
}

/// `eu-app`: a role of the `prod-eu` cluster, under its own path.
fn eu_app() -> Fixture {
    Fixture::Role {
        name: "eu-app",
        path: "/pod-identity/prod-eu/",
        tags: &[(TAG_CLUSTER, "prod-eu")],
    }
}

/// `squatter`: a role under the `prod` cluster's path tagged for `prod-eu`.
fn squatter() -> Fixture {
    Fixture::Role {
        name: "squatter",
        path: "/pod-identity/prod/",
        tags: &[(TAG_CLUSTER, "prod-eu")],
    }
}

/// The operator's own role, at `/`.
fn operator_role() -> Fixture {
    Fixture::Role {
        name: OPERATOR_ROLE,
        path: "/",
        tags: &[],
    }
}

/// The policy `pod-identity-operator iam-policy` renders for the `prod` cluster in
/// [`ACCOUNT_ID`] and `us-east-1` under [`installed_guardrails`]: roles are created only
/// under `/pod-identity/prod/` with [`BOUNDARY`] and the cluster's tag, changed only
/// when tagged for `prod`, given only ReadOnlyAccess, never AdministratorAccess, never
/// stripped of the boundary or of an ownership tag; the operator's own role is denied
/// outright; GetRole is allowed by name on every role.
pub fn installed_policy_table() -> Table {
    use Decision::*;
    let inst = Installation::new("prod", ACCOUNT_ID, REGION).with_operator_role(Some(format!(
        "arn:aws:iam::{ACCOUNT_ID}:role/{OPERATOR_ROLE}"
    )));
    let policy = operator_policy::permissions(&inst, &installed_guardrails());
    for arn in [BOUNDARY, OTHER_BOUNDARY] {
        assert!(
            arn.starts_with(&format!("arn:aws:iam::{ACCOUNT_ID}:policy/")),
            "{arn} is not in the servers' account"
        );
    }
    let ownership: Tags = tags(&OURS_TAGS[..4]);
    assert_eq!(
        ownership,
        naming::ownership_tags(
            "arn:aws:eks:us-east-1:111122223333:cluster/prod",
            "team-a",
            "app"
        ),
        "OURS_TAGS starts with the ownership tags"
    );
    const NEW_ROLE_TAGS: &[(&str, &str)] = &[
        (TAG_CLUSTER, "prod"),
        (TAG_NAMESPACE, "team-a"),
        (TAG_NAME, "new"),
    ];
    let create = |path, boundary, tags| Call::CreateRole {
        name: "new",
        path,
        boundary,
        tags,
    };
    let boundaries = || {
        vec![
            Fixture::CustomerPolicy(BOUNDARY),
            Fixture::CustomerPolicy(OTHER_BOUNDARY),
        ]
    };
    let with_ours = || {
        let mut setup = boundaries();
        setup.push(ours());
        setup
    };
    let cases = vec![
        case(
            "installed_attach_administrator_access_on_owned_role_denied",
            vec![ours()],
            Call::AttachRolePolicy("ours", ADMINISTRATOR),
            Denied,
        ),
        case(
            "installed_attach_unlisted_policy_on_owned_role_denied",
            vec![ours()],
            Call::AttachRolePolicy("ours", POWER_USER),
            Denied,
        ),
        case(
            "installed_attach_read_only_on_role_tagged_for_another_cluster_denied",
            vec![squatter()],
            Call::AttachRolePolicy("squatter", READ_ONLY),
            Denied,
        ),
        case(
            "installed_create_role_without_the_boundary_denied",
            boundaries(),
            create("/pod-identity/prod/", None, NEW_ROLE_TAGS),
            Denied,
        ),
        case(
            "installed_create_role_with_another_boundary_denied",
            boundaries(),
            create("/pod-identity/prod/", Some(OTHER_BOUNDARY), NEW_ROLE_TAGS),
            Denied,
        ),
        case(
            "installed_create_role_tagged_for_another_cluster_denied",
            boundaries(),
            create(
                "/pod-identity/prod/",
                Some(BOUNDARY),
                &[(TAG_CLUSTER, "prod-eu")],
            ),
            Denied,
        ),
        case(
            "installed_create_role_under_another_clusters_path_denied",
            boundaries(),
            create("/pod-identity/prod-eu/", Some(BOUNDARY), NEW_ROLE_TAGS),
            Denied,
        ),
        case(
            "installed_create_role_at_the_root_path_denied",
            boundaries(),
            create("/", Some(BOUNDARY), NEW_ROLE_TAGS),
            Denied,
        ),
        case(
            "installed_delete_boundary_of_owned_role_denied",
            with_ours(),
            Call::DeleteRolePermissionsBoundary("ours"),
            Denied,
        ),
        case(
            "installed_put_another_boundary_on_owned_role_denied",
            with_ours(),
            Call::PutRolePermissionsBoundary("ours", OTHER_BOUNDARY),
            Denied,
        ),
        case(
            "installed_put_role_policy_on_another_clusters_role_denied",
            vec![eu_app()],
            Call::PutRolePolicy("eu-app", "app"),
            Denied,
        ),
        case(
            "installed_delete_role_of_another_cluster_denied",
            vec![eu_app()],
            Call::DeleteRole("eu-app"),
            Denied,
        ),
        case(
            "installed_put_role_policy_on_role_tagged_for_another_cluster_denied",
            vec![squatter()],
            Call::PutRolePolicy("squatter", "app"),
            Denied,
        ),
        case(
            "installed_delete_role_tagged_for_another_cluster_denied",
            vec![squatter()],
            Call::DeleteRole("squatter"),
            Denied,
        ),
        case(
            "installed_untag_cluster_of_owned_role_denied",
            vec![ours()],
            Call::UntagRole("ours", &[TAG_CLUSTER]),
            Denied,
        ),
        case(
            "installed_update_assume_role_policy_on_deploy_denied",
            deploy(),
            Call::UpdateAssumeRolePolicy("deploy"),
            Denied,
        ),
        case(
            "installed_get_role_policy_on_deploy_denied",
            deploy(),
            Call::GetRolePolicy("deploy", "deploy"),
            Denied,
        ),
        case(
            "installed_tag_role_on_deploy_denied",
            deploy(),
            Call::TagRole("deploy", &[(TAG_CLUSTER, "prod")]),
            Denied,
        ),
        case(
            "installed_get_role_of_the_operator_denied",
            vec![operator_role()],
            Call::GetRole(OPERATOR_ROLE),
            Denied,
        ),
        case(
            "installed_update_assume_role_policy_of_the_operator_denied",
            vec![operator_role()],
            Call::UpdateAssumeRolePolicy(OPERATOR_ROLE),
            Denied,
        ),
        case(
            "installed_create_role_with_the_boundary_and_ownership_tags_allowed",
            boundaries(),
            create("/pod-identity/prod/", Some(BOUNDARY), NEW_ROLE_TAGS),
            Allowed,
        ),
        case(
            "installed_attach_read_only_on_owned_role_allowed",
            vec![ours()],
            Call::AttachRolePolicy("ours", READ_ONLY),
            Allowed,
        ),
        case(
            "installed_put_role_policy_on_owned_role_allowed",
            vec![ours()],
            Call::PutRolePolicy("ours", "app"),
            Allowed,
        ),
        case(
            "installed_put_the_boundary_on_owned_role_allowed",
            with_ours(),
            Call::PutRolePermissionsBoundary("ours", BOUNDARY),
            Allowed,
        ),
        case(
            "installed_untag_another_key_of_owned_role_allowed",
            vec![ours()],
            Call::UntagRole("ours", &["team"]),
            Allowed,
        ),
        case(
            "installed_get_role_of_an_allowed_existing_role_allowed",
            vec![Fixture::Role {
                name: "allowed-app",
                path: "/",
                tags: &[],
            }],
            Call::GetRole("allowed-app"),
            Allowed,
        ),
        case(
            "installed_get_role_on_deploy_allowed_by_name",
            deploy(),
            Call::GetRole("deploy"),
            Allowed,
        ),
        case(
            "installed_get_role_of_another_clusters_role_allowed_by_name",
            vec![eu_app()],
            Call::GetRole("eu-app"),
            Allowed,
        ),
        case(
            "installed_get_role_of_missing_role_allowed",
            vec![],
            Call::GetRole("missing"),
            Allowed,
        ),
    ];
    Table { policy, cases }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_policy_decides_alike_on_simulator_and_moto() {
    check(installed_policy_table()).await;
}
