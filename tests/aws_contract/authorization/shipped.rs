//! The shipped policy (`config/iam/operator-policy.json`) decides alike on the simulator
//! and on moto.

use serde_json::Value;

use super::harness::{Call, Decision, Table, case, check, deploy, owned};
use super::{ADMINISTRATOR, CLUSTER_TAG, READ_ONLY};

/// The shipped operator policy: every call on `deploy` but GetRole is refused, calls on
/// roles under `/pod-identity/` are allowed.
pub fn shipped_policy_table() -> Table {
    use Decision::*;
    let policy: Value =
        serde_json::from_str(include_str!("../../../config/iam/operator-policy.json"))
            .expect("config/iam/operator-policy.json is JSON");
    let on_deploy = |name, call| case(name, deploy(), call, Denied);
    let cases = vec![
        on_deploy(
            "shipped_get_role_policy_on_deploy_denied",
            Call::GetRolePolicy("deploy", "deploy"),
        ),
        on_deploy(
            "shipped_list_attached_role_policies_on_deploy_denied",
            Call::ListAttachedRolePolicies("deploy"),
        ),
        on_deploy(
            "shipped_list_role_policies_on_deploy_denied",
            Call::ListRolePolicies("deploy"),
        ),
        on_deploy(
            "shipped_put_role_policy_on_deploy_denied",
            Call::PutRolePolicy("deploy", "admin"),
        ),
        on_deploy(
            "shipped_delete_role_policy_on_deploy_denied",
            Call::DeleteRolePolicy("deploy", "deploy"),
        ),
        on_deploy(
            "shipped_attach_role_policy_on_deploy_denied",
            Call::AttachRolePolicy("deploy", ADMINISTRATOR),
        ),
        on_deploy(
            "shipped_detach_role_policy_on_deploy_denied",
            Call::DetachRolePolicy("deploy", READ_ONLY),
        ),
        on_deploy(
            "shipped_update_assume_role_policy_on_deploy_denied",
            Call::UpdateAssumeRolePolicy("deploy"),
        ),
        on_deploy(
            "shipped_update_role_on_deploy_denied",
            Call::UpdateRole("deploy"),
        ),
        on_deploy(
            "shipped_tag_role_on_deploy_denied",
            Call::TagRole("deploy", &[("team", "x")]),
        ),
        on_deploy(
            "shipped_untag_role_on_deploy_denied",
            Call::UntagRole("deploy", &["team"]),
        ),
        on_deploy(
            "shipped_put_role_permissions_boundary_on_deploy_denied",
            Call::PutRolePermissionsBoundary("deploy", READ_ONLY),
        ),
        on_deploy(
            "shipped_delete_role_permissions_boundary_on_deploy_denied",
            Call::DeleteRolePermissionsBoundary("deploy"),
        ),
        on_deploy(
            "shipped_delete_role_on_deploy_denied",
            Call::DeleteRole("deploy"),
        ),
        on_deploy(
            "shipped_list_instance_profiles_for_role_on_deploy_denied",
            Call::ListInstanceProfilesForRole("deploy"),
        ),
        on_deploy(
            "shipped_list_role_tags_on_deploy_denied",
            Call::ListRoleTags("deploy"),
        ),
        on_deploy(
            "shipped_create_role_outside_the_path_denied",
            Call::CreateRole {
                name: "outside",
                path: "/",
                boundary: None,
                tags: &[],
            },
        ),
        case(
            "shipped_get_role_on_deploy_allowed",
            deploy(),
            Call::GetRole("deploy"),
            Allowed,
        ),
        case(
            "shipped_get_role_of_missing_role_allowed",
            vec![],
            Call::GetRole("missing"),
            Allowed,
        ),
        case(
            "shipped_create_role_under_the_path_allowed",
            vec![],
            Call::CreateRole {
                name: "app-prod",
                path: "/pod-identity/prod/",
                boundary: None,
                tags: &[(CLUSTER_TAG, "prod")],
            },
            Allowed,
        ),
        case(
            "shipped_put_role_policy_on_owned_role_allowed",
            vec![owned("app-prod")],
            Call::PutRolePolicy("app-prod", "app"),
            Allowed,
        ),
        case(
            "shipped_attach_role_policy_on_owned_role_allowed",
            vec![owned("app-prod")],
            Call::AttachRolePolicy("app-prod", READ_ONLY),
            Allowed,
        ),
        case(
            "shipped_tag_role_on_owned_role_allowed",
            vec![owned("app-prod")],
            Call::TagRole("app-prod", &[("team", "x")]),
            Allowed,
        ),
        case(
            "shipped_delete_role_on_owned_role_allowed",
            vec![owned("app-prod")],
            Call::DeleteRole("app-prod"),
            Allowed,
        ),
    ];
    Table { policy, cases }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_policy_decides_alike_on_simulator_and_moto() {
    check(shipped_policy_table()).await;
}
