//! The policy documents a binding carries (inline and session policies, a preset's
//! inline document), checked under the rule governing it: allowed at all, within its
//! size, and not escalating beyond what the rule allows ([`check_escalation`]).

use super::escalation::{self, Escalation};
use super::rules::{PolicyAllowance, Rule, denied};
use super::targets;
use crate::Result;

/// A document of the kind `key` (`inlinePolicies`, `sessionPolicies`) at `field`:
/// refused when the rule does not allow the kind, when it is over the rule's size, or
/// when its escalation analysis refuses it.
pub(super) fn check_document(
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
pub(super) fn check_escalation(rule: &Rule, field: &str, doc: &serde_json::Value) -> Result<()> {
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
        for t in targets::role_targets(doc) {
            if targets::targets_within(&rule.allowed_target_role_arns, t.resource.as_deref()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::guardrails::fixtures::{denial, eval};
    use crate::guardrails::rules::GuardrailConfig;
    use serde_json::{Value, json};

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
}
