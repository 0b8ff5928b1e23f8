//! A binding checked against the rule governing its namespace ([`evaluate`]): a pure
//! function of the binding, its namespace's labels and the configuration, answering
//! with the [`Effects`] the rule imposes or [`Error::PolicyDenied`] naming the rule and
//! the field.

use std::collections::BTreeMap;

use super::documents::{check_document, check_escalation};
use super::rules::{GuardrailConfig, IRSA_ROLE_ANNOTATION, Rule, any_glob, denied};
use crate::crd::{PodIdentityBinding, PodIdentityBindingSpec};
use crate::{Error, Result};

/// What the governing rule adds to a binding's resolved spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub rule: Option<String>,
    pub permissions_boundary_arn: Option<String>,
    /// Path segment(s) below the operator's own role path, without slashes at the ends.
    pub role_path: Option<String>,
    pub role_name_prefix: Option<String>,
}

/// Where an admin finds how to write a guardrail file.
const UNCONFIGURED_HINT: &str = "see config/guardrails.example.yaml; in cluster, write rules into the pod-identity-operator-guardrails ConfigMap";

/// Checks a binding against the rule governing its namespace.
pub fn evaluate(
    binding: &PodIdentityBinding,
    namespace_labels: &BTreeMap<String, String>,
    config: &GuardrailConfig,
) -> Result<Effects> {
    let rule = governing_rule(binding, namespace_labels, config)?;
    let spec = &binding.spec;
    check_identities(rule, &binding.service_account_name(), spec)?;
    check_managed_policies_and_presets(rule, spec)?;
    let boundary = required_boundary(rule, spec)?;
    check_role_settings(rule, spec)?;
    check_documents(rule, spec)?;
    check_switches(rule, spec)?;
    check_annotations(rule, spec)?;
    Ok(Effects {
        rule: Some(rule.name.clone()),
        permissions_boundary_arn: boundary,
        role_path: rule.role_path.clone(),
        role_name_prefix: rule.role_name_prefix.clone(),
    })
}

/// The rule governing the binding's namespace; none is a denial.
fn governing_rule<'c>(
    binding: &PodIdentityBinding,
    namespace_labels: &BTreeMap<String, String>,
    config: &'c GuardrailConfig,
) -> Result<&'c Rule> {
    if config.unconfigured {
        return Err(Error::PolicyDenied {
            rule: "(no configuration)".into(),
            field: "metadata.namespace".into(),
            message: format!(
                "no guardrail configuration is loaded, so the operator denies every binding: start it with --config FILE naming a guardrail file ({UNCONFIGURED_HINT})"
            ),
        });
    }
    let namespace = binding.metadata.namespace.clone().unwrap_or_default();
    config
        .rule_for(&namespace, namespace_labels)
        .ok_or_else(|| Error::PolicyDenied {
            rule: "(none)".into(),
            field: "metadata.namespace".into(),
            message: format!(
                "no guardrail rule matches namespace {namespace:?}: ask a cluster admin to add one"
            ),
        })
}

/// The ServiceAccount and the roles the binding names.
fn check_identities(rule: &Rule, sa: &str, spec: &PodIdentityBindingSpec) -> Result<()> {
    let r = rule.name.as_str();
    if any_glob(&rule.denied_service_accounts, sa) {
        return Err(denied(
            r,
            "serviceAccount.name",
            format!(
                "ServiceAccount {sa:?} may not be bound in this namespace: use a ServiceAccount of its own"
            ),
        ));
    }
    if let Some(arn) = &spec.role.arn
        && !any_glob(&rule.allowed_existing_role_arns, arn)
    {
        return Err(denied(
            r,
            "role.arn",
            format!(
                "existing role {arn} is not in allowedExistingRoleArns: let the operator manage the role, or ask a cluster admin to allow it"
            ),
        ));
    }
    if let Some(arn) = &spec.target_role_arn
        && !any_glob(&rule.allowed_target_role_arns, arn)
    {
        return Err(denied(
            r,
            "targetRoleArn",
            format!(
                "target role {arn} is not in allowedTargetRoleArns: ask a cluster admin to allow it"
            ),
        ));
    }
    Ok(())
}

