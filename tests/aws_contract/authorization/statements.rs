//! Statement forms decide alike on the simulator and on moto: an explicit Deny,
//! `NotAction`, action patterns and `NotResource`.

use serde_json::json;

use super::READ_ONLY;
use super::harness::{Call, Decision, Fixture, Table, case, check, deploy, owned};

/// Everything allowed, but an explicit Deny on roles under `/protected/` and a Deny
/// conditioned on the role's `protected` tag.
pub fn explicit_deny_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["iam:DeleteRolePolicy", "iam:DeleteRole"],
         "Resource": "arn:aws:iam::*:role/protected/*"},
        {"Effect": "Deny", "Action": "iam:UpdateRole", "Resource": "*",
         "Condition": {"StringEquals": {"aws:ResourceTag/protected": "true"}}}]});
    let roles = || {
        vec![
            Fixture::Role {
                name: "guarded",
                path: "/protected/",
                tags: &[("protected", "true")],
            },
            Fixture::Inline {
                role: "guarded",
                name: "inline",
            },
            Fixture::Role {
                name: "plain",
                path: "/",
                tags: &[],
            },
            Fixture::Inline {
                role: "plain",
                name: "inline",
            },
        ]
    };
    let cases = vec![
        case(
            "deny_beats_allow_on_a_protected_role",
            roles(),
            Call::DeleteRolePolicy("guarded", "inline"),
            Decision::Denied,
        ),
        case(
            "deny_leaves_other_roles_to_the_allow",
            roles(),
            Call::DeleteRolePolicy("plain", "inline"),
            Decision::Allowed,
        ),
        case(
            "conditional_deny_refuses_a_tagged_role",
            roles(),
            Call::UpdateRole("guarded"),
            Decision::Denied,
        ),
        case(
            "conditional_deny_spares_an_untagged_role",
            roles(),
            Call::UpdateRole("plain"),
            Decision::Allowed,
        ),
    ];
    Table { policy, cases }
}

/// Everything but deletions and writes of policies, by `NotAction`.
pub fn not_action_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "NotAction": ["iam:Delete*", "iam:Put*"], "Resource": "*"}]});
    let cases = vec![
        case(
            "not_action_admits_an_action_it_does_not_name",
            deploy(),
            Call::GetRolePolicy("deploy", "deploy"),
            Decision::Allowed,
        ),
        case(
            "not_action_refuses_a_put",
            deploy(),
            Call::PutRolePolicy("deploy", "more"),
            Decision::Denied,
        ),
        case(
            "not_action_refuses_a_delete",
            deploy(),
            Call::DeleteRolePolicy("deploy", "deploy"),
            Decision::Denied,
        ),
    ];
    Table { policy, cases }
}

/// Action patterns as IAM matches them: case-insensitively, `*` for any run of
/// characters and `?` for one.
pub fn action_pattern_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:getrole", "iam:ListRol?Policies", "iam:Put*Policy"],
         "Resource": "*"}]});
    let cases = vec![
        case(
            "lowercase_action_admits_get_role",
            deploy(),
            Call::GetRole("deploy"),
            Decision::Allowed,
        ),
        case(
            "question_mark_action_admits_list_role_policies",
            deploy(),
            Call::ListRolePolicies("deploy"),
            Decision::Allowed,
        ),
        case(
            "star_action_admits_put_role_policy",
            deploy(),
            Call::PutRolePolicy("deploy", "more"),
            Decision::Allowed,
        ),
        case(
            "star_action_refuses_put_role_permissions_boundary",
            deploy(),
            Call::PutRolePermissionsBoundary("deploy", READ_ONLY),
            Decision::Denied,
        ),
    ];
    Table { policy, cases }
}

/// A Deny by `NotResource`: nothing outside `/pod-identity/`, and no grant of its own.
pub fn not_resource_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:GetRolePolicy", "Resource": "*"},
        {"Effect": "Deny", "Action": "iam:*",
         "NotResource": "arn:aws:iam::*:role/pod-identity/*"}]});
    let roles = || {
        let mut roles = deploy();
        roles.push(owned("app-prod"));
        roles.push(Fixture::Inline {
            role: "app-prod",
            name: "app",
        });
        roles
    };
    let cases = vec![
        case(
            "not_resource_deny_refuses_outside_the_path",
            roles(),
            Call::GetRolePolicy("deploy", "deploy"),
            Decision::Denied,
        ),
        case(
            "not_resource_deny_spares_the_owned_role",
            roles(),
            Call::GetRolePolicy("app-prod", "app"),
            Decision::Allowed,
        ),
        case(
            "not_resource_deny_grants_nothing",
            roles(),
            Call::ListRolePolicies("app-prod"),
            Decision::Denied,
        ),
    ];
    Table { policy, cases }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_deny_decides_alike_on_simulator_and_moto() {
    check(explicit_deny_table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_action_decides_alike_on_simulator_and_moto() {
    check(not_action_table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_patterns_decide_alike_on_simulator_and_moto() {
    check(action_pattern_table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_resource_decides_alike_on_simulator_and_moto() {
    check(not_resource_table()).await;
}
