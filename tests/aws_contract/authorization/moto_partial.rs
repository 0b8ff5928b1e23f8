//! What moto 5.2.5 decides where its evaluation is partial, case by case, with the reason
//! from moto's source.

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