/// The managed policies the role gets, named or through presets.
fn check_managed_policies_and_presets(rule: &Rule, spec: &PodIdentityBindingSpec) -> Result<()> {
    let r = rule.name.as_str();
    for (i, arn) in spec.role.managed_policy_arns.iter().enumerate() {
        if !any_glob(&rule.allowed_managed_policy_arns, arn)
            || any_glob(&rule.denied_managed_policy_arns, arn)
        {
            return Err(denied(
                r,
                format!("role.managedPolicyArns[{i}]"),
                format!(
                    "managed policy {arn} is not allowed in this namespace: use an allowed policy or an inline policy"
                ),
            ));
        }
    }
    for (i, p) in spec.role.presets.iter().enumerate() {
        if !any_glob(&rule.allowed_presets, &p.name) {
            return Err(denied(
                r,
                format!("role.presets[{i}].name"),
                format!(
                    "preset {} is not in allowedPresets: ask a cluster admin to allow it",
                    p.name
                ),
            ));
        }
    }
    if spec.role.arn.is_none() && !spec.role.presets.is_empty() {
        // Rendered for any cluster (the guardrails come before the cluster is known):
        // resources reach at least as far as on the binding's own cluster.
        let rendered =
            crate::presets::resolve(&spec.role.presets, &crate::presets::Context::any())?;
        for (i, p) in rendered.iter().enumerate() {
            let field = format!("role.presets[{i}]");
            for arn in &p.managed_policy_arns {
                if any_glob(&rule.denied_managed_policy_arns, arn) {
                    return Err(denied(
                        r,
                        &field,
                        format!(
                            "preset {} attaches {arn}, which deniedManagedPolicyArns refuses in this namespace",
                            p.name
                        ),
                    ));
                }
            }
            if let Some((_, doc)) = &p.inline_policy {
                check_escalation(rule, &field, doc)?;
            }
        }
    }
    Ok(())
}

/// The permissions boundary a managed role must carry.
fn required_boundary(rule: &Rule, spec: &PodIdentityBindingSpec) -> Result<Option<String>> {
    let r = rule.name.as_str();
    let mut boundary = None;
    if spec.role.arn.is_none() {
        match (
            &rule.permissions_boundary_arn,
            &spec.role.permissions_boundary_arn,
        ) {
            (Some(required), Some(named)) if required != named => {
                return Err(denied(
                    r,
                    "role.permissionsBoundaryArn",
                    format!(
                        "this namespace requires the boundary {required}: remove the field or name that policy"
                    ),
                ));
            }
            (Some(required), _) => boundary = Some(required.clone()),
            (None, _) => {}
        }
    }
    Ok(boundary)
}

/// The role's session length and name.
fn check_role_settings(rule: &Rule, spec: &PodIdentityBindingSpec) -> Result<()> {
    let r = rule.name.as_str();
    if let Some(max) = rule.max_session_duration
        && let Some(d) = spec.role.max_session_duration
        && d > max
    {
        return Err(denied(
            r,
            "role.maxSessionDuration",
            format!("{d} is above this namespace's maximum of {max} seconds"),
        ));
    }
    if let Some(prefix) = &rule.role_name_prefix
        && let Some(name) = &spec.role.name
        && !name.starts_with(prefix.as_str())
    {
        return Err(denied(
            r,
            "role.name",
            format!(
                "role names in this namespace start with {prefix:?}: rename it, or leave role.name out"
            ),
        ));
    }
    Ok(())
}

/// The inline and session policy documents.
fn check_documents(rule: &Rule, spec: &PodIdentityBindingSpec) -> Result<()> {
    for (name, doc) in &spec.role.inline_policies {
        check_document(
            rule,
            &format!("role.inlinePolicies.{name}"),
            doc,
            &rule.inline_policies,
            "inlinePolicies",
        )?;
    }
    if let Some(doc) = &spec.session_policy {
        check_document(
            rule,
            "sessionPolicy",
            doc,
            &rule.session_policies,
            "sessionPolicies",
        )?;
    }
    Ok(())
}

/// Adoption and session tags, which a rule must allow.
fn check_switches(rule: &Rule, spec: &PodIdentityBindingSpec) -> Result<()> {
    let r = rule.name.as_str();
    if spec.adopt == Some(true) && !rule.allow_adopt {
        return Err(denied(
            r,
            "adopt",
            "taking over an association something else made is not allowed in this namespace: remove adopt, or ask a cluster admin for allowAdopt",
        ));
    }
    if spec.disable_session_tags == Some(true) && !rule.allow_disable_session_tags {
        return Err(denied(
            r,
            "disableSessionTags",
            "session tags scope the role's trust to this namespace and ServiceAccount and may not be turned off here: remove disableSessionTags, or ask a cluster admin for allowDisableSessionTags",
        ));
    }
    Ok(())
}

