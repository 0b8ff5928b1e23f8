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
    let uid = binding.metadata.uid.clone().unwrap_or_default();
    let sa_name = binding.service_account_name();
    if !naming::is_dns_subdomain(&sa_name) {
        return Err(invalid(
            "serviceAccount.name",
            format!(
                "{sa_name:?} is not a valid ServiceAccount name (RFC 1123 subdomain: at most 253 lower-case letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit)"
            ),
        ));
    }

    let mut user_tags = Tags::new();
    for (k, v) in &spec.tags {
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
    let mut tags = naming::ownership_tags(&cluster.arn, &namespace, &binding_name);
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

    let r = &spec.role;
    let role = if let Some(arn) = &r.arn {
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
        DesiredRole::Existing {
            arn: arn.clone(),
            name: parsed.name,
        }
    } else {
        let name = match &r.name {
            Some(n) => n.clone(),
            None => naming::prefixed_role_name(
                effects.role_name_prefix.as_deref().unwrap_or(""),
                &cluster.arn,
                &namespace,
                &binding_name,
            ),
        };
        if !naming::valid_role_name(&name) {
            return Err(invalid(
                "role.name",
                format!(
                    "{name:?} is not a valid IAM role name (1-64 of letters, digits and +=,.@_-)"
                ),
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
        let mut managed_policy_arns: BTreeSet<String> =
            r.managed_policy_arns.iter().cloned().collect();
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
        if let Some(t) = &spec.target_role_arn {
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
        // Without session tags, the source account and cluster still scope the trust.
        let trust_policy = if disable_session_tags {
            policy::cluster_trust_policy(&cluster.account_id, &cluster.arn)
        } else {
            policy::pod_identity_trust_policy(Some(&TrustScope {
                account_id: cluster.account_id.clone(),
                cluster_arn: cluster.arn.clone(),
                namespace: namespace.clone(),
                service_account: sa_name.clone(),
            }))
        };
        DesiredRole::Managed(ManagedRole {
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
            inline_policies: inline,
            tags: tags.clone(),
        })
    };

    Ok(Desired {
        cluster_name: cluster.name.clone(),
        cluster_arn: cluster.arn.clone(),
        namespace,
        binding_name,
        uid,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PodIdentityBindingSpec;
    use serde_json::json;

    fn cluster() -> Cluster {
        Cluster {
            name: "prod".into(),
            arn: "arn:aws:eks:us-east-1:111122223333:cluster/prod".into(),
            account_id: "111122223333".into(),
            status: None,
        }
    }

    fn binding(spec: Value) -> PodIdentityBinding {
        let spec: PodIdentityBindingSpec = serde_json::from_value(spec).expect("spec");
        let mut b = PodIdentityBinding::new("app", spec);
        b.metadata.namespace = Some("team".into());
        b.metadata.uid = Some("uid-1".into());
        b
    }

    fn field_of(spec: Value) -> String {
        match desired(&binding(spec), &cluster()) {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn defaults_resolve_to_a_scoped_managed_role() {
        let d = desired(&binding(json!({})), &cluster()).expect("valid");
        assert_eq!(d.service_account.name, "app");
        assert!(d.service_account.create);
        let DesiredRole::Managed(m) = &d.role else {
            panic!("managed")
        };
        assert_eq!(
            m.name,
            naming::default_role_name(&cluster().arn, "team", "app")
        );
        assert!(m.name.starts_with("pi-prod-team-app-"));
        assert_eq!(
            m.arn,
            format!(
                "arn:aws:iam::111122223333:role/pod-identity/prod/{}",
                m.name
            )
        );
        assert!(naming::owned_by(&m.tags, &cluster().arn, "team", "app"));
        let cond = &m.trust_policy["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(cond["aws:RequestTag/kubernetes-service-account"], "app");
        assert_eq!(cond["aws:RequestTag/kubernetes-namespace"], "team");
        assert_eq!(d.association.tags.len(), 4);
        assert_eq!(
            d.association.tags.get(naming::TAG_CLUSTER_ARN),
            Some(&cluster().arn)
        );
        assert_eq!(d.deletion_policy, DeletionPolicy::Delete);
    }

    #[test]
    fn target_role_adds_the_chaining_policy_and_session_tags_off_unscope_trust() {
        let d = desired(
            &binding(json!({"targetRoleArn": "arn:aws:iam::444455556666:role/t", "disableSessionTags": true})),
            &cluster(),
        )
        .expect("valid");
        let DesiredRole::Managed(m) = &d.role else {
            panic!("managed")
        };
        assert_eq!(
            m.inline_policies[TARGET_ROLE_POLICY]["Statement"][0]["Resource"],
            "arn:aws:iam::444455556666:role/t"
        );
        let cond = &m.trust_policy["Statement"][0]["Condition"];
        assert!(
            cond["StringEquals"]
                .get("aws:RequestTag/kubernetes-namespace")
                .is_none()
        );
        assert_eq!(cond["StringEquals"]["aws:SourceAccount"], "111122223333");
        assert_eq!(cond["ArnEquals"]["aws:SourceArn"], cluster().arn.as_str());
    }

    #[test]
    fn more_managed_policies_than_the_quota_are_refused() {
        let arns: Vec<String> = (0..11)
            .map(|i| format!("arn:aws:iam::111122223333:policy/p{i}"))
            .collect();
        let b = binding(json!({"role": {"managedPolicyArns": arns}}));
        match check_managed_policy_count(&b, 10) {
            Err(Error::InvalidSpec { field, message }) => {
                assert_eq!(field, "role.managedPolicyArns");
                assert!(
                    message.contains("11") && message.contains("10"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        check_managed_policy_count(&b, 20).expect("a raised quota");
        let ten = binding(json!({"role": {"managedPolicyArns": arns[..10]}}));
        check_managed_policy_count(&ten, 10).expect("at the quota");
    }

    #[test]
    fn a_session_policy_over_2048_characters_is_refused() {
        let resources: Vec<String> = (0..120)
            .map(|i| format!("arn:aws:s3:::bucket-{i:04}/*"))
            .collect();
        let field = field_of(json!({
            "disableSessionTags": true,
            "sessionPolicy": {"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}]},
        }));
        assert_eq!(field, "sessionPolicy");
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(
            field_of(json!({"serviceAccount": {"name": "Bad_Name"}})),
            "serviceAccount.name"
        );
        assert_eq!(
            field_of(json!({"role": {"name": "x".repeat(65)}})),
            "role.name"
        );
        assert_eq!(
            field_of(json!({"role": {"maxSessionDuration": 100}})),
            "role.maxSessionDuration"
        );
        assert_eq!(
            field_of(json!({"role": {"arn": "arn:aws:iam::111122223333:role/r", "name": "x"}})),
            "role.arn"
        );
        assert_eq!(
            field_of(json!({"role": {"arn": "arn:aws:iam::999999999999:role/r"}})),
            "role.arn"
        );
        assert_eq!(
            field_of(json!({"role": {"managedPolicyArns": ["nope"]}})),
            "role.managedPolicyArns[0]"
        );
        assert_eq!(
            field_of(json!({"role": {"inlinePolicies": {"p": {"Statement": []}}}})),
            "role.inlinePolicies.p"
        );
        assert_eq!(
            field_of(json!({"sessionPolicy": {"Version": "2012-10-17", "Statement": []}})),
            "sessionPolicy"
        );
        assert_eq!(field_of(json!({"tags": {"aws:x": "y"}})), "tags");
        assert_eq!(
            field_of(json!({"targetRoleArn": "arn:aws:s3:::bucket"})),
            "targetRoleArn"
        );
    }

    #[test]
    fn a_guardrail_prefix_leads_the_name_and_the_identity_hash_ends_it() {
        let effects = Effects {
            role_name_prefix: Some("tenant-".into()),
            ..Effects::default()
        };
        let d = desired_with(&binding(json!({})), &cluster(), &effects).expect("valid");
        let plain = desired(&binding(json!({})), &cluster()).expect("valid");
        let name = d.role.name();
        assert!(name.starts_with("tenant-pi-prod-team-app-"), "{name}");
        let hash = &plain.role.name()[plain.role.name().len() - naming::ROLE_NAME_HASH_LEN..];
        assert!(name.ends_with(hash));
        // A name the spec gives is kept as it is.
        let named = desired_with(
            &binding(json!({"role": {"name": "tenant-mine"}})),
            &cluster(),
            &effects,
        )
        .expect("valid");
        assert_eq!(named.role.name(), "tenant-mine");
    }

    #[test]
    fn cross_account_role_message_points_at_target_role_arn() {
        let err = desired(
            &binding(json!({"role": {"arn": "arn:aws:iam::999999999999:role/r"}})),
            &cluster(),
        )
        .expect_err("other account");
        assert!(err.to_string().contains("targetRoleArn"));
    }
}

/// Random specs, valid and not, through validation, guardrails and the planner.
#[cfg(test)]
mod properties {
    use super::*;
    use crate::controller::observe::Observed;
    use crate::controller::plan;
    use crate::crd::PodIdentityBindingSpec;
    use crate::guardrails::{GuardrailConfig, evaluate};
    use proptest::prelude::*;
    use serde_json::json;

    fn text() -> impl Strategy<Value = Value> {
        prop_oneof![
            "[a-z0-9.-]{0,70}".prop_map(Value::from),
            "\\PC{0,30}".prop_map(Value::from),
            Just(json!("arn:aws:iam::111122223333:role/r")),
            Just(json!("arn:aws-cn:iam::111122223333:role/p/r")),
            Just(json!("arn:aws:iam::999999999999:role/r")),
            Just(json!("arn:aws:iam::aws:policy/ReadOnlyAccess")),
            Just(json!("arn:aws-us-gov:iam::111122223333:policy/x")),
            Just(json!("arn:aws:iam::111122223333:policy/")),
            Just(json!("arn:aws:s3:::b")),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            text(),
            Just(json!("*")),
            Just(json!("Allow")),
            Just(json!("2012-10-17")),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("Version".to_owned()),
                        Just("Statement".to_owned()),
                        Just("Effect".to_owned()),
                        Just("Action".to_owned()),
                        Just("NotAction".to_owned()),
                        Just("Resource".to_owned()),
                        Just("Condition".to_owned()),
                        "[a-zA-Z]{1,8}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn policy() -> impl Strategy<Value = Value> {
        prop_oneof![
            json_value(),
            (json_value(), json_value(), any::<bool>()).prop_map(|(a, r, allow)| json!({
                "Version": "2012-10-17",
                "Statement": [{"Effect": if allow {"Allow"} else {"Deny"}, "Action": a, "Resource": r}]
            })),
        ]
    }

    fn spec() -> impl Strategy<Value = Value> {
        (
            (
                prop::option::of(text()),
                prop::option::of(any::<bool>()),
                prop::option::of(text()),
                prop::option::of(text()),
                prop::option::of(any::<i32>()),
                prop::option::of(text()),
            ),
            (
                prop::collection::vec(text(), 0..3),
                prop::collection::btree_map("[a-zA-Z0-9+=,.@_ -]{0,12}", policy(), 0..3),
                prop::option::of(text()),
                prop::option::of(any::<bool>()),
                prop::option::of(policy()),
                prop::collection::btree_map("\\PC{0,10}", "\\PC{0,10}", 0..4),
            ),
        )
            .prop_map(
                |((sa, create, arn, name, msd, boundary), (mpa, inline, target, dst, sp, tags))| {
                    let mut role = serde_json::Map::new();
                    let mut put = |k: &str, v: Option<Value>| {
                        if let Some(v) = v {
                            role.insert(k.to_owned(), v);
                        }
                    };
                    put("arn", arn);
                    put("name", name);
                    put("maxSessionDuration", msd.map(Value::from));
                    put("permissionsBoundaryArn", boundary);
                    if !mpa.is_empty() {
                        role.insert("managedPolicyArns".into(), Value::from(mpa));
                    }
                    if !inline.is_empty() {
                        role.insert(
                            "inlinePolicies".into(),
                            Value::Object(inline.into_iter().collect()),
                        );
                    }
                    let mut spec = json!({"role": role, "tags": tags});
                    let obj = spec.as_object_mut().expect("object literal");
                    let mut sa_spec = serde_json::Map::new();
                    if let Some(n) = sa {
                        sa_spec.insert("name".into(), n);
                    }
                    if let Some(c) = create {
                        sa_spec.insert("create".into(), c.into());
                    }
                    obj.insert("serviceAccount".into(), Value::Object(sa_spec));
                    for (k, v) in [
                        ("targetRoleArn", target),
                        ("disableSessionTags", dst.map(Value::from)),
                        ("sessionPolicy", sp),
                    ] {
                        if let Some(v) = v {
                            obj.insert(k.into(), v);
                        }
                    }
                    spec
                },
            )
    }

    fn cluster() -> Cluster {
        Cluster {
            name: "prod".into(),
            arn: "arn:aws:eks:us-east-1:111122223333:cluster/prod".into(),
            account_id: "111122223333".into(),
            status: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn random_specs_yield_a_plan_or_an_invalid_spec_naming_a_field(spec in spec()) {
            // A spec serde cannot read is the malformed-object path, not validation's.
            let Ok(spec) = serde_json::from_value::<PodIdentityBindingSpec>(spec) else {
                return Ok(());
            };
            let mut b = PodIdentityBinding::new("app", spec);
            b.metadata.namespace = Some("team".into());
            b.metadata.uid = Some("uid-1".into());
            match desired(&b, &cluster()) {
                Ok(d) => {
                    let p = plan::plan(&d, &Observed::default());
                    prop_assert!(p.blocked.is_some() || !p.actions.is_empty());
                    // Everything but escalation allowed, so policy documents reach the checks.
                    let config = GuardrailConfig::parse(include_str!("../../tests/e2e-guardrails.yaml"))
                        .expect("tests/e2e-guardrails.yaml is valid");
                    let effects = evaluate(&b, &BTreeMap::new(), &config);
                    match effects {
                        Ok(e) => { desired_with(&b, &cluster(), &e).map(|_| ()).or_else(|e| match e {
                            Error::InvalidSpec { field, .. } if !field.is_empty() => Ok(()),
                            other => Err(other),
                        }).map_err(|e| TestCaseError::fail(e.to_string()))?; }
                        Err(Error::PolicyDenied { field, rule, .. }) => {
                            prop_assert!(field.starts_with("spec.") && !rule.is_empty());
                        }
                        Err(other) => prop_assert!(false, "{other}"),
                    }
                }
                Err(Error::InvalidSpec { field, message }) => {
                    prop_assert!(!field.is_empty() && !message.is_empty());
                    let known = ["serviceAccount.name", "tags", "sessionPolicy", "targetRoleArn", "role."];
                    prop_assert!(known.iter().any(|k| field.starts_with(k)), "{field}");
                }
                Err(other) => prop_assert!(false, "not InvalidSpec: {other}"),
            }
        }
    }
}
