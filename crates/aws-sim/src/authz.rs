//! Authorization of the simulator's calls against the caller's identity policy, as IAM
//! decides it: an explicit Deny wins, else some statement must Allow (evaluation by
//! `iam-rs`: Action/NotAction, Resource/NotResource with wildcards, condition operators
//! with `ForAnyValue:`/`ForAllValues:`, `...IfExists` and `Null`). A denied call
//! answers as AWS does: `AccessDenied` (IAM) or `AccessDeniedException` (EKS), naming
//! the caller, the action and the resource.

use std::collections::BTreeMap;

use iam_rs::{Arn, Context, ContextValue, Decision, IAMPolicy, IAMRequest, PolicyEvaluator};
use iam_rs::{Principal, PrincipalId};
use serde_json::Value;

use crate::faults::aws_error;
use pod_identity_aws::Tags;
use pod_identity_aws::{Error, Result};

/// The caller's identity policy, ready to evaluate requests.
pub struct Authorizer {
    evaluator: PolicyEvaluator,
    caller: String,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("caller", &self.caller)
            .finish_non_exhaustive()
    }
}

/// The request context of one call: the condition keys AWS sets for it.
#[derive(Clone, Debug, Default)]
pub struct Keys(BTreeMap<String, ContextValue>);

impl Keys {
    pub fn new() -> Self {
        Keys::default()
    }

    pub fn string(mut self, key: &str, value: &str) -> Self {
        self.0
            .insert(key.to_owned(), ContextValue::String(value.to_owned()));
        self
    }

    /// `aws:ResourceTag/<key>` for each tag the resource carries.
    pub fn resource_tags(mut self, tags: &Tags) -> Self {
        for (k, v) in tags {
            self.0.insert(
                format!("aws:ResourceTag/{k}"),
                ContextValue::String(v.clone()),
            );
        }
        self
    }

    /// `aws:RequestTag/<key>` for each tag of the request, and `aws:TagKeys`.
    pub fn request_tags(mut self, tags: &Tags) -> Self {
        for (k, v) in tags {
            self.0.insert(
                format!("aws:RequestTag/{k}"),
                ContextValue::String(v.clone()),
            );
        }
        self.tag_keys(tags.keys().cloned().collect())
    }

    /// `aws:TagKeys`: the tag keys in the request.
    pub fn tag_keys(mut self, keys: Vec<String>) -> Self {
        if !keys.is_empty() {
            self.0
                .insert("aws:TagKeys".into(), ContextValue::StringList(keys));
        }
        self
    }
}

impl Authorizer {
    /// `policy` is an identity policy document; `caller` the ARN the denials name.
    pub fn new(policy: &Value, caller: &str) -> Result<Authorizer> {
        let parsed = IAMPolicy::from_json(&policy.to_string())
            .map_err(|e| Error::AwsConfig(format!("the simulator's identity policy: {e}")))?;
        Ok(Authorizer {
            evaluator: PolicyEvaluator::with_policies(vec![parsed]),
            caller: caller.to_owned(),
        })
    }

    /// True when the policy allows `action` on `resource` with these condition keys.
    pub fn allows(&self, action: &str, resource: &str, keys: &Keys) -> bool {
        self.decide(action, resource, keys) == Decision::Allow
    }

    /// IAM's decision: Allow, an explicit Deny, or no statement applies (implicit deny).
    fn decide(&self, action: &str, resource: &str, keys: &Keys) -> Decision {
        let Ok(arn) = Arn::parse(resource) else {
            return Decision::NotApplicable;
        };
        let mut context = Context::new();
        for (k, v) in &keys.0 {
            context.insert(k.clone(), v.clone());
        }
        let request = IAMRequest::new_with_context(
            Principal::Aws(PrincipalId::String(self.caller.clone())),
            action,
            arn,
            context,
        );
        self.evaluator
            .evaluate(&request)
            .map_or(Decision::NotApplicable, |r| r.decision)
    }

