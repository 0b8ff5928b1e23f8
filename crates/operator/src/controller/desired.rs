//! What a binding asks for, resolved against the cluster and validated: the operator's
//! own validation layer, run before any AWS call (DESIGN §2). Every failure is an
//! [`Error::InvalidSpec`] naming the field.
//!
//! Checked here because the schema cannot: policy documents' grammar and sizes, the
//! derived role name, ARNs against the cluster's account (an existing role in another
//! account cannot be passed to EKS), the inline policy name the operator reserves for
//! role chaining, and the tag count with the ownership tags included.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::aws::{Cluster, Tags};
use crate::crd::{DeletionPolicy, PodIdentityBinding};
use crate::guardrails::Effects;
use crate::naming;
use crate::policy::{self, DocumentKind, TrustScope};
use crate::presets;
use crate::{Error, Result};

/// The inline policy the operator adds to a managed role for `targetRoleArn`.
pub const TARGET_ROLE_POLICY: &str = "pod-identity-target-role";
/// IAM's and EKS's limit on tags per resource.
const MAX_TAGS: usize = 50;

/// Everything the planner needs to know about one binding.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub cluster_name: String,
    /// The cluster's ARN: its identity in role names and ownership tags.
    pub cluster_arn: String,
    pub namespace: String,
    pub binding_name: String,
    pub uid: String,
    pub service_account: DesiredServiceAccount,
    pub role: DesiredRole,
    pub association: DesiredAssociation,
    pub adopt: bool,
    pub deletion_policy: DeletionPolicy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredServiceAccount {
    pub name: String,
    pub create: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DesiredRole {
    /// A role the user brings; checked, never modified.
    Existing {
        arn: String,
        name: String,
    },
    Managed(ManagedRole),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ManagedRole {
    pub name: String,
    pub path: String,
    pub arn: String,
    pub trust_policy: Value,
    pub description: Option<String>,
    pub max_session_duration: i32,
    pub permissions_boundary_arn: Option<String>,
    pub managed_policy_arns: BTreeSet<String>,
    pub inline_policies: BTreeMap<String, Value>,
    pub tags: Tags,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DesiredAssociation {
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    pub session_policy: Option<Value>,
    /// Ownership tags plus the binding's tags.
    pub tags: Tags,
}

impl DesiredRole {
    pub fn name(&self) -> &str {
        match self {
            DesiredRole::Existing { name, .. } => name,
            DesiredRole::Managed(m) => &m.name,
        }
    }

    pub fn arn(&self) -> &str {
        match self {
            DesiredRole::Existing { arn, .. } => arn,
            DesiredRole::Managed(m) => &m.arn,
        }
    }
}

fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::InvalidSpec {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn check_document(field: &str, doc: &Value, kind: DocumentKind) -> Result<()> {
    policy::validate(doc, kind).map_err(|p| invalid(field, format!("policy document: {p}")))
}

fn check_policy_arn(field: &str, arn: &str) -> Result<()> {
    if naming::is_policy_arn(arn) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{arn:?} is not an IAM policy ARN: write arn:<partition>:iam::<account or aws>:policy/<name>, partition aws, aws-cn or aws-us-gov"
            ),
        ))
    }
}

/// Refuses more managed policies than a role may hold, `limit` (IAM's `PoliciesPerRole`
/// quota: 10 by default, which AWS support can raise), before any AWS call.
pub fn check_managed_policy_count(binding: &PodIdentityBinding, limit: usize) -> Result<()> {
    let r = &binding.spec.role;
    let mut arns: BTreeSet<&str> = r.managed_policy_arns.iter().map(String::as_str).collect();
    // Presets that do not render are reported by `desired`; here they add nothing.
    let rendered = presets::resolve(&r.presets, &presets::Context::any()).unwrap_or_default();
    arns.extend(
        rendered
            .iter()
            .flat_map(|p| p.managed_policy_arns.iter().map(String::as_str)),
    );
    let count = arns.len();
    if r.arn.is_none() && count > limit {
        return Err(invalid(
            "role.managedPolicyArns",
            format!(
                "{count} managed policies; a role holds at most {limit} (IAM's PoliciesPerRole quota): combine them into fewer policies, or, where AWS raised the quota for this account, start the operator with --max-managed-policies-per-role"
            ),
        ));
    }
    Ok(())
}

