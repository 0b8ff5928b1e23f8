//! The guardrail file: its rules ([`GuardrailConfig`], [`Rule`]), how it is parsed and
//! checked, and which rule governs a namespace ([`GuardrailConfig::rule_for`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::escalation::Escalation;
use crate::glob::glob_match;
use crate::naming;
use crate::{Error, Result};

/// The guardrail file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardrailConfig {
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// True only for [`GuardrailConfig::unconfigured`]: the operator was given no file.
    #[serde(skip)]
    pub unconfigured: bool,
}

/// What the bindings of the namespaces a rule matches may do. Everything not granted is
/// refused: empty lists allow nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Named in `PolicyDenied` messages.
    pub name: String,
    /// Namespace names or globs (`team-*`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default)]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Managed policy ARNs (globs) that may be attached.
    #[serde(default)]
    pub allowed_managed_policy_arns: Vec<String>,
    /// Presets (names, globs) bindings may use: their managed policies count as allowed,
    /// their inline documents still go through the escalation analysis.
    #[serde(default)]
    pub allowed_presets: Vec<String>,
    /// Managed policy ARNs (globs) refused even when allowed above (or by a preset).
    #[serde(default)]
    pub denied_managed_policy_arns: Vec<String>,
    #[serde(default)]
    pub inline_policies: PolicyAllowance,
    #[serde(default)]
    pub session_policies: PolicyAllowance,
    /// Existing role ARNs (globs) a binding may use as `role.arn`.
    #[serde(default)]
    pub allowed_existing_role_arns: Vec<String>,
    /// Role ARNs (globs) a binding may chain into with `targetRoleArn`, and the only
    /// roles its inline and session policies may assume or tag sessions for.
    #[serde(default)]
    pub allowed_target_role_arns: Vec<String>,
    /// Applied to managed roles that name no boundary; another boundary is refused.
    #[serde(default)]
    pub permissions_boundary_arn: Option<String>,
    /// Added under the operator's path: roles go to `/pod-identity/<cluster>/<rolePath>/`.
    #[serde(default)]
    pub role_path: Option<String>,
    /// Managed role names must start with it; derived names get it prepended.
    #[serde(default)]
    pub role_name_prefix: Option<String>,
    /// Upper bound of `role.maxSessionDuration`, seconds.
    #[serde(default)]
    pub max_session_duration: Option<i32>,
    /// ServiceAccount names (globs) no binding may take.
    #[serde(default)]
    pub denied_service_accounts: Vec<String>,
    /// Escalating grants this rule allows in inline and session policies.
    #[serde(default)]
    pub allow_escalation: BTreeSet<Escalation>,
    /// Bindings may take over an association something else made (`adopt: true`).
    #[serde(default)]
    pub allow_adopt: bool,
    /// Bindings may turn off session tags (`disableSessionTags: true`), and with them
    /// the trust policy's scoping to the binding's namespace and ServiceAccount.
    #[serde(default)]
    pub allow_disable_session_tags: bool,
    /// Annotation keys (globs) a binding may give the ServiceAccount the operator
    /// creates. IRSA's role annotation is allowed only when listed exactly, not by a glob.
    #[serde(default)]
    pub allowed_service_account_annotations: Vec<String>,
    /// What a binding that was granted access keeps when this rule starts refusing it.
    #[serde(default)]
    pub when_denied: WhenDenied,
}

/// The annotation that gives a ServiceAccount an IAM role through IRSA.
pub const IRSA_ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

/// What happens to access already granted when a binding becomes `PolicyDenied`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WhenDenied {
    /// The association is deleted and the role's policies removed (the role stays, so
    /// allowing the binding again restores it).
    #[default]
    Revoke,
    /// Everything stays as it was granted.
    Keep,
}

impl GuardrailConfig {
    /// What the rule governing `namespace` says of access a denied binding already has:
    /// revoked unless that rule keeps it. With no configuration nothing is revoked (an
    /// operator started without its file must not take everyone's access away).
    pub fn when_denied(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<WhenDenied> {
        if self.unconfigured || self.rules.is_empty() {
            return None;
        }
        Some(
            self.rule_for(namespace, labels)
                .map_or(WhenDenied::Revoke, |r| r.when_denied),
        )
    }
}

/// A Kubernetes label selector over the namespace's labels: every `matchLabels` pair
/// and every `matchExpressions` requirement must hold (an empty selector matches all).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<LabelRequirement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequirement {
    pub key: String,
    pub operator: LabelOperator,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LabelOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl LabelRequirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            LabelOperator::In => value.is_some_and(|v| self.values.contains(v)),
            // As in Kubernetes, a namespace without the key satisfies NotIn.
            LabelOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            LabelOperator::Exists => value.is_some(),
            LabelOperator::DoesNotExist => value.is_none(),
        }
    }

    /// `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none (as the API server
    /// requires).
    fn check(&self) -> std::result::Result<(), String> {
        let needs_values = matches!(self.operator, LabelOperator::In | LabelOperator::NotIn);
        match (needs_values, self.values.is_empty()) {
            _ if self.key.is_empty() => Err("key must not be empty".into()),
            (true, true) => Err(format!("{:?} needs at least one value", self.operator)),
            (false, false) => Err(format!("{:?} takes no values", self.operator)),
            _ => Ok(()),
        }
    }
}

