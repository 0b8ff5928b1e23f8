//! The simulator's authorization cross-checked against moto's on the wire.
//!
//! A case is one IAM call made through [`IamApi`] by a caller whose identity policy is
//! the table's, after an administrator set up roles; it expects the decision AWS
//! makes. [`cross_check`] runs every case of a table twice:
//! - on the simulator (`AwsSim`, set-up in `AwsSim::as_admin`, then `enforce`), which
//!   must always decide as expected and deny as AWS does (`AccessDenied`, naming the
//!   action and the resource ARN);
//! - on moto 5.2.5 through `SdkIam`, as an IAM user holding the policy inline, with
//!   permissions enforced after set-up. moto decides as expected unless [`MOTO_PARTIAL`]
//!   records what it does instead, and why; either way its decision is asserted, so the
//!   record fails as soon as moto changes.
//!
//! What moto 5.2.5 evaluates (`moto/iam/access_control.py`, `moto/core/responses.py`,
//! `moto/iam/responses.py`, `moto/iam/policy_conditions.py`):
//! - the resource: `IamResponse._determine_resource` passes the role's real ARN (with
//!   its path) when the request has a `RoleName` of an existing role, else `"*"`, so a
//!   CreateRole, or a call on a missing role, is matched only by statements whose
//!   `Resource` pattern matches the literal string `*`;
//! - `Action`, `NotAction` and `Resource` patterns: `IAMPolicyStatement._match` turns
//!   `*` into `.*` and matches the rest as a case-sensitive regular expression (`?` is
//!   a regex quantifier, not a one-character wildcard; action names are compared
//!   case-sensitively);
//! - `NotResource` is not read: a statement without `Resource` is taken as a trust
//!   policy statement and answers PERMITTED whatever its `Effect`
//!   (`IAMPolicyStatement.is_action_permitted`);
//! - an explicit Deny wins over any Allow (`IAMRequestBase.check_action_permitted`);
//! - conditions: `IAMPolicyStatement._check_conditions` only compares values for the
//!   keys of `incoming_condition_values`, which identity-policy checks never pass, so
//!   every condition of an identity policy holds: a conditional Allow allows and a
//!   conditional Deny denies, whatever the request;
//! - a denial is `AccessDenied` (HTTP 403) with the message `User: <user ARN> is not
//!   authorized to perform: <action>`, naming no resource (`AccessDeniedError` in
//!   `moto/core/exceptions.py`).

use std::collections::BTreeSet;

use aws_credential_types::Credentials;
use pod_identity_operator::aws::config::{AwsSettings, config_loader};
use pod_identity_operator::aws::iam::SdkIam;
use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateRole, IamApi, Tags};
use pod_identity_operator::error::ErrorClass;
use pod_identity_operator::guardrails::GuardrailConfig;
use pod_identity_operator::naming::{self, TAG_CLUSTER, TAG_CLUSTER_ARN, TAG_NAME, TAG_NAMESPACE};
use pod_identity_operator::operator_policy::{self, Installation};
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::{Value, json};

use crate::servers::{self, ACCOUNT_ID, Kind};
use crate::wire_backend::{REGION, sdk_config};

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
const S3_READ_ONLY: &str = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess";
const ADMINISTRATOR: &str = "arn:aws:iam::aws:policy/AdministratorAccess";
const POWER_USER: &str = "arn:aws:iam::aws:policy/PowerUserAccess";
const CLUSTER_TAG: &str = TAG_CLUSTER;
/// The customer-managed policy the installed guardrails demand as a permissions
/// boundary, and another one (in [`ACCOUNT_ID`]).
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/boundary";
const OTHER_BOUNDARY: &str = "arn:aws:iam::111122223333:policy/other-boundary";
/// The operator's own role in the installed policy's account.
const OPERATOR_ROLE: &str = "pod-identity-operator";
/// The IAM user moto authorizes the calls of.
const MOTO_USER: &str = "restricted";