/// Resolves and validates a binding against the cluster it is reconciled in, with no
/// guardrail effects.
pub fn desired(binding: &PodIdentityBinding, cluster: &Cluster) -> Result<Desired> {
    desired_with(binding, cluster, &Effects::default())
}

/// [`desired`] with what the governing guardrail rule adds: a permissions boundary for
/// roles naming none, a path below the operator's own, a role name prefix.
pub fn desired_with(
    binding: &PodIdentityBinding,
    cluster: &Cluster,
    effects: &Effects,
) -> Result<Desired> {
    let spec = &binding.spec;
    let namespace = binding
        .metadata
        .namespace
        .clone()
        .ok_or_else(|| invalid("metadata.namespace", "a binding is namespaced"))?;
    let binding_name = binding.metadata.name.clone().unwrap_or_default();
    let sa_name = binding.service_account_name();
    if !naming::is_dns_subdomain(&sa_name) {
        return Err(invalid(
            "serviceAccount.name",
            format!(
                "{sa_name:?} is not a valid ServiceAccount name (RFC 1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit)"
            ),
        ));
    }
    let tags = tags(binding, cluster, &namespace, &binding_name)?;
    let disable_session_tags = session_settings(binding)?;
    let role = match &spec.role.arn {
        Some(arn) => existing_role(binding, arn, cluster)?,
        None => DesiredRole::Managed(managed_role(
            binding,
            cluster,
            effects,
            &TrustScope {
                account_id: cluster.account_id.clone(),
                cluster_arn: cluster.arn.clone(),
                namespace: namespace.clone(),
                service_account: sa_name.clone(),
            },
            &tags,
        )?),
    };
    Ok(Desired {
        cluster_name: cluster.name.clone(),
        cluster_arn: cluster.arn.clone(),
        namespace,
        binding_name,
        uid: binding.metadata.uid.clone().unwrap_or_default(),
        service_account: DesiredServiceAccount {
            name: sa_name,
            create: spec.service_account.create.unwrap_or(true),
            labels: spec.service_account.labels.clone(),
            annotations: spec.service_account.annotations.clone(),
        },
        association: DesiredAssociation {
            role_arn: role.arn().to_owned(),
            target_role_arn: spec.target_role_arn.clone(),
            disable_session_tags,
            session_policy: spec.session_policy.clone(),
            tags,
        },
        role,
        adopt: spec.adopt.unwrap_or(false),
        deletion_policy: binding.deletion_policy(),
    })
}

/// The tags of the role and the association: the operator's ownership tags, then the
/// spec's, checked against IAM's rules and count.
fn tags(
    binding: &PodIdentityBinding,
    cluster: &Cluster,
    namespace: &str,
    binding_name: &str,
) -> Result<Tags> {
    let mut user_tags = Tags::new();
    for (k, v) in &binding.spec.tags {
        if k.starts_with("aws:") || k.starts_with("podidentity.dev/") {
            return Err(invalid(
                "tags",
                format!("tag key {k:?} is reserved (aws: and podidentity.dev/ prefixes)"),
            ));
        }
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(invalid(
                "tags",
                format!("tag {k:?}: keys are 1-128 characters, values up to 256"),
            ));
        }
        let tag_char = |c: char| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c);
        if !k.chars().all(tag_char) || !v.chars().all(tag_char) {
            return Err(invalid(
                "tags",
                format!(
                    "tag {k:?}: IAM allows letters, digits, spaces and _.:/=+-@ only; remove the other characters"
                ),
            ));
        }
        user_tags.insert(k.clone(), v.clone());
    }
    let mut tags = naming::ownership_tags(&cluster.arn, namespace, binding_name);
    let own = tags.len();
    tags.extend(user_tags);
    if tags.len() > MAX_TAGS {
        return Err(invalid(
            "tags",
            format!(
                "at most {} tags besides the operator's own {own}",
                MAX_TAGS - own
            ),
        ));
    }
    Ok(tags)
}

