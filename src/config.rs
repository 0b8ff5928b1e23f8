//! Guardrails: what each namespace's bindings may ask of AWS, owned by cluster admins
//! (DESIGN §5).
//!
//! A YAML file (`run --config`, env `PIO_CONFIG`) lists rules; the first rule whose
//! `namespaces` (names or globs) or `namespaceSelector` (`matchLabels` and
//! `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`, as Kubernetes label
//! selectors) matches a binding's namespace governs it, and a namespace no rule matches
//! is denied.
//! [`evaluate`] is a pure function of the binding, its namespace's labels and the
//! configuration: it answers with the [`Effects`] the rule imposes (permissions boundary,
//! role path, role name prefix) or [`Error::PolicyDenied`] naming the rule and the field.
//! [`GuardrailSource`] re-reads the file when its modification time changes and keeps
//! the last good configuration when the new one is invalid.
//!
//! Without any configuration the operator denies everything
//! ([`GuardrailConfig::unconfigured`]): every binding gets `PolicyDenied` saying that no
//! guardrail configuration is loaded and how to give one, before any AWS call. A file
//! with an empty rule list denies everything too, namespace by namespace.
//!
//! Not implemented: reading a ConfigMap through the API (mount it as a file instead).

use crate::glob::glob_match;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::crd::PodIdentityBinding;
use crate::escalation::{self, Escalation};
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

/// What the governing rule adds to a binding's resolved spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub rule: Option<String>,
    pub permissions_boundary_arn: Option<String>,
    /// Path segment(s) below the operator's own role path, without slashes at the ends.
    pub role_path: Option<String>,
    pub role_name_prefix: Option<String>,
}

/// IAM's range for a role's maximum session duration.
pub const SESSION_DURATION_RANGE: std::ops::RangeInclusive<i32> = 3600..=43200;

