//! Condition keys decide alike on the simulator and on moto: `iam:PolicyARN`,
//! `iam:PermissionsBoundary`, resource tags and request tags.

use serde_json::json;

use super::harness::{Call, Decision, Fixture, Table, case, check, owned};
use super::{ADMINISTRATOR, CLUSTER_TAG, POWER_USER, READ_ONLY};

const S3_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";

/// AttachRolePolicy on owned roles only for the ARNs an `ArnLike iam:PolicyARN`
/// condition admits.
pub fn policy_arn_condition_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:AttachRolePolicy",
         "Resource": "arn:aws:iam::*:role/pod-identity/*",
         "Condition": {"ArnLike": {"iam:PolicyARN": "arn:aws:iam::aws:policy/*ReadOnlyAccess"}}}]});
    let cases = vec![
        case(
            "policy_arn_condition_refuses_administrator_access",
            vec![owned("app-prod")],
            Call::AttachRolePolicy("app-prod", ADMINISTRATOR),
            Decision::Denied,
        ),
        case(
            "policy_arn_condition_admits_a_read_only_policy",
            vec![owned("app-prod")],
            Call::AttachRolePolicy("app-prod", S3_READ_ONLY),
            Decision::Allowed,
        ),
    ];
    Table { policy, cases }
}

/// CreateRole only with the permissions boundary a `StringEquals
/// iam:PermissionsBoundary` condition names.
pub fn boundary_condition_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:CreateRole", "Resource": "*",
         "Condition": {"StringEquals": {"iam:PermissionsBoundary": POWER_USER}}}]});
    let create = |boundary| Call::CreateRole {
        name: "bounded",
        path: "/pod-identity/prod/",
        boundary,
        tags: &[],
    };
    let cases = vec![
        case(
            "boundary_condition_refuses_create_role_without_boundary",
            vec![],
            create(None),
            Decision::Denied,
        ),
        case(
            "boundary_condition_refuses_create_role_with_another_boundary",
            vec![],
            create(Some(READ_ONLY)),
            Decision::Denied,
        ),
        case(
            "boundary_condition_admits_create_role_with_the_boundary",
            vec![],
            create(Some(POWER_USER)),
            Decision::Allowed,
        ),
    ];
    Table { policy, cases }
}

/// Inline policies written only on roles tagged for the `prod` cluster
/// (`aws:ResourceTag/podidentity.dev/cluster`).
pub fn resource_tag_condition_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:PutRolePolicy",
         "Resource": "arn:aws:iam::*:role/pod-identity/*",
         "Condition": {"StringEquals": {"aws:ResourceTag/podidentity.dev/cluster": "prod"}}}]});
    let roles = || {
        vec![
            owned("app-prod"),
            Fixture::Role {
                name: "app-staging",
                path: "/pod-identity/staging/",
                tags: &[(CLUSTER_TAG, "staging")],
            },
            Fixture::Role {
                name: "untagged",
                path: "/pod-identity/prod/",
                tags: &[],
            },
        ]
    };
    let cases = vec![
        case(
            "resource_tag_condition_admits_the_clusters_role",
            roles(),
            Call::PutRolePolicy("app-prod", "app"),
            Decision::Allowed,
        ),
        case(
            "resource_tag_condition_refuses_another_clusters_role",
            roles(),
            Call::PutRolePolicy("app-staging", "app"),
            Decision::Denied,
        ),
        case(
            "resource_tag_condition_refuses_an_untagged_role",
            roles(),
            Call::PutRolePolicy("untagged", "app"),
            Decision::Denied,
        ),
    ];
    Table { policy, cases }
}

/// CreateRole and TagRole only with the `prod` cluster's tag in the request
/// (`aws:RequestTag/podidentity.dev/cluster`).
pub fn request_tag_condition_table() -> Table {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["iam:CreateRole", "iam:TagRole"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:RequestTag/podidentity.dev/cluster": "prod"}}}]});
    let create = |tags| Call::CreateRole {
        name: "tagged",
        path: "/pod-identity/prod/",
        boundary: None,
        tags,
    };
    let cases = vec![
        case(
            "request_tag_condition_admits_create_role_tagged_for_the_cluster",
            vec![],
            create(&[(CLUSTER_TAG, "prod")]),
            Decision::Allowed,
        ),
        case(
            "request_tag_condition_refuses_create_role_tagged_for_another_cluster",
            vec![],
            create(&[(CLUSTER_TAG, "staging")]),
            Decision::Denied,
        ),
        case(
            "request_tag_condition_refuses_create_role_without_tags",
            vec![],
            create(&[]),
            Decision::Denied,
        ),
        case(
            "request_tag_condition_admits_tag_role_for_the_cluster",
            vec![owned("app-prod")],
            Call::TagRole("app-prod", &[(CLUSTER_TAG, "prod")]),
            Decision::Allowed,
        ),
        case(
            "request_tag_condition_refuses_tag_role_for_another_cluster",
            vec![owned("app-prod")],
            Call::TagRole("app-prod", &[(CLUSTER_TAG, "staging")]),
            Decision::Denied,
        ),
    ];
    Table { policy, cases }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_arn_condition_decides_alike_on_simulator_and_moto() {
    check(policy_arn_condition_table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_condition_decides_alike_on_simulator_and_moto() {
    check(boundary_condition_table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_tag_condition_decides_alike_on_simulator_and_moto() {
    check(resource_tag_condition_table()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_tag_condition_decides_alike_on_simulator_and_moto() {
    check(request_tag_condition_table()).await;
}