/// Whether session tags are disabled, with the session policy and the target role that
/// the association carries checked.
fn session_settings(binding: &PodIdentityBinding) -> Result<bool> {
    let spec = &binding.spec;
    let disable_session_tags = spec.disable_session_tags.unwrap_or(false);
    if let Some(sp) = &spec.session_policy {
        if !disable_session_tags {
            return Err(invalid(
                "sessionPolicy",
                "a session policy requires disableSessionTags: true",
            ));
        }
        check_document("sessionPolicy", sp, DocumentKind::Session)?;
    }
    if let Some(t) = &spec.target_role_arn
        && naming::parse_role_arn(t).is_none()
    {
        return Err(invalid(
            "targetRoleArn",
            format!("{t:?} is not an IAM role ARN"),
        ));
    }
    Ok(disable_session_tags)
}

/// A role the binding names by ARN: used as it is, so no field describing a managed role
/// may be set, and it must be in the cluster's account.
fn existing_role(
    binding: &PodIdentityBinding,
    arn: &str,
    cluster: &Cluster,
) -> Result<DesiredRole> {
    let r = &binding.spec.role;
    let managed_fields = r.name.is_some()
        || r.description.is_some()
        || r.max_session_duration.is_some()
        || r.permissions_boundary_arn.is_some()
        || !r.managed_policy_arns.is_empty()
        || !r.inline_policies.is_empty()
        || !r.presets.is_empty();
    if managed_fields {
        return Err(invalid(
            "role.arn",
            "an existing role excludes name, description, maxSessionDuration, permissionsBoundaryArn, managedPolicyArns, inlinePolicies and presets",
        ));
    }
    let parsed = naming::parse_role_arn(arn)
        .ok_or_else(|| invalid("role.arn", format!("{arn:?} is not an IAM role ARN")))?;
    if parsed.account_id != cluster.account_id {
        return Err(invalid(
            "role.arn",
            format!(
                "role {arn} is in account {}, the cluster in {}: EKS cannot pass a role of another account (cross-account pass role is not allowed); use a role in {} and name the other account's role in targetRoleArn",
                parsed.account_id, cluster.account_id, cluster.account_id
            ),
        ));
    }
    Ok(DesiredRole::Existing {
        arn: arn.to_owned(),
        name: parsed.name,
    })
}

/// The role the operator makes for the binding: its name and path (with the guardrail's
/// prefix and sub-path), limits, policies and trust, scoped by `scope` unless session
/// tags are disabled.
fn managed_role(
    binding: &PodIdentityBinding,
    cluster: &Cluster,
    effects: &Effects,
    scope: &TrustScope,
    tags: &Tags,
) -> Result<ManagedRole> {
    let r = &binding.spec.role;
    let name = match &r.name {
        Some(n) => n.clone(),
        None => naming::prefixed_role_name(
            effects.role_name_prefix.as_deref().unwrap_or(""),
            &cluster.arn,
            &scope.namespace,
            binding.metadata.name.as_deref().unwrap_or_default(),
        ),
    };
    if !naming::valid_role_name(&name) {
        return Err(invalid(
            "role.name",
            format!("{name:?} is not a valid IAM role name (1-64 of letters, digits and +=,.@_-)"),
        ));
    }
    let path = match &effects.role_path {
        Some(sub) => format!("{}{sub}/", naming::role_path(&cluster.name)),
        None => naming::role_path(&cluster.name),
    };
    if !naming::valid_role_path(&path) {
        return Err(invalid(
            "role.name",
            format!("role path {path:?} is not valid for IAM"),
        ));
    }
    let max_session_duration = r.max_session_duration.unwrap_or(3600);
    if max_session_duration > 43200 {
        return Err(invalid(
            "role.maxSessionDuration",
            format!("{max_session_duration} is above the IAM maximum of 43200 seconds"),
        ));
    }
    if max_session_duration < 3600 {
        return Err(invalid(
            "role.maxSessionDuration",
            format!("{max_session_duration} is below the IAM minimum of 3600 seconds"),
        ));
    }
    if let Some(d) = &r.description
        && d.chars().count() > 1000
    {
        return Err(invalid("role.description", "at most 1000 characters"));
    }
    if let Some(b) = &r.permissions_boundary_arn {
        check_policy_arn("role.permissionsBoundaryArn", b)?;
    }
    for (i, arn) in r.managed_policy_arns.iter().enumerate() {
        check_policy_arn(&format!("role.managedPolicyArns[{i}]"), arn)?;
    }
    let (managed_policy_arns, inline_policies) = policies(binding, cluster)?;
    // Without session tags, the source account and cluster still scope the trust.
    let trust_policy = if binding.spec.disable_session_tags.unwrap_or(false) {
        policy::cluster_trust_policy(&cluster.account_id, &cluster.arn)
    } else {
        policy::pod_identity_trust_policy(Some(scope))
    };
    Ok(ManagedRole {
        arn: naming::role_arn(&cluster.arn, &cluster.account_id, &path, &name),
        name,
        path,
        trust_policy,
        description: r.description.clone(),
        max_session_duration,
        permissions_boundary_arn: r
            .permissions_boundary_arn
            .clone()
            .or_else(|| effects.permissions_boundary_arn.clone()),
        managed_policy_arns,
        inline_policies,
        tags: tags.clone(),
    })
}

