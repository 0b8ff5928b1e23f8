//! Finds the statements of a permissions policy that let its holder raise its own AWS
//! power: any action (`*`, or `Allow` with `NotAction`), all of IAM (`iam:*`),
//! `iam:PassRole` or `sts:AssumeRole` on any resource, and IAM write actions.
//!
//! Action patterns are matched as IAM does (case-insensitive, `*` and `?`), so
//! `iam:Pass*` counts as `iam:PassRole`. `Deny` statements never escalate. IAM actions
//! whose name starts with `Get`, `List`, `Generate` or `Simulate` are reads; every other
//! IAM action is a write.
//!
//! `Allow` with `NotAction` grants every action but those listed, so it counts as any
//! action whatever its resources; `Allow` with `NotResource` grants its actions on every
//! resource but those listed, so it counts as `Resource: "*"`.
//!
//! Conditions are not evaluated: a `Condition` block never removes or narrows a finding,
//! since whether it holds at request time (source IP, tags, MFA ...) is not known here.
//!
//! A resource counts as any resource when it is `*` or a pattern naming every role of
//! an account (`arn:aws:iam::111122223333:role/*`, `arn:aws:iam::*:role/*`).
//!
//! Not implemented: other wide patterns (`arn:aws:iam::*:role/team-*` is taken as
//! narrow), and the service-specific meaning of resources for non-IAM actions.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::glob_match;

/// A kind of grant that escalates; a guardrail rule may allow each explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Escalation {
    /// `Action: "*"`, or `Allow` with `NotAction`.
    AnyAction,
    /// `iam:*`.
    IamAll,
    /// `iam:PassRole` on `*`.
    PassRoleAnyResource,
    /// `sts:AssumeRole` on `*`.
    AssumeRoleAnyResource,
    /// Any IAM action that changes something (including `iam:PassRole`).
    IamWrite,
}

impl Escalation {
    pub fn as_str(self) -> &'static str {
        match self {
            Escalation::AnyAction => "anyAction",
            Escalation::IamAll => "iamAll",
            Escalation::PassRoleAnyResource => "passRoleAnyResource",
            Escalation::AssumeRoleAnyResource => "assumeRoleAnyResource",
            Escalation::IamWrite => "iamWrite",
        }
    }
}

/// One escalating grant: what kind, where (`Statement[i]`) and which action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: Escalation,
    pub statement: usize,
    pub action: String,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_iam_read(action_name: &str) -> bool {
    ["get", "list", "generate", "simulate"]
        .iter()
        .any(|p| action_name.starts_with(p))
}

/// True for `*`, and for an ARN pattern that names every role of an account (or of
/// every account): `arn:aws:iam::111122223333:role/*`, `arn:aws:iam::*:role/*`,
/// `arn:*:iam::*:*`. Such a resource is as broad as `*` for `iam:PassRole` and
/// `sts:AssumeRole`.
fn covers_every_role(pattern: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let [arn, _partition, service, _region, _account, resource] = parts[..] else {
        return false;
    };
    // Two roles no pattern written for particular roles would match both of.
    glob_match(arn, "arn")
        && glob_match(service, "iam")
        && glob_match(resource, "role/a")
        && glob_match(resource, "role/zq-9/Deep/Path-x")
}