/// What moto decides where its evaluation is partial, by case name: the text starts
/// with `allows` or `denies` (what moto answers), then says why, citing moto's source.
pub const MOTO_PARTIAL: &[(&str, &str)] = &[
    (
        "shipped_create_role_outside_the_path_denied",
        "denies, as expected, but not for the path: moto authorizes CreateRole against \
         `*` (moto/iam/responses.py IamResponse._determine_resource: the role does not \
         exist yet), which `arn:aws:iam::*:role/pod-identity/*` does not match \
         (moto/iam/access_control.py IAMPolicyStatement._match)",
    ),
    (
        "shipped_create_role_under_the_path_allowed",
        "denies: CreateRole is authorized against `*`, not the new role's ARN \
         (moto/iam/responses.py IamResponse._determine_resource), and the statement's \
         `arn:aws:iam::*:role/pod-identity/*` does not match `*` \
         (moto/iam/access_control.py IAMPolicyStatement._match)",
    ),
    (
        "shipped_get_role_of_missing_role_allowed",
        "denies: a call on a role that does not exist is authorized against `*` \
         (moto/iam/responses.py IamResponse._resolve_resource_arn), which \
         `arn:aws:iam::*:role/*` does not match, so GetRole answers AccessDenied instead \
         of NoSuchEntity",
    ),
    (
        "policy_arn_condition_refuses_administrator_access",
        "allows: the ArnLike iam:PolicyARN condition is never evaluated; identity-policy \
         checks pass no condition values (moto/iam/access_control.py \
         IAMPolicyStatement._check_conditions gets None), and ArnLike is not among the \
         operators moto knows (moto/iam/policy_conditions.py CONDITION_OPERATIONS)",
    ),
    (
        "policy_arn_condition_admits_a_read_only_policy",
        "allows, as expected, without evaluating the ArnLike iam:PolicyARN condition \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions: no condition \
         values for identity policies)",
    ),
    (
        "boundary_condition_refuses_create_role_without_boundary",
        "allows: the StringEquals iam:PermissionsBoundary condition holds vacuously, no \
         value being passed for any key of an identity policy \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions, \
         moto/iam/policy_conditions.py TrustCondition.verify_condition loops over no \
         values)",
    ),
    (
        "boundary_condition_refuses_create_role_with_another_boundary",
        "allows: the StringEquals iam:PermissionsBoundary condition holds vacuously \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "boundary_condition_admits_create_role_with_the_boundary",
        "allows, as expected, without comparing the boundary \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "resource_tag_condition_admits_the_clusters_role",
        "allows, as expected, without reading the role's tags \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions: no \
         aws:ResourceTag values)",
    ),
    (
        "resource_tag_condition_refuses_another_clusters_role",
        "allows: aws:ResourceTag/podidentity.dev/cluster is never compared, so the \
         condition holds for a role tagged with another cluster \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "resource_tag_condition_refuses_an_untagged_role",
        "allows: the condition on a tag the role lacks holds vacuously \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "request_tag_condition_admits_create_role_tagged_for_the_cluster",
        "allows, as expected, without reading the request's tags \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "request_tag_condition_refuses_create_role_tagged_for_another_cluster",
        "allows: aws:RequestTag is never compared (moto/iam/access_control.py \
         IAMPolicyStatement._check_conditions)",
    ),
    (
        "request_tag_condition_refuses_create_role_without_tags",
        "allows: the condition on an absent request tag holds vacuously \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "request_tag_condition_admits_tag_role_for_the_cluster",
        "allows, as expected, without reading the request's tags \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "request_tag_condition_refuses_tag_role_for_another_cluster",
        "allows: aws:RequestTag is never compared (moto/iam/access_control.py \
         IAMPolicyStatement._check_conditions)",
    ),
    (
        "conditional_deny_refuses_a_tagged_role",
        "denies, as expected, but without reading the role's tags: the Deny's \
         StringEquals aws:ResourceTag/protected condition holds vacuously \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "conditional_deny_spares_an_untagged_role",
        "denies: the Deny's StringEquals aws:ResourceTag/protected condition holds \
         vacuously, so the Deny applies to every role (moto/iam/access_control.py \
         IAMPolicyStatement._check_conditions, then the Deny wins in \
         IAMRequestBase.check_action_permitted)",
    ),
    (
        "lowercase_action_admits_get_role",
        "denies: `iam:getrole` is matched as a case-sensitive regular expression against \
         `iam:GetRole` (moto/iam/access_control.py IAMPolicyStatement._match); IAM \
         compares action names case-insensitively",
    ),
    (
        "question_mark_action_admits_list_role_policies",
        "denies: `?` is left as a regex quantifier, so `iam:ListRol?Policies` matches \
         `iam:ListRoPolicies` or `iam:ListRolPolicies`, not `iam:ListRolePolicies` \
         (moto/iam/access_control.py IAMPolicyStatement._match only rewrites `*`)",
    ),
    (
        "not_resource_deny_refuses_outside_the_path",
        "allows: NotResource is not read, and a statement without Resource answers \
         PERMITTED whatever its Effect (moto/iam/access_control.py \
         IAMPolicyStatement.is_action_permitted, the trust-policy branch), so the Deny \
         grants instead",
    ),
    (
        "not_resource_deny_spares_the_owned_role",
        "allows, as expected, but because the NotResource Deny answers PERMITTED \
         (moto/iam/access_control.py IAMPolicyStatement.is_action_permitted)",
    ),
    (
        "not_resource_deny_grants_nothing",
        "allows: the Deny with NotResource answers PERMITTED for every action it names \
         (moto/iam/access_control.py IAMPolicyStatement.is_action_permitted), so \
         ListRolePolicies, which no Allow names, is allowed",
    ),
    (
        "installed_attach_administrator_access_on_owned_role_denied",
        "denies, as expected, without evaluating the Deny's ArnLike iam:PolicyARN \
         condition: an operator missing from moto/iam/policy_conditions.py \
         CONDITION_OPERATIONS is ignored (TrustCondition.verify_condition), so the Deny \
         on `*` refuses every AttachRolePolicy",
    ),
    (
        "installed_attach_unlisted_policy_on_owned_role_denied",
        "denies, as expected, but by the Deny of AdministratorAccess, whose ArnLike \
         iam:PolicyARN condition is ignored (moto/iam/policy_conditions.py \
         TrustCondition.verify_condition), not for want of an Allow",
    ),
    (
        "installed_attach_read_only_on_role_tagged_for_another_cluster_denied",
        "denies, as expected, but by the Deny of AdministratorAccess, whose ArnLike \
         iam:PolicyARN condition is ignored (moto/iam/policy_conditions.py \
         TrustCondition.verify_condition), not for the role's tag",
    ),
    (
        "installed_create_role_without_the_boundary_denied",
        "denies, as expected, but not for the boundary: CreateRole is authorized against \
         `*` (moto/iam/responses.py IamResponse._resolve_resource_arn: the role does not \
         exist yet), which the statement's `role/pod-identity/prod/*` does not match \
         (moto/iam/access_control.py IAMPolicyStatement._match)",
    ),
    (
        "installed_create_role_with_another_boundary_denied",
        "denies, as expected, but not for the boundary: CreateRole is authorized against \
         `*` (moto/iam/responses.py IamResponse._resolve_resource_arn), which \
         `role/pod-identity/prod/*` does not match (moto/iam/access_control.py \
         IAMPolicyStatement._match)",
    ),
    (
        "installed_create_role_tagged_for_another_cluster_denied",
        "denies, as expected, but not for the tag: CreateRole is authorized against `*` \
         (moto/iam/responses.py IamResponse._resolve_resource_arn), which \
         `role/pod-identity/prod/*` does not match (moto/iam/access_control.py \
         IAMPolicyStatement._match)",
    ),
    (
        "installed_create_role_under_another_clusters_path_denied",
        "denies, as expected, but not for the path: CreateRole is authorized against `*` \
         (moto/iam/responses.py IamResponse._resolve_resource_arn), which \
         `role/pod-identity/prod/*` does not match (moto/iam/access_control.py \
         IAMPolicyStatement._match)",
    ),
    (
        "installed_create_role_at_the_root_path_denied",
        "denies, as expected, but not for the path: CreateRole is authorized against `*` \
         (moto/iam/responses.py IamResponse._resolve_resource_arn), which \
         `role/pod-identity/prod/*` does not match (moto/iam/access_control.py \
         IAMPolicyStatement._match)",
    ),
    (
        "installed_put_another_boundary_on_owned_role_denied",
        "allows: the StringEquals iam:PermissionsBoundary and \
         aws:ResourceTag/podidentity.dev/cluster conditions of the statement allowing \
         PutRolePermissionsBoundary hold vacuously (moto/iam/access_control.py \
         IAMPolicyStatement._check_conditions), so any boundary may be put on a role of \
         the cluster's path",
    ),
    (
        "installed_put_role_policy_on_role_tagged_for_another_cluster_denied",
        "allows: aws:ResourceTag/podidentity.dev/cluster is never compared \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions), so every \
         role under `/pod-identity/prod/` counts as owned, whatever its tags",
    ),
    (
        "installed_delete_role_tagged_for_another_cluster_denied",
        "allows: aws:ResourceTag/podidentity.dev/cluster is never compared \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions), so every \
         role under `/pod-identity/prod/` counts as owned, whatever its tags",
    ),
    (
        "installed_untag_cluster_of_owned_role_denied",
        "denies, as expected, without evaluating the Deny's ForAnyValue:StringLike \
         aws:TagKeys condition: the operator is missing from \
         moto/iam/policy_conditions.py CONDITION_OPERATIONS and ignored \
         (TrustCondition.verify_condition), so the Deny refuses every UntagRole on the \
         cluster's roles",
    ),
    (
        "installed_create_role_with_the_boundary_and_ownership_tags_allowed",
        "denies: CreateRole is authorized against `*`, not the new role's ARN \
         (moto/iam/responses.py IamResponse._resolve_resource_arn), and \
         `arn:aws:iam::111122223333:role/pod-identity/prod/*` does not match `*` \
         (moto/iam/access_control.py IAMPolicyStatement._match)",
    ),
    (
        "installed_attach_read_only_on_owned_role_allowed",
        "denies: the Deny of AdministratorAccess on `*` applies to every \
         AttachRolePolicy, its ArnLike iam:PolicyARN condition being ignored \
         (moto/iam/policy_conditions.py TrustCondition.verify_condition: ArnLike is not \
         in CONDITION_OPERATIONS), and a Deny wins (moto/iam/access_control.py \
         IAMRequestBase.check_action_permitted)",
    ),
    (
        "installed_put_role_policy_on_owned_role_allowed",
        "allows, as expected, without reading the role's tags \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "installed_put_the_boundary_on_owned_role_allowed",
        "allows, as expected, without comparing the boundary or reading the role's tags \
         (moto/iam/access_control.py IAMPolicyStatement._check_conditions)",
    ),
    (
        "installed_untag_another_key_of_owned_role_allowed",
        "denies: the Deny of untagging `podidentity.dev/*` keys applies to every \
         UntagRole on the cluster's roles, its ForAnyValue:StringLike aws:TagKeys \
         condition being ignored (moto/iam/policy_conditions.py \
         TrustCondition.verify_condition), and a Deny wins (moto/iam/access_control.py \
         IAMRequestBase.check_action_permitted)",
    ),
    (
        "installed_get_role_of_missing_role_allowed",
        "denies: a call on a role that does not exist is authorized against `*` \
         (moto/iam/responses.py IamResponse._resolve_resource_arn), which \
         `arn:aws:iam::111122223333:role/*` does not match, so GetRole answers \
         AccessDenied instead of NoSuchEntity",
    ),
];