/// The ServiceAccount's annotations.
fn check_annotations(rule: &Rule, spec: &PodIdentityBindingSpec) -> Result<()> {
    let r = rule.name.as_str();
    for key in spec.service_account.annotations.keys() {
        let allowed = if key == IRSA_ROLE_ANNOTATION {
            rule.allowed_service_account_annotations
                .iter()
                .any(|a| a == IRSA_ROLE_ANNOTATION)
        } else {
            any_glob(&rule.allowed_service_account_annotations, key)
        };
        if !allowed {
            return Err(denied(
                r,
                format!("serviceAccount.annotations[{key:?}]"),
                if key == IRSA_ROLE_ANNOTATION {
                    "an IRSA role annotation would give the ServiceAccount a second role outside these guardrails: remove it".to_owned()
                } else {
                    format!(
                        "annotation {key:?} is not in allowedServiceAccountAnnotations: remove it, or ask a cluster admin to allow it"
                    )
                },
            ));
        }
    }
    Ok(())
}

/// Where the governing rule places a binding's role, without checking anything it
/// refuses (no boundary is imposed either): only for tests showing what the operator's
/// IAM policy stops on its own ([`crate::controller::Settings::guardrail_checks`]).
pub fn effects_unchecked(
    binding: &PodIdentityBinding,
    namespace_labels: &BTreeMap<String, String>,
    config: &GuardrailConfig,
) -> Effects {
    let namespace = binding.metadata.namespace.clone().unwrap_or_default();
    match config.rule_for(&namespace, namespace_labels) {
        Some(rule) => Effects {
            rule: Some(rule.name.clone()),
            permissions_boundary_arn: None,
            role_path: rule.role_path.clone(),
            role_name_prefix: rule.role_name_prefix.clone(),
        },
        None => Effects::default(),
    }
}

