//! What the guardrails' unit tests share: a binding, a configuration of two rules and
//! its evaluation.

use serde_json::Value;

use super::evaluate::{Effects, evaluate};
use super::rules::GuardrailConfig;
use crate::crd::{PodIdentityBinding, PodIdentityBindingSpec};
use crate::{Error, Result};

pub(super) fn binding(ns: &str, spec: Value) -> PodIdentityBinding {
    let spec: PodIdentityBindingSpec = serde_json::from_value(spec).expect("spec");
    let mut b = PodIdentityBinding::new("app", spec);
    b.metadata.namespace = Some(ns.into());
    b
}

pub(super) const CONFIG: &str = r#"
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

pub(super) fn eval(ns: &str, labels: &[(&str, &str)], spec: Value) -> Result<Effects> {
    let config = GuardrailConfig::parse(CONFIG).expect("config");
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    evaluate(&binding(ns, spec), &labels, &config)
}

pub(super) fn denial(ns: &str, spec: Value) -> (String, String, String) {
    match eval(ns, &[], spec) {
        Err(Error::PolicyDenied {
            rule,
            field,
            message,
        }) => (rule, field, message),
        other => panic!("expected PolicyDenied, got {other:?}"),
    }
}