impl NamespaceSelector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

/// Whether a kind of policy document is allowed, and its largest size in characters
/// (whitespace not counted, as IAM counts).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyAllowance {
    #[serde(default)]
    pub allowed: bool,
    #[serde(default)]
    pub max_size: Option<usize>,
}

/// IAM's range for a role's maximum session duration.
pub const SESSION_DURATION_RANGE: std::ops::RangeInclusive<i32> = 3600..=43200;

pub(super) fn any_glob(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

impl GuardrailConfig {
    /// What is in force when the operator was given no configuration: nothing is
    /// allowed, and [`evaluate`] says how to give one.
    pub fn unconfigured() -> Self {
        GuardrailConfig {
            rules: Vec::new(),
            unconfigured: true,
        }
    }

    /// Parses and checks a configuration file's text.
    pub fn parse(text: &str) -> Result<Self> {
        let config: GuardrailConfig = serde_yaml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// Refuses configurations that could never be met or that IAM would refuse.
    pub fn check(&self) -> Result<()> {
        let bad = |i: usize, field: &str, message: String| {
            Err(Error::Config(format!("rules[{i}].{field}: {message}")))
        };
        let mut names = BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.name.is_empty() || !names.insert(r.name.as_str()) {
                return bad(
                    i,
                    "name",
                    "every rule needs a unique, non-empty name".into(),
                );
            }
            if r.namespaces.is_empty() && r.namespace_selector.is_none() {
                return bad(
                    i,
                    "namespaces",
                    "a rule needs namespaces or a namespaceSelector".into(),
                );
            }
            for (j, req) in r
                .namespace_selector
                .iter()
                .flat_map(|s| s.match_expressions.iter())
                .enumerate()
            {
                if let Err(message) = req.check() {
                    return bad(
                        i,
                        &format!("namespaceSelector.matchExpressions[{j}]"),
                        message,
                    );
                }
            }
            if let Some(d) = r.max_session_duration
                && !SESSION_DURATION_RANGE.contains(&d)
            {
                return bad(
                    i,
                    "maxSessionDuration",
                    format!("{d} is outside IAM's 3600..43200 seconds"),
                );
            }
            if let Some(b) = &r.permissions_boundary_arn
                && !naming::is_policy_arn(b)
            {
                return bad(
                    i,
                    "permissionsBoundaryArn",
                    format!("{b:?} is not an IAM policy ARN"),
                );
            }
            if let Some(p) = &r.role_path
                && (p.is_empty()
                    || p.starts_with('/')
                    || p.ends_with('/')
                    || !naming::valid_role_path(&format!("/{p}/")))
            {
                return bad(
                    i,
                    "rolePath",
                    format!("{p:?}: give segments like team-a/apps, no slash at either end"),
                );
            }
            if let Some(p) = &r.role_name_prefix
                && (p.len() > 32 || !naming::valid_role_name(p))
            {
                return bad(
                    i,
                    "roleNamePrefix",
                    format!("{p:?}: 1-32 of letters, digits and +=,.@_-"),
                );
            }
        }
        Ok(())
    }

    /// The first rule governing this namespace.
    pub fn rule_for(&self, namespace: &str, labels: &BTreeMap<String, String>) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            any_glob(&r.namespaces, namespace)
                || r.namespace_selector
                    .as_ref()
                    .is_some_and(|s| s.matches(labels))
        })
    }

    /// True when some rule selects namespaces by label (the namespace must be read).
    pub fn uses_labels(&self) -> bool {
        self.rules.iter().any(|r| r.namespace_selector.is_some())
    }
}