    /// `Ok` when allowed, else the error AWS answers `operation` with.
    pub fn check(&self, operation: &str, action: &str, resource: &str, keys: &Keys) -> Result<()> {
        let decision = self.decide(action, resource, keys);
        if decision == Decision::Allow {
            return Ok(());
        }
        // IAM says which kind of denial it was.
        let why = if decision == Decision::Deny {
            "with an explicit deny in an identity-based policy".to_owned()
        } else {
            format!("because no identity-based policy allows the {action} action")
        };
        let (code, message) = if action.starts_with("eks:") {
            (
                "AccessDeniedException",
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
                    self.caller
                ),
            )
        } else {
            (
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: {action} on resource: {resource} {why}",
                    self.caller
                ),
            )
        };
        Err(aws_error(operation, code, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn authorizer(policy: Value) -> Authorizer {
        Authorizer::new(&policy, "arn:aws:sts::111122223333:assumed-role/op/s").expect("policy")
    }

    #[test]
    fn actions_resources_and_conditions_decide() {
        let a = authorizer(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:*RolePolicy", "Resource": "arn:aws:iam::*:role/pod-identity/*"},
            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*",
             "Condition": {"StringEquals": {"iam:PassedToService": "pods.eks.amazonaws.com"}}},
            {"Effect": "Allow", "Action": "iam:TagRole", "Resource": "*",
             "Condition": {"ForAllValues:StringLike": {"aws:TagKeys": ["podidentity.dev/*"]}}},
            {"Effect": "Deny", "Action": "iam:DeleteRolePolicy", "Resource": "*",
             "Condition": {"StringNotEquals": {"aws:ResourceTag/owner": "me"}}},
        ]}));
        let role = "arn:aws:iam::111122223333:role/pod-identity/prod/r";
        let other = "arn:aws:iam::111122223333:role/deploy";
        let keys = Keys::new();
        assert!(a.allows("iam:PutRolePolicy", role, &keys));
        assert!(!a.allows("iam:PutRolePolicy", other, &keys));
        assert!(!a.allows("iam:CreateRole", role, &keys));
        let to_eks = Keys::new().string("iam:PassedToService", "pods.eks.amazonaws.com");
        let to_ec2 = Keys::new().string("iam:PassedToService", "ec2.amazonaws.com");
        assert!(a.allows("iam:PassRole", other, &to_eks));
        assert!(!a.allows("iam:PassRole", other, &to_ec2));
        assert!(!a.allows("iam:PassRole", other, &keys));
        let ours: Tags = [("podidentity.dev/cluster".to_owned(), "prod".to_owned())].into();
        let theirs: Tags = [("team".to_owned(), "x".to_owned())].into();
        assert!(a.allows("iam:TagRole", other, &Keys::new().request_tags(&ours)));
        assert!(!a.allows("iam:TagRole", other, &Keys::new().request_tags(&theirs)));
        let mine: Tags = [("owner".to_owned(), "me".to_owned())].into();
        assert!(a.allows(
            "iam:DeleteRolePolicy",
            role,
            &Keys::new().resource_tags(&mine)
        ));
        assert!(
            !a.allows("iam:DeleteRolePolicy", role, &keys),
            "explicit deny wins"
        );
    }

    #[test]
    fn denials_answer_as_aws() {
        let a = authorizer(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"}]}));
        let e = a
            .check(
                "GetRolePolicy",
                "iam:GetRolePolicy",
                "arn:aws:iam::111122223333:role/deploy",
                &Keys::new(),
            )
            .expect_err("denied");
        let aws = e.aws().expect("an AWS error");
        assert_eq!(aws.code, "AccessDenied");
        assert!(
            aws.message
                .contains("iam:GetRolePolicy on resource: arn:aws:iam::111122223333:role/deploy")
        );
        let e = a
            .check(
                "DescribeCluster",
                "eks:DescribeCluster",
                "arn:aws:eks:us-east-1:111122223333:cluster/prod",
                &Keys::new(),
            )
            .expect_err("denied");
        assert_eq!(e.aws().expect("AWS").code, "AccessDeniedException");
        let explicit = authorizer(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:DeleteRole", "Resource": "*"}]}));
        let e = explicit
            .check(
                "DeleteRole",
                "iam:DeleteRole",
                "arn:aws:iam::111122223333:role/deploy",
                &Keys::new(),
            )
            .expect_err("denied");
        let message = &e.aws().expect("AWS").message;
        assert!(
            message.ends_with("with an explicit deny in an identity-based policy"),
            "{message}"
        );
    }
}