/// Refuses a binding that names the operator's own role, as its role or its target:
/// pods would get the operator's AWS permissions.
pub fn not_the_operators_role(binding: &PodIdentityBinding, operator_role: &str) -> Result<()> {
    let spec = &binding.spec;
    let same = |arn: &Option<String>| {
        arn.as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(operator_role))
    };
    let field = if same(&spec.role.arn) {
        "role.arn"
    } else if same(&spec.target_role_arn) {
        "targetRoleArn"
    } else {
        return Ok(());
    };
    Err(denied(
        "(operator)",
        field,
        format!(
            "{operator_role} is the operator's own role: no binding may hand it to pods; name another role"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::fixtures::{binding, denial, eval};
    use crate::guardrails::source::GuardrailSource;
    use serde_json::json;

    #[test]
    fn rules_match_by_name_glob_or_labels_and_others_are_denied() {
        let ok = eval("team-a", &[], json!({})).expect("allowed");
        assert_eq!(ok.rule.as_deref(), Some("teams"));
        let by_label = eval("payments", &[("tenant", "yes")], json!({})).expect("by label");
        assert_eq!(by_label.rule.as_deref(), Some("teams"));
        let (rule, field, msg) = denial("payments", json!({}));
        assert_eq!(
            (rule.as_str(), field.as_str()),
            ("(none)", "metadata.namespace")
        );
        assert!(msg.contains("payments"), "{msg}");
    }

    #[test]
    fn effects_carry_boundary_path_and_prefix() {
        let e = eval("team-a", &[], json!({})).expect("allowed");
        assert_eq!(
            e.permissions_boundary_arn.as_deref(),
            Some("arn:aws:iam::111122223333:policy/tenant-boundary")
        );
        assert_eq!(e.role_path.as_deref(), Some("tenants"));
        assert_eq!(e.role_name_prefix.as_deref(), Some("tenant-"));
    }

    #[test]
    fn each_rule_field_denies_with_its_path() {
        let cases = [
            (
                json!({"serviceAccount": {"name": "default"}}),
                "serviceAccount.name",
            ),
            (
                json!({"role": {"arn": "arn:aws:iam::111122223333:role/x"}}),
                "role.arn",
            ),
            (
                json!({"targetRoleArn": "arn:aws:iam::777788889999:role/t"}),
                "targetRoleArn",
            ),
            (
                json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::aws:policy/AdministratorAccess"]}}),
                "role.managedPolicyArns[1]",
            ),
            (
                json!({"role": {"permissionsBoundaryArn": "arn:aws:iam::111122223333:policy/other"}}),
                "role.permissionsBoundaryArn",
            ),
            (
                json!({"role": {"maxSessionDuration": 7201}}),
                "role.maxSessionDuration",
            ),
            (json!({"role": {"name": "mine"}}), "role.name"),
            (
                json!({"role": {"inlinePolicies": {"big": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{}", "b".repeat(200))}]}}}}),
                "role.inlinePolicies.big",
            ),
            (
                json!({"role": {"inlinePolicies": {"p": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]}}}}),
                "role.inlinePolicies.p.Statement[0]",
            ),
            (
                json!({"disableSessionTags": true, "sessionPolicy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}}),
                "sessionPolicy",
            ),
        ];
        for (spec, want) in cases {
            let (rule, field, _) = denial("team-a", spec.clone());
            assert_eq!(
                (rule.as_str(), field.as_str()),
                ("teams", &*format!("spec.{want}")),
                "{spec}"
            );
        }
        // What the same rule grants passes.
        eval(
            "team-a",
            &[],
            json!({"role": {"name": "tenant-x", "maxSessionDuration": 7200,
                "permissionsBoundaryArn": "arn:aws:iam::111122223333:policy/tenant-boundary",
                "managedPolicyArns": ["arn:aws:iam::111122223333:policy/team-s3"]},
                "targetRoleArn": "arn:aws:iam::444455556666:role/data"}),
        )
        .expect("allowed");
    }

    #[test]
    fn without_configuration_every_binding_is_denied_with_the_fix() {
        let none = GuardrailConfig::unconfigured();
        for (ns, spec) in [
            ("default", json!({})),
            (
                "kube-system",
                json!({"role": {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}}),
            ),
        ] {
            match evaluate(&binding(ns, spec), &BTreeMap::new(), &none) {
                Err(Error::PolicyDenied { field, message, .. }) => {
                    assert_eq!(field, "metadata.namespace");
                    for fragment in [
                        "no guardrail configuration is loaded",
                        "--config FILE",
                        "config/guardrails.example.yaml",
                    ] {
                        assert!(message.contains(fragment), "{fragment:?} in {message}");
                    }
                }
                other => panic!("expected PolicyDenied, got {other:?}"),
            }
        }
        // A file, even with no rules, is a configuration: its denials name the namespace.
        let empty = GuardrailConfig::parse("rules: []").expect("empty rule list");
        assert!(!empty.unconfigured);
        match evaluate(&binding("default", json!({})), &BTreeMap::new(), &empty) {
            Err(Error::PolicyDenied { rule, message, .. }) => {
                assert_eq!(rule, "(none)");
                assert!(
                    message.contains("no guardrail rule matches namespace"),
                    "{message}"
                );
            }
            other => panic!("expected PolicyDenied, got {other:?}"),
        }
        assert!(GuardrailSource::unconfigured().current().unconfigured);
    }

    #[test]
    fn the_readme_install_guardrails_admit_the_sample_they_are_for() {
        let readme = include_str!("../../../../docs/installing.md");
        let start = "cat > values.yaml <<EOF\n";
        let from = readme
            .find(start)
            .expect("the install step writes the chart's values")
            + start.len();
        let values = &readme[from..from + readme[from..].find("\nEOF\n").expect("heredoc end")];
        let values: serde_yaml::Value = serde_yaml::from_str(values).expect("values YAML");
        // The chart writes `guardrails` into the guardrails ConfigMap as it is.
        let rules = serde_yaml::to_string(&values["guardrails"]).expect("guardrails YAML");
        let config = GuardrailConfig::parse(&rules).expect("valid guardrails");
        let sample: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../../../config/samples/s3_reader.yaml"))
                .expect("sample");
        let mut b: PodIdentityBinding =
            serde_json::from_value(serde_json::to_value(sample).expect("JSON")).expect("binding");
        b.metadata.namespace = Some("default".into());
        evaluate(&b, &BTreeMap::new(), &config).expect("the sample is allowed in default");
    }
}