/// The decision on one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

/// What an administrator creates before the call.
#[derive(Clone, Debug)]
pub enum Fixture {
    Role {
        name: &'static str,
        path: &'static str,
        tags: &'static [(&'static str, &'static str)],
    },
    Attached {
        role: &'static str,
        policy_arn: &'static str,
    },
    Inline {
        role: &'static str,
        name: &'static str,
    },
    /// A customer-managed policy, by ARN, with [`inline_document`] as its document:
    /// made by each backend's own set-up ([`AwsSim::add_managed_policy`], CreatePolicy
    /// on moto), as [`IamApi`] has no call for it.
    CustomerPolicy(&'static str),
}

/// One call through [`IamApi`], with what it needs.
#[derive(Clone, Debug)]
pub enum Call {
    CreateRole {
        name: &'static str,
        path: &'static str,
        boundary: Option<&'static str>,
        tags: &'static [(&'static str, &'static str)],
    },
    GetRole(&'static str),
    UpdateRole(&'static str),
    UpdateAssumeRolePolicy(&'static str),
    PutRolePermissionsBoundary(&'static str, &'static str),
    DeleteRolePermissionsBoundary(&'static str),
    AttachRolePolicy(&'static str, &'static str),
    DetachRolePolicy(&'static str, &'static str),
    ListAttachedRolePolicies(&'static str),
    PutRolePolicy(&'static str, &'static str),
    GetRolePolicy(&'static str, &'static str),
    DeleteRolePolicy(&'static str, &'static str),
    ListRolePolicies(&'static str),
    TagRole(&'static str, &'static [(&'static str, &'static str)]),
    UntagRole(&'static str, &'static [&'static str]),
    ListRoleTags(&'static str),
    DeleteRole(&'static str),
    ListInstanceProfilesForRole(&'static str),
}

/// One row of a table.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: &'static str,
    pub setup: Vec<Fixture>,
    pub call: Call,
    pub expected: Decision,
}

/// A table: the caller's identity policy and the cases run under it.
pub struct Table {
    pub policy: Value,
    pub cases: Vec<Case>,
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A plain inline policy document (characters moto's signature check agrees on).
fn inline_document() -> Value {
    json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
}

impl Fixture {
    async fn apply(&self, iam: &dyn IamApi) {
        let done = match self {
            Fixture::Role {
                name,
                path,
                tags: t,
            } => iam
                .create_role(&CreateRole {
                    name: (*name).into(),
                    path: (*path).into(),
                    assume_role_policy: pod_identity_trust_policy(None),
                    tags: tags(t),
                    ..CreateRole::default()
                })
                .await
                .map(|_| ()),
            Fixture::Attached { role, policy_arn } => {
                iam.attach_role_policy(role, policy_arn).await
            }
            Fixture::Inline { role, name } => {
                iam.put_role_policy(role, name, &inline_document()).await
            }
            Fixture::CustomerPolicy(arn) => {
                panic!("{arn}: a customer-managed policy is made by the backend's set-up")
            }
        };
        done.unwrap_or_else(|e| panic!("set-up {self:?}: {e}"));
    }
}

impl Call {
    /// The IAM action the call is authorized as.
    pub fn action(&self) -> &'static str {
        match self {
            Call::CreateRole { .. } => "iam:CreateRole",
            Call::GetRole(_) => "iam:GetRole",
            Call::UpdateRole(_) => "iam:UpdateRole",
            Call::UpdateAssumeRolePolicy(_) => "iam:UpdateAssumeRolePolicy",
            Call::PutRolePermissionsBoundary(..) => "iam:PutRolePermissionsBoundary",
            Call::DeleteRolePermissionsBoundary(_) => "iam:DeleteRolePermissionsBoundary",
            Call::AttachRolePolicy(..) => "iam:AttachRolePolicy",
            Call::DetachRolePolicy(..) => "iam:DetachRolePolicy",
            Call::ListAttachedRolePolicies(_) => "iam:ListAttachedRolePolicies",
            Call::PutRolePolicy(..) => "iam:PutRolePolicy",
            Call::GetRolePolicy(..) => "iam:GetRolePolicy",
            Call::DeleteRolePolicy(..) => "iam:DeleteRolePolicy",
            Call::ListRolePolicies(_) => "iam:ListRolePolicies",
            Call::TagRole(..) => "iam:TagRole",
            Call::UntagRole(..) => "iam:UntagRole",
            Call::ListRoleTags(_) => "iam:ListRoleTags",
            Call::DeleteRole(_) => "iam:DeleteRole",
            Call::ListInstanceProfilesForRole(_) => "iam:ListInstanceProfilesForRole",
        }
    }

    /// The role the call names.
    fn role(&self) -> &'static str {
        match self {
            Call::CreateRole { name, .. } => name,
            Call::GetRole(r)
            | Call::UpdateRole(r)
            | Call::UpdateAssumeRolePolicy(r)
            | Call::PutRolePermissionsBoundary(r, _)
            | Call::DeleteRolePermissionsBoundary(r)
            | Call::AttachRolePolicy(r, _)
            | Call::DetachRolePolicy(r, _)
            | Call::ListAttachedRolePolicies(r)
            | Call::PutRolePolicy(r, _)
            | Call::GetRolePolicy(r, _)
            | Call::DeleteRolePolicy(r, _)
            | Call::ListRolePolicies(r)
            | Call::TagRole(r, _)
            | Call::UntagRole(r, _)
            | Call::ListRoleTags(r)
            | Call::DeleteRole(r)
            | Call::ListInstanceProfilesForRole(r) => r,
        }
    }

    /// The ARN IAM authorizes the call against: the new role's for CreateRole, the
    /// role's as set up (with its path) for the others, `role/<name>` when it does not
    /// exist.
    fn resource(&self, setup: &[Fixture]) -> String {
        let name = self.role();
        let path = match self {
            Call::CreateRole { path, .. } => path,
            _ => setup
                .iter()
                .find_map(|f| match f {
                    Fixture::Role { name: n, path, .. } if *n == name => Some(*path),
                    _ => None,
                })
                .unwrap_or("/"),
        };
        format!("arn:aws:iam::{ACCOUNT_ID}:role{path}{name}")
    }

    async fn run(&self, iam: &dyn IamApi) -> pod_identity_operator::Result<()> {
        match self {
            Call::CreateRole {
                name,
                path,
                boundary,
                tags: t,
            } => iam
                .create_role(&CreateRole {
                    name: (*name).into(),
                    path: (*path).into(),
                    assume_role_policy: pod_identity_trust_policy(None),
                    permissions_boundary_arn: boundary.map(str::to_owned),
                    tags: tags(t),
                    ..CreateRole::default()
                })
                .await
                .map(|_| ()),
            Call::GetRole(r) => iam.get_role(r).await.map(|_| ()),
            Call::UpdateRole(r) => iam.update_role(r, Some("changed"), None).await,
            Call::UpdateAssumeRolePolicy(r) => {
                iam.update_assume_role_policy(r, &pod_identity_trust_policy(None))
                    .await
            }
            Call::PutRolePermissionsBoundary(r, arn) => {
                iam.put_role_permissions_boundary(r, arn).await
            }
            Call::DeleteRolePermissionsBoundary(r) => iam.delete_role_permissions_boundary(r).await,
            Call::AttachRolePolicy(r, arn) => iam.attach_role_policy(r, arn).await,
            Call::DetachRolePolicy(r, arn) => iam.detach_role_policy(r, arn).await,
            Call::ListAttachedRolePolicies(r) => {
                iam.list_attached_role_policies(r).await.map(|_| ())
            }
            Call::PutRolePolicy(r, name) => iam.put_role_policy(r, name, &inline_document()).await,
            Call::GetRolePolicy(r, name) => iam.get_role_policy(r, name).await.map(|_| ()),
            Call::DeleteRolePolicy(r, name) => iam.delete_role_policy(r, name).await,
            Call::ListRolePolicies(r) => iam.list_role_policies(r).await.map(|_| ()),
            Call::TagRole(r, t) => iam.tag_role(r, &tags(t)).await,
            Call::UntagRole(r, keys) => {
                let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
                iam.untag_role(r, &keys).await
            }
            Call::ListRoleTags(r) => iam.list_role_tags(r).await.map(|_| ()),
            Call::DeleteRole(r) => iam.delete_role(r).await,
            Call::ListInstanceProfilesForRole(r) => {
                iam.list_instance_profiles_for_role(r).await.map(|_| ())
            }
        }
    }
}

/// What moto is recorded to decide on `case`: its [`MOTO_PARTIAL`] entry, else the
/// expected decision.
fn moto_decision(case: &Case) -> Decision {
    match MOTO_PARTIAL.iter().find(|(name, _)| *name == case.name) {
        None => case.expected,
        Some((_, what)) if what.starts_with("allows") => Decision::Allowed,
        Some((_, what)) if what.starts_with("denies") => Decision::Denied,
        Some((name, what)) => panic!("MOTO_PARTIAL {name}: starts with neither verb: {what}"),
    }
}

/// The decision a call's result shows; a failure other than a denial means the case is
/// set up wrong, and is reported as such.
fn decided(result: &pod_identity_operator::Result<()>) -> Result<Decision, String> {
    match result {
        Ok(()) => Ok(Decision::Allowed),
        Err(e) => match e.aws() {
            Some(aws) if aws.class == ErrorClass::AccessDenied => Ok(Decision::Denied),
            _ => Err(format!("failed other than by a denial: {e}")),
        },
    }
}

/// Runs the case on a fresh simulator; the problems seen, if any.
async fn on_simulator(policy: &Value, case: &Case) -> Vec<String> {
    let sim = AwsSim::new(SimConfig::default());
    AwsSim::as_admin(async {
        for fixture in &case.setup {
            match fixture {
                Fixture::CustomerPolicy(arn) => sim.add_managed_policy(arn),
                _ => fixture.apply(&sim).await,
            }
        }
    })
    .await;
    sim.enforce(Some(policy));
    let result = case.call.run(&sim).await;
    let mut problems = Vec::new();
    match decided(&result) {
        Err(problem) => problems.push(problem),
        Ok(decision) if decision != case.expected => {
            problems.push(format!("{decision:?}, expected {:?}", case.expected))
        }
        Ok(Decision::Allowed) => {}
        Ok(Decision::Denied) => {
            let e = result.expect_err("denied");
            let aws = e.aws().expect("an AWS error");
            let action = case.call.action();
            let resource = case.call.resource(&case.setup);
            if aws.code != "AccessDenied" {
                problems.push(format!("code {}, expected AccessDenied", aws.code));
            }
            if !aws
                .message
                .contains(&format!("perform: {action} on resource: {resource}"))
            {
                problems.push(format!(
                    "message {:?} does not name {action} on {resource}",
                    aws.message
                ));
            }
        }
    }
    problems
}

/// Runs the case on a fresh moto as the IAM user [`MOTO_USER`] holding `policy`; the
/// problems seen, if any.
async fn on_moto(policy: &Value, case: &Case) -> Vec<String> {
    let moto = servers::lease(Kind::Moto).await;
    let admin_config = sdk_config(&moto.url()).await;
    let admin_raw = aws_sdk_iam::Client::new(&admin_config);
    admin_raw
        .create_user()
        .user_name(MOTO_USER)
        .send()
        .await
        .expect("CreateUser");
    let key = admin_raw
        .create_access_key()
        .user_name(MOTO_USER)
        .send()
        .await
        .expect("CreateAccessKey");
    let key = key.access_key().expect("a key");
    admin_raw
        .put_user_policy()
        .user_name(MOTO_USER)
        .policy_name("identity")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutUserPolicy {policy}: {e:?}"));
    let admin = SdkIam::new(&admin_config);
    for fixture in &case.setup {
        match fixture {
            Fixture::CustomerPolicy(arn) => {
                let name = arn.rsplit('/').next().expect("a policy name");
                let made = admin_raw
                    .create_policy()
                    .policy_name(name)
                    .policy_document(inline_document().to_string())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("CreatePolicy {name}: {e:?}"));
                let made = made.policy().and_then(|p| p.arn());
                assert_eq!(made, Some(*arn), "CreatePolicy {name}");
            }
            _ => fixture.apply(&admin).await,
        }
    }
    // Every call from here on is authenticated and authorized.
    moto.enforce_moto_auth(0).await;

    let settings = AwsSettings {
        region: Some(REGION.into()),
        endpoint_url: Some(moto.url()),
        ..AwsSettings::default()
    };
    let caller_config = config_loader(&settings)
        .credentials_provider(Credentials::new(
            key.access_key_id(),
            key.secret_access_key(),
            None,
            None,
            "moto-user",
        ))
        .load()
        .await;
    let caller = SdkIam::new(&caller_config);
    let result = case.call.run(&caller).await;

    let expected = moto_decision(case);
    let mut problems = Vec::new();
    match decided(&result) {
        Err(problem) => problems.push(problem),
        Ok(decision) if decision != expected => problems.push(format!(
            "{decision:?}, recorded {expected:?}{}",
            if expected == case.expected {
                ""
            } else {
                " (MOTO_PARTIAL)"
            }
        )),
        Ok(Decision::Allowed) => {}
        Ok(Decision::Denied) => {
            let e = result.expect_err("denied");
            let aws = e.aws().expect("an AWS error");
            let message = format!(
                "User: arn:aws:iam::{ACCOUNT_ID}:user/{MOTO_USER} is not authorized to \
                 perform: {}",
                case.call.action()
            );
            if (aws.code.as_str(), aws.http_status) != ("AccessDenied", Some(403)) {
                problems.push(format!(
                    "code {} status {:?}, expected AccessDenied 403",
                    aws.code, aws.http_status
                ));
            }
            if aws.message != message {
                problems.push(format!("message {:?}, expected {message:?}", aws.message));
            }
        }
    }
    problems
}

/// Runs every case under `policy` on the simulator and on moto, and fails listing every
/// case where either does not decide (or deny) as expected or as recorded.
pub async fn cross_check(policy: &Value, cases: &[Case]) {
    let mut failures = Vec::new();
    for case in cases {
        for problem in on_simulator(policy, case).await {
            failures.push(format!("{} on the simulator: {problem}", case.name));
        }
        for problem in on_moto(policy, case).await {
            failures.push(format!("{} on moto: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The role outside the operator's path a platform team owns: `deploy` at `/`, with
/// ReadOnlyAccess attached and an inline policy `deploy`.
fn deploy() -> Vec<Fixture> {
    vec![
        Fixture::Role {
            name: "deploy",
            path: "/",
            tags: &[],
        },
        Fixture::Attached {
            role: "deploy",
            policy_arn: READ_ONLY,
        },
        Fixture::Inline {
            role: "deploy",
            name: "deploy",
        },
    ]
}

/// A role the operator made for the `prod` cluster.
fn owned(name: &'static str) -> Fixture {
    Fixture::Role {
        name,
        path: "/pod-identity/prod/",
        tags: &[(CLUSTER_TAG, "prod")],
    }
}

fn case(name: &'static str, setup: Vec<Fixture>, call: Call, expected: Decision) -> Case {
    Case {
        name,
        setup,
        call,
        expected,
    }
}

/// The shipped operator policy: every call on `deploy` but GetRole is refused, calls on
/// roles under `/pod-identity/` are allowed.
pub fn shipped_policy_table() -> Table {
    use Decision::*;
    let policy: Value = serde_json::from_str(include_str!("../../config/iam/operator-policy.json"))
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

fn all_tables() -> Vec<Table> {
    vec![
        shipped_policy_table(),
        policy_arn_condition_table(),
        boundary_condition_table(),
        resource_tag_condition_table(),
        request_tag_condition_table(),
        explicit_deny_table(),
        not_action_table(),
        action_pattern_table(),
        not_resource_table(),
        installed_policy_table(),
    ]
}

async fn check(table: Table) {
    cross_check(&table.policy, &table.cases).await;
}

#[test]
fn case_names_are_unique_and_every_moto_record_names_a_case() {
    let tables = all_tables();
    let names: Vec<&str> = tables
        .iter()
        .flat_map(|t| t.cases.iter().map(|c| c.name))
        .collect();
    assert!(names.len() >= 20, "{} cases", names.len());
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "duplicate case names");
    let recorded: BTreeSet<&str> = MOTO_PARTIAL.iter().map(|(name, _)| *name).collect();
    assert_eq!(recorded.len(), MOTO_PARTIAL.len(), "a case recorded twice");
    for name in &recorded {
        assert!(unique.contains(name), "MOTO_PARTIAL names no case: {name}");
    }
    // Every record says what moto answers.
    for table in &tables {
        for case in &table.cases {
            moto_decision(case);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_policy_decides_alike_on_simulator_and_moto() {
    check(shipped_policy_table()).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_policy_decides_alike_on_simulator_and_moto() {
    check(installed_policy_table()).await;
}