/// The refusal of `field` (a path under `spec`) by the rule named `rule`.
pub(super) fn denied(rule: &str, field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::PolicyDenied {
        rule: rule.to_owned(),
        field: format!("spec.{}", field.into()),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::evaluate::evaluate;
    use crate::guardrails::fixtures::binding;
    use serde_json::json;

    #[test]
    fn globs_match_like_shells() {
        assert!(glob_match("team-*", "team-a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a*b", "axxc"));
        assert!(!glob_match("team-*", "teams"));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = GuardrailConfig::parse(include_str!("../../../../config/guardrails.example.yaml"))
            .expect("config/guardrails.example.yaml");
        assert_eq!(c.rules.len(), 2);
        let labels = BTreeMap::from([("tenant".to_owned(), "true".to_owned())]);
        assert_eq!(
            c.rule_for("payments", &labels).map(|r| r.name.as_str()),
            Some("tenants")
        );
    }

    #[test]
    fn invalid_configurations_are_refused() {
        for bad in [
            "rules: [{name: a}]",
            "rules: [{name: a, namespaces: [x], maxSessionDuration: 60}]",
            "rules: [{name: a, namespaces: [x], rolePath: /x/}]",
            "rules: [{name: a, namespaces: [x], permissionsBoundaryArn: nope}]",
            "rules: [{name: a, namespaces: [x]}, {name: a, namespaces: [y]}]",
            "rules: [{name: a, namespaces: [x], typo: 1}]",
        ] {
            assert!(GuardrailConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_shipped_manager_configmap_denies_everything() {
        let manifest: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../../../config/manager/guardrails.yaml"))
                .expect("config/manager/guardrails.yaml");
        let text = manifest["data"]["guardrails.yaml"]
            .as_str()
            .expect("data.guardrails.yaml");
        assert!(text.contains("config/guardrails.example.yaml"), "{text}");
        let config = GuardrailConfig::parse(text).expect("valid configuration");
        assert!(config.rules.is_empty());
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let selector =
            |yaml: &str| -> NamespaceSelector { serde_yaml::from_str(yaml).expect("selector") };
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let s = selector(
            "{matchLabels: {tenant: 'yes'}, matchExpressions: [{key: tier, operator: In, values: [gold, silver]}, {key: frozen, operator: DoesNotExist}]}",
        );
        assert!(s.matches(&labels(&[("tenant", "yes"), ("tier", "gold")])));
        assert!(!s.matches(&labels(&[("tenant", "yes"), ("tier", "bronze")])));
        assert!(
            !s.matches(&labels(&[("tenant", "yes")])),
            "In needs the key"
        );
        assert!(
            !s.matches(&labels(&[("tier", "gold")])),
            "matchLabels still apply"
        );
        assert!(!s.matches(&labels(&[
            ("tenant", "yes"),
            ("tier", "gold"),
            ("frozen", "")
        ])));

        let s = selector(
            "{matchExpressions: [{key: env, operator: NotIn, values: [prod]}, {key: team, operator: Exists}]}",
        );
        assert!(s.matches(&labels(&[("team", "a"), ("env", "dev")])));
        assert!(
            s.matches(&labels(&[("team", "a")])),
            "NotIn holds without the key"
        );
        assert!(!s.matches(&labels(&[("team", "a"), ("env", "prod")])));
        assert!(
            !s.matches(&labels(&[("env", "dev")])),
            "Exists needs the key"
        );
        assert!(
            selector("{}").matches(&labels(&[])),
            "empty selector matches all"
        );

        // Through a rule: the selector picks the rule, others are denied.
        let config = GuardrailConfig::parse(
            "rules: [{name: t, namespaceSelector: {matchExpressions: [{key: tenant, operator: In, values: [a, b]}]}}]",
        )
        .expect("config");
        let e =
            |pairs: &[(&str, &str)]| evaluate(&binding("x", json!({})), &labels(pairs), &config);
        assert_eq!(
            e(&[("tenant", "b")]).expect("allowed").rule.as_deref(),
            Some("t")
        );
        assert!(matches!(
            e(&[("tenant", "c")]),
            Err(Error::PolicyDenied { .. })
        ));

        for bad in [
            "rules: [{name: a, namespaceSelector: {matchExpressions: [{key: k, operator: In}]}}]",
            "rules: [{name: a, namespaceSelector: {matchExpressions: [{key: k, operator: Exists, values: [v]}]}}]",
            "rules: [{name: a, namespaceSelector: {matchExpressions: [{key: '', operator: Exists}]}}]",
            "rules: [{name: a, namespaceSelector: {matchExpressions: [{key: k, operator: Gt, values: ['1']}]}}]",
        ] {
            assert!(GuardrailConfig::parse(bad).is_err(), "{bad}");
        }
    }
}