fn any_glob(patterns: &[String], text: &str) -> bool {
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

fn denied(rule: &str, field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::PolicyDenied {
        rule: rule.to_owned(),
        field: format!("spec.{}", field.into()),
        message: message.into(),
    }
}

fn check_document(
    rule: &Rule,
    field: &str,
    doc: &serde_json::Value,
    allowance: &PolicyAllowance,
    key: &str,
) -> Result<()> {
    let r = rule.name.as_str();
    if !allowance.allowed {
        return Err(denied(
            r,
            field,
            format!(
                "{key} are not allowed in this namespace: remove it, or ask a cluster admin to set {key}.allowed"
            ),
        ));
    }
    let size = crate::policy::size_chars(doc);
    if let Some(max) = allowance.max_size
        && size > max
    {
        return Err(denied(
            r,
            field,
            format!("{size} characters is above this namespace's limit of {max}"),
        ));
    }
    check_escalation(rule, field, doc)
}

/// The escalation analysis of a permissions policy under `rule`: escalating grants the
/// rule does not allow, and roles outside its allowed target roles, are refused.
fn check_escalation(rule: &Rule, field: &str, doc: &serde_json::Value) -> Result<()> {
    let r = rule.name.as_str();
    for f in escalation::find(doc) {
        if !rule.allow_escalation.contains(&f.kind) {
            return Err(denied(
                r,
                format!("{field}.Statement[{}]", f.statement),
                format!(
                    "{:?} escalates ({}): narrow the statement, or ask a cluster admin to add {} to allowEscalation",
                    f.action,
                    f.kind.as_str(),
                    f.kind.as_str()
                ),
            ));
        }
    }
    // A rule allowing assumeRoleAnyResource lets every role be assumed; otherwise each
    // role the document reaches is one the binding could name as targetRoleArn.
    if !rule
        .allow_escalation
        .contains(&Escalation::AssumeRoleAnyResource)
    {
        for t in escalation::role_targets(doc) {
            if escalation::targets_within(&rule.allowed_target_role_arns, t.resource.as_deref()) {
                continue;
            }
            let resource = match &t.resource {
                Some(resource) => format!("role {resource}"),
                None => "every role but those in NotResource".to_owned(),
            };
            return Err(denied(
                r,
                format!("{field}.Statement[{}]", t.statement),
                format!(
                    "{:?} reaches {resource}, which is not in allowedTargetRoleArns: name only allowed roles, or ask a cluster admin to allow it",
                    t.action
                ),
            ));
        }
    }
    Ok(())
}

/// Where an admin finds how to write a guardrail file.
const UNCONFIGURED_HINT: &str = "see config/guardrails.example.yaml; in cluster, write rules into the pod-identity-operator-guardrails ConfigMap";

/// Checks a binding against the rule governing its namespace.
pub fn evaluate(
    binding: &PodIdentityBinding,
    namespace_labels: &BTreeMap<String, String>,
    config: &GuardrailConfig,
) -> Result<Effects> {
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
    let Some(rule) = config.rule_for(&namespace, namespace_labels) else {
        return Err(Error::PolicyDenied {
            rule: "(none)".into(),
            field: "metadata.namespace".into(),
            message: format!(
                "no guardrail rule matches namespace {namespace:?}: ask a cluster admin to add one"
            ),
        });
    };
    let r = rule.name.as_str();
    let spec = &binding.spec;
    let sa = binding.service_account_name();
    if any_glob(&rule.denied_service_accounts, &sa) {
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
    Ok(Effects {
        rule: Some(rule.name.clone()),
        permissions_boundary_arn: boundary,
        role_path: rule.role_path.clone(),
        role_name_prefix: rule.role_name_prefix.clone(),
    })
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

/// The configuration in force: a file re-read when it changes, or none (deny-all).
#[derive(Debug)]
pub struct GuardrailSource {
    path: Option<PathBuf>,
    state: RwLock<(Option<SystemTime>, Arc<GuardrailConfig>)>,
}

fn modified(path: &Path) -> Result<SystemTime> {
    Ok(std::fs::metadata(path)?.modified()?)
}

impl GuardrailSource {
    /// No configuration: every binding is denied, never reloaded.
    pub fn unconfigured() -> Self {
        Self::fixed(GuardrailConfig::unconfigured())
    }

    /// A configuration given in code (tests, embedding).
    pub fn fixed(config: GuardrailConfig) -> Self {
        GuardrailSource {
            path: None,
            state: RwLock::new((None, Arc::new(config))),
        }
    }

    /// Reads the file; a missing or invalid file is an error (the operator does not
    /// start without the guardrails it was told to use).
    pub fn from_file(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let mtime = modified(&path)?;
        let config = GuardrailConfig::parse(&std::fs::read_to_string(&path)?)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        Ok(GuardrailSource {
            path: Some(path),
            state: RwLock::new((Some(mtime), Arc::new(config))),
        })
    }

    pub fn is_file(&self) -> bool {
        self.path.is_some()
    }

    pub fn current(&self) -> Arc<GuardrailConfig> {
        // Readers and the reloader never panic while holding the lock; a poisoned
        // lock still holds a complete configuration.
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Re-reads the file when its modification time changed; true when the configuration
    /// in force changed. An unreadable or invalid file keeps the previous configuration.
    pub fn reload(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        let mtime = match modified(path) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "guardrail configuration unreadable; keeping the previous one");
                return false;
            }
        };
        if self.state.read().unwrap_or_else(|e| e.into_inner()).0 == Some(mtime) {
            return false;
        }
        let parsed = std::fs::read_to_string(path)
            .map_err(Error::from)
            .and_then(|t| GuardrailConfig::parse(&t));
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.0 = Some(mtime);
        match parsed {
            Ok(c) if *state.1 != c => {
                tracing::info!(path = %path.display(), rules = c.rules.len(), "guardrail configuration reloaded");
                state.1 = Arc::new(c);
                true
            }
            Ok(_) => false,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "guardrail configuration invalid; keeping the previous one");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PodIdentityBindingSpec;
    use serde_json::{Value, json};

    fn binding(ns: &str, spec: Value) -> PodIdentityBinding {
        let spec: PodIdentityBindingSpec = serde_json::from_value(spec).expect("spec");
        let mut b = PodIdentityBinding::new("app", spec);
        b.metadata.namespace = Some(ns.into());
        b
    }

    const CONFIG: &str = r#"
rules:
- name: platform
  namespaces: [kube-system]
  allowedManagedPolicyArns: ["*"]
  allowedExistingRoleArns: ["arn:aws:iam::111122223333:role/platform-*"]
  inlinePolicies: {allowed: true}
  allowEscalation: [iamWrite, passRoleAnyResource]
- name: teams
  namespaces: ["team-*"]
  namespaceSelector: {matchLabels: {tenant: "yes"}}
  allowedManagedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::111122223333:policy/team-*"]
  inlinePolicies: {allowed: true, maxSize: 200}
  allowedTargetRoleArns: ["arn:aws:iam::444455556666:role/*"]
  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/tenant-boundary
  rolePath: tenants
  roleNamePrefix: tenant-
  maxSessionDuration: 7200
  deniedServiceAccounts: [default]
"#;

    fn eval(ns: &str, labels: &[(&str, &str)], spec: Value) -> Result<Effects> {
        let config = GuardrailConfig::parse(CONFIG).expect("config");
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        evaluate(&binding(ns, spec), &labels, &config)
    }

    fn denial(ns: &str, spec: Value) -> (String, String, String) {
        match eval(ns, &[], spec) {
            Err(Error::PolicyDenied {
                rule,
                field,
                message,
            }) => (rule, field, message),
            other => panic!("expected PolicyDenied, got {other:?}"),
        }
    }

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
    fn escalations_are_allowed_only_when_the_rule_says_so() {
        let doc = |action: &str| {
            json!({"role": {"inlinePolicies": {"p": {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}}}})
        };
        // platform allows iamWrite and passRoleAnyResource, nothing else.
        eval("kube-system", &[], doc("iam:PassRole")).expect("allowed by rule");
        eval("kube-system", &[], doc("iam:CreateRole")).expect("allowed by rule");
        for action in ["*", "iam:*", "sts:AssumeRole"] {
            let (rule, _, msg) = denial("kube-system", doc(action));
            assert_eq!(rule, "platform");
            assert!(msg.contains("allowEscalation"), "{msg}");
        }
    }

    #[test]
    fn roles_an_inline_policy_assumes_must_be_allowed_targets() {
        let doc = |action: &str, resource: &str| {
            json!({"role": {"inlinePolicies": {"p": {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}}}})
        };
        let deploy = "arn:aws:iam::111122223333:role/deploy";
        let tenant = [("tenant", "yes")];
        // teams allows targets in 444455556666 only; platform allows none.
        // `*:AssumeRole` is also an IAM write name pattern, which platform allows.
        for action in [
            "sts:AssumeRole",
            "sts:TagSession",
            "sts:*",
            "sts:Assume*",
            "*:AssumeRole",
        ] {
            let namespaces: &[&str] = if action.starts_with('*') {
                &["kube-system"]
            } else {
                &["team-a", "kube-system"]
            };
            for &ns in namespaces {
                let Err(Error::PolicyDenied { field, message, .. }) =
                    eval(ns, &tenant, doc(action, deploy))
                else {
                    panic!("{ns}: {action} on {deploy} allowed");
                };
                assert_eq!(field, "spec.role.inlinePolicies.p.Statement[0]");
                assert!(message.contains(deploy), "{message}");
                assert!(message.contains("allowedTargetRoleArns"), "{message}");
            }
            if namespaces.len() == 2 {
                eval(
                    "team-a",
                    &tenant,
                    doc(action, "arn:aws:iam::444455556666:role/data"),
                )
                .expect("an allowed target");
            }
        }
        // A role pattern reaching past the allowed globs.
        let Err(Error::PolicyDenied { message, .. }) = eval(
            "team-a",
            &tenant,
            doc("sts:AssumeRole", "arn:aws:iam::*:role/data"),
        ) else {
            panic!("every account's role allowed");
        };
        assert!(message.contains("arn:aws:iam::*:role/data"), "{message}");
        // Resources naming no role are not targets.
        eval("kube-system", &[], doc("sts:AssumeRole", "arn:aws:s3:::b")).expect("no role");

        // Session policies are checked the same way.
        let rules = GuardrailConfig::parse(
            r#"
rules:
- name: s
  namespaces: [s]
  sessionPolicies: {allowed: true}
  allowedTargetRoleArns: ["arn:aws:iam::444455556666:role/*"]
  allowEscalation: [anyAction]
- name: any-role
  namespaces: [a]
  inlinePolicies: {allowed: true}
  allowEscalation: [assumeRoleAnyResource]
"#,
        )
        .expect("config");
        let session = |resource: &str| {
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "NotAction": "s3:*", "Resource": resource}]})
        };
        let s = &rules.rules[0];
        let check = |doc: &Value| {
            check_document(
                s,
                "sessionPolicy",
                doc,
                &s.session_policies,
                "sessionPolicies",
            )
        };
        // anyAction allows the NotAction statement, not the roles it reaches.
        let Err(Error::PolicyDenied { field, message, .. }) = check(&session(deploy)) else {
            panic!("NotAction reaching {deploy} allowed");
        };
        assert_eq!(field, "spec.sessionPolicy.Statement[0]");
        assert!(message.contains(deploy), "{message}");
        check(&session("arn:aws:iam::444455556666:role/data")).expect("an allowed target");
        // allowEscalation: [assumeRoleAnyResource] lets any role be assumed.
        let any_role = &rules.rules[1];
        for resource in [deploy, "*"] {
            check_document(
                any_role,
                "role.inlinePolicies.p",
                &doc("sts:AssumeRole", resource)["role"]["inlinePolicies"]["p"],
                &any_role.inline_policies,
                "inlinePolicies",
            )
            .expect("any role allowed");
        }
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = GuardrailConfig::parse(include_str!("../config/guardrails.example.yaml"))
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
    fn the_shipped_manager_configmap_denies_everything() {
        let manifest: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../config/manager/guardrails.yaml"))
                .expect("config/manager/guardrails.yaml");
        let text = manifest["data"]["guardrails.yaml"]
            .as_str()
            .expect("data.guardrails.yaml");
        assert!(text.contains("config/guardrails.example.yaml"), "{text}");
        let config = GuardrailConfig::parse(text).expect("valid configuration");
        assert!(config.rules.is_empty());
    }

    #[test]
    fn the_readme_install_guardrails_admit_the_sample_they_are_for() {
        let readme = include_str!("../README.md");
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
            serde_yaml::from_str(include_str!("../config/samples/s3_reader.yaml")).expect("sample");
        let mut b: PodIdentityBinding =
            serde_json::from_value(serde_json::to_value(sample).expect("JSON")).expect("binding");
        b.metadata.namespace = Some("default".into());
        evaluate(&b, &BTreeMap::new(), &config).expect("the sample is allowed in default");
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

    #[test]
    fn the_file_is_reloaded_when_it_changes_and_bad_versions_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("guardrails.yaml");
        std::fs::write(&path, "rules: [{name: a, namespaces: [x]}]").expect("write");
        let src = GuardrailSource::from_file(&path).expect("load");
        assert_eq!(src.current().rules[0].name, "a");
        let bump = |text: &str, secs: u64| {
            std::fs::write(&path, text).expect("write");
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .expect("open");
            f.set_modified(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .expect("mtime");
        };
        bump("rules: [{name: b, namespaces: [x]}]", 1_000);
        assert!(src.reload());
        assert_eq!(src.current().rules[0].name, "b");
        assert!(!src.reload(), "unchanged file");
        bump("rules: [{name: c}]", 2_000);
        assert!(!src.reload());
        assert_eq!(src.current().rules[0].name, "b", "invalid file ignored");
        assert!(GuardrailSource::from_file(dir.path().join("missing.yaml")).is_err());
    }
}