/// Every escalating grant of the document, in statement order.
pub fn find(doc: &Value) -> Vec<Finding> {
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    };
    let mut found = Vec::new();
    for (i, st) in statements.into_iter().enumerate() {
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            continue;
        }
        let mut push = |kind, action: &str| {
            found.push(Finding {
                kind,
                statement: i,
                action: action.to_owned(),
            })
        };
        if st.get("NotAction").is_some() {
            push(Escalation::AnyAction, "NotAction");
            continue;
        }
        let any_resource = st.get("NotResource").is_some()
            || strings(st.get("Resource"))
                .iter()
                .any(|r| covers_every_role(r));
        for action in strings(st.get("Action")) {
            let a = action.to_ascii_lowercase();
            if a == "*" || a == "*:*" {
                push(Escalation::AnyAction, &action);
                continue;
            }
            if a == "iam:*" {
                push(Escalation::IamAll, &action);
                continue;
            }
            if any_resource && glob_match(&a, "iam:passrole") {
                push(Escalation::PassRoleAnyResource, &action);
            }
            if any_resource && glob_match(&a, "sts:assumerole") {
                push(Escalation::AssumeRoleAnyResource, &action);
            }
            if let Some(name) = a.strip_prefix("iam:") {
                // A pattern such as `Get*` stays a read; `*Policy` reaches writes.
                if !is_iam_read(name) || name.starts_with('*') {
                    push(Escalation::IamWrite, &action);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(statement: Value) -> Vec<Escalation> {
        find(&json!({"Version": "2012-10-17", "Statement": [statement]}))
            .into_iter()
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn each_pattern_is_found() {
        use Escalation::*;
        let allow = |a: Value, r: Value| json!({"Effect": "Allow", "Action": a, "Resource": r});
        assert_eq!(kinds(allow(json!("*"), json!("*"))), [AnyAction]);
        assert_eq!(
            kinds(json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"})),
            [AnyAction]
        );
        assert_eq!(
            kinds(allow(json!("IAM:*"), json!("arn:aws:s3:::b"))),
            [IamAll]
        );
        assert_eq!(
            kinds(allow(json!("iam:PassRole"), json!("*"))),
            [PassRoleAnyResource, IamWrite]
        );
        assert_eq!(
            kinds(allow(json!(["iam:Pass*"]), json!("*"))),
            [PassRoleAnyResource, IamWrite]
        );
        assert_eq!(
            kinds(allow(json!("sts:AssumeRole"), json!("*"))),
            [AssumeRoleAnyResource]
        );
        assert_eq!(
            kinds(allow(
                json!("iam:CreateUser"),
                json!("arn:aws:iam::1:user/x")
            )),
            [IamWrite]
        );
        assert_eq!(kinds(allow(json!("iam:*Policy"), json!("*"))), [IamWrite]);
    }

    #[test]
    fn reads_narrow_grants_and_denies_are_not_escalations() {
        let allow = |a: Value, r: Value| json!({"Effect": "Allow", "Action": a, "Resource": r});
        assert!(kinds(allow(json!(["s3:GetObject", "s3:*"]), json!("*"))).is_empty());
        assert!(kinds(allow(json!(["iam:GetRole", "iam:List*"]), json!("*"))).is_empty());
        assert!(
            kinds(allow(
                json!("sts:AssumeRole"),
                json!("arn:aws:iam::111122223333:role/x")
            ))
            .is_empty()
        );
        assert!(kinds(json!({"Effect": "Deny", "Action": "*", "Resource": "*"})).is_empty());
        assert!(
            kinds(json!({"Effect": "Deny", "NotAction": "s3:*", "NotResource": "arn:aws:s3:::b"}))
                .is_empty()
        );
    }

    #[test]
    fn not_action_and_not_resource_are_broad() {
        use Escalation::*;
        // NotAction grants everything else, even on a single resource.
        assert_eq!(
            kinds(
                json!({"Effect": "Allow", "NotAction": ["s3:DeleteBucket"], "Resource": "arn:aws:s3:::b"})
            ),
            [AnyAction]
        );
        assert_eq!(
            kinds(
                json!({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::b"})
            ),
            [AnyAction]
        );
        // NotResource is every resource but those named: as broad as "*".
        let not_resource = |a: &str| json!({"Effect": "Allow", "Action": a, "NotResource": "arn:aws:iam::111122223333:role/admin"});
        assert_eq!(
            kinds(not_resource("iam:PassRole")),
            [PassRoleAnyResource, IamWrite]
        );
        assert_eq!(
            kinds(not_resource("sts:AssumeRole")),
            [AssumeRoleAnyResource]
        );
        assert!(kinds(not_resource("s3:GetObject")).is_empty());
    }

    #[test]
    fn patterns_naming_every_role_count_as_any_resource() {
        use Escalation::*;
        for broad in [
            "*",
            "arn:aws:iam::111122223333:role/*",
            "arn:aws:iam::*:role/*",
            "arn:*:iam::*:*",
            "arn:aws-cn:iam::111122223333:role*",
        ] {
            assert!(covers_every_role(broad), "{broad}");
            assert_eq!(
                kinds(json!({"Effect": "Allow", "Action": "iam:PassRole", "Resource": broad})),
                [PassRoleAnyResource, IamWrite],
                "{broad}"
            );
            assert_eq!(
                kinds(
                    json!({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ["arn:aws:s3:::b", broad]})
                ),
                [AssumeRoleAnyResource],
                "{broad}"
            );
        }
        for narrow in [
            "arn:aws:iam::111122223333:role/app",
            "arn:aws:iam::111122223333:role/team-*",
            "arn:aws:iam::*:role/pod-identity/prod/*",
            "arn:aws:s3:::*",
            "not-an-arn",
        ] {
            assert!(!covers_every_role(narrow), "{narrow}");
        }
    }

    #[test]
    fn conditions_never_reduce_a_finding() {
        let condition = json!({"StringEquals": {"aws:RequestedRegion": "eu-west-1"},
            "Bool": {"aws:MultiFactorAuthPresent": "true"}});
        let statements = [
            json!({"Effect": "Allow", "Action": "*", "Resource": "*"}),
            json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}),
            json!({"Effect": "Allow", "Action": "iam:*", "Resource": "*"}),
            json!({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}),
            json!({"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": "arn:aws:iam::1:role/x"}),
            json!({"Effect": "Allow", "Action": "iam:CreateRole", "Resource": "arn:aws:iam::1:role/x"}),
        ];
        for st in statements {
            let plain = kinds(st.clone());
            assert!(!plain.is_empty(), "{st}");
            let mut conditioned = st.clone();
            conditioned["Condition"] = condition.clone();
            assert_eq!(kinds(conditioned), plain, "{st}");
            // Even a condition that could never hold is not evaluated.
            let mut impossible = st.clone();
            impossible["Condition"] = json!({"Null": {"aws:SourceIp": "true"}, "IpAddress": {"aws:SourceIp": "10.0.0.1/32"}});
            assert_eq!(kinds(impossible), plain, "{st}");
        }
    }
}