/// The managed policies and inline policies of a managed role: the spec's, its presets'
/// and the role-chaining policy of `targetRoleArn`, within IAM's size limit.
fn policies(
    binding: &PodIdentityBinding,
    cluster: &Cluster,
) -> Result<(BTreeSet<String>, BTreeMap<String, Value>)> {
    let r = &binding.spec.role;
    let mut inline = BTreeMap::new();
    for (pname, doc) in &r.inline_policies {
        let field = format!("role.inlinePolicies.{pname}");
        if pname == TARGET_ROLE_POLICY {
            return Err(invalid(
                &field,
                "this inline policy name is reserved for targetRoleArn",
            ));
        }
        if pname.is_empty()
            || pname.len() > 128
            || !pname
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(invalid(
                &field,
                "inline policy names are 1-128 of letters, digits and +=,.@_-",
            ));
        }
        check_document(&field, doc, DocumentKind::Identity)?;
        inline.insert(pname.clone(), doc.clone());
    }
    let mut managed_policy_arns: BTreeSet<String> = r.managed_policy_arns.iter().cloned().collect();
    if !r.presets.is_empty() {
        let ctx = presets::Context::of_cluster_arn(&cluster.arn).ok_or_else(|| {
            invalid(
                "role.presets",
                format!(
                    "the cluster ARN {} does not name an EKS cluster",
                    cluster.arn
                ),
            )
        })?;
        for (i, p) in presets::resolve(&r.presets, &ctx)?.into_iter().enumerate() {
            managed_policy_arns.extend(p.managed_policy_arns);
            if let Some((pname, doc)) = p.inline_policy {
                let field = format!("role.presets[{i}]");
                if inline.contains_key(&pname) {
                    return Err(invalid(
                        &field,
                        format!(
                            "role.inlinePolicies already has a policy named {pname}, the name this preset's policy takes: rename that one"
                        ),
                    ));
                }
                check_document(&field, &doc, DocumentKind::Identity)?;
                inline.insert(pname, doc);
            }
        }
    }
    if let Some(t) = &binding.spec.target_role_arn {
        inline.insert(TARGET_ROLE_POLICY.to_owned(), policy::target_role_policy(t));
    }
    let total: usize = inline.values().map(policy::size_chars).sum();
    if total > policy::ROLE_INLINE_POLICIES_MAX_CHARS {
        return Err(invalid(
            "role.inlinePolicies",
            format!(
                "inline policies total {total} characters; IAM allows {} per role",
                policy::ROLE_INLINE_POLICIES_MAX_CHARS
            ),
        ));
    }
    Ok((managed_policy_arns, inline))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
