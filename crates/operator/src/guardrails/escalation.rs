//! Finds the statements of a permissions policy that let its holder raise its own AWS
//! power: any action (`*`, or `Allow` with `NotAction`), all of IAM (`iam:*`),
//! `iam:PassRole` or `sts:AssumeRole` on any resource, and IAM write actions. The roles
//! a policy lets its holder assume are listed by [`super::targets`].
//!
//! Action patterns are matched as IAM does (case-insensitive, `*` and `?`, the
//! service prefix included), and a pattern counts when any action it could match is
//! sensitive: `iam:Pass*` and `*:PassRole` count as `iam:PassRole`, `i*:*` as all of
//! IAM, `*:AttachRolePolicy` and `iam:Put?olePolicy` as IAM writes. `Deny` statements
//! never escalate. IAM actions whose name starts with `Get`, `List`, `Generate` or
//! `Simulate` are reads; every other IAM action name is a write, so a pattern is an IAM
//! write when some string it matches is `iam:` followed by a name that does not start
//! with a read prefix (`iam:Get*` is not; `iam:*Policy` and `iam:G*` are).
//!
//! `Allow` with `NotAction` grants every action but those listed, so it counts as any
//! action whatever its resources; `Allow` with `NotResource` grants its actions on every
//! resource but those listed, so it counts as `Resource: "*"`.
//!
//! Conditions are not evaluated: a `Condition` block never removes or narrows a finding,
//! since whether it holds at request time (source IP, tags, MFA ...) is not known here.
//! One exception: `iam:CreateServiceLinkedRole`, written exactly, in a statement whose
//! condition limits `iam:AWSServiceName` (`StringEquals` or `StringLike`) to named
//! service principals without wildcards, as add-ons document it (the load balancer
//! controller's `elasticloadbalancing.amazonaws.com`). The role it makes is trusted by
//! that service only and carries the policy AWS defines for it, so the holder gains
//! nothing; the same action without that condition is an IAM write.
//!
//! A resource counts as any resource when it is `*` or a pattern naming every role of
//! an account (`arn:aws:iam::111122223333:role/*`, `arn:aws:iam::*:role/*`).
//!
//! Not implemented: other wide patterns (`arn:aws:iam::*:role/team-*` is taken as
//! narrow for the findings; [`super::targets::role_targets`] still lists it), and the
//! service-specific meaning of resources for non-IAM actions.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::globs::glob_covers;
use super::statements::{allows, statements, strings};
use crate::glob::glob_match;

/// A kind of grant that escalates; a guardrail rule may allow each explicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Escalation {
    /// An action pattern matching every action (`*`, `*:*`), or `Allow` with `NotAction`.
    AnyAction,
    /// An action pattern matching every IAM action (`iam:*`, `i*:*`).
    IamAll,
    /// `iam:PassRole` (or a pattern matching it) on `*`.
    PassRoleAnyResource,
    /// `sts:AssumeRole` (or a pattern matching it) on `*`.
    AssumeRoleAnyResource,
    /// An action pattern that could match an IAM action that changes something
    /// (including `iam:PassRole`).
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

/// Read prefixes of IAM action names (lowercase).
const IAM_READS: [&str; 4] = ["get", "list", "generate", "simulate"];

/// Where a string stands on the way to being an IAM write action name.
#[derive(Clone, PartialEq, Eq, Hash)]
enum IamName {
    /// This many characters of `iam:` read.
    Service(usize),
    /// The action name so far, still a start of a read prefix.
    Name(String),
    /// Past every read prefix: a write.
    Write,
}

impl IamName {
    fn step(&self, c: char) -> Option<IamName> {
        match self {
            IamName::Service(k) => {
                let want = "iam:".chars().nth(*k)?;
                (c == want).then(|| {
                    if *k + 1 == 4 {
                        IamName::Name(String::new())
                    } else {
                        IamName::Service(k + 1)
                    }
                })
            }
            IamName::Name(_) | IamName::Write if !c.is_ascii_alphanumeric() => None,
            IamName::Name(so_far) => {
                let name = format!("{so_far}{c}");
                if IAM_READS.contains(&name.as_str()) {
                    None
                } else if IAM_READS.iter().any(|r| r.starts_with(&name)) {
                    Some(IamName::Name(name))
                } else {
                    Some(IamName::Write)
                }
            }
            IamName::Write => Some(IamName::Write),
        }
    }
}

/// True when a lowercase action pattern matches some IAM write action name: a product
/// of the pattern's positions with [`IamName`], a `*` or `?` standing for any letter.
fn could_be_iam_write(pattern: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let alphabet: Vec<char> = ('a'..='z').chain(['0', ':']).collect();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(0, IamName::Service(0))]);
    while let Some((i, state)) = queue.pop_front() {
        if !seen.insert((i, state.clone())) {
            continue;
        }
        if i == p.len() {
            if state == IamName::Write {
                return true;
            }
            continue;
        }
        let (chars, next) = match p[i] {
            '*' => {
                queue.push_back((i + 1, state.clone()));
                (alphabet.clone(), i)
            }
            '?' => (alphabet.clone(), i + 1),
            c => (vec![c], i + 1),
        };
        for c in chars {
            if let Some(s) = state.step(c) {
                queue.push_back((next, s));
            }
        }
    }
    false
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

/// True when the statement's condition limits `iam:AWSServiceName` to service
/// principals named without wildcards.
fn for_named_services(st: &Value) -> bool {
    let Some(Value::Object(condition)) = st.get("Condition") else {
        return false;
    };
    condition.iter().any(|(op, block)| {
        (op == "StringEquals" || op == "StringLike")
            && block.as_object().is_some_and(|keys| {
                keys.iter().any(|(k, v)| {
                    let names = strings(Some(v));
                    k.eq_ignore_ascii_case("iam:AWSServiceName")
                        && !names.is_empty()
                        && names.iter().all(|n| {
                            (n.ends_with(".amazonaws.com") || n.ends_with(".amazonaws.com.cn"))
                                && n.chars().all(|c| {
                                    c.is_ascii_lowercase()
                                        || c.is_ascii_digit()
                                        || c == '.'
                                        || c == '-'
                                })
                        })
                })
            })
    })
}

/// Every escalating grant of the document, in statement order.
pub fn find(doc: &Value) -> Vec<Finding> {
    let mut found = Vec::new();
    for (i, st) in statements(doc).into_iter().enumerate() {
        if !allows(st) {
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
            // A pattern too costly to compare counts as reaching everything.
            if glob_covers(&a, "?*:?*") != Some(false) {
                push(Escalation::AnyAction, &action);
                continue;
            }
            if glob_covers(&a, "iam:?*") != Some(false) {
                push(Escalation::IamAll, &action);
                continue;
            }
            if any_resource && glob_match(&a, "iam:passrole") {
                push(Escalation::PassRoleAnyResource, &action);
            }
            if any_resource && glob_match(&a, "sts:assumerole") {
                push(Escalation::AssumeRoleAnyResource, &action);
            }
            if a == "iam:createservicelinkedrole" && for_named_services(st) {
                continue;
            }
            if could_be_iam_write(&a) {
                push(Escalation::IamWrite, &action);
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
    fn service_linked_roles_for_named_services_only_are_not_escalations() {
        let slr = |condition: Value| {
            kinds(
                json!({"Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*", "Condition": condition}),
            )
        };
        let named =
            json!({"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}});
        assert_eq!(slr(named), []);
        let like = json!({"StringLike": {"iam:AWSServiceName": ["vpc-lattice.amazonaws.com"]}});
        assert_eq!(slr(like), []);
        use Escalation::IamWrite;
        assert_eq!(
            slr(json!({"StringLike": {"iam:AWSServiceName": "*"}})),
            [IamWrite]
        );
        assert_eq!(
            slr(json!({"StringNotEquals": {"iam:AWSServiceName": "x.amazonaws.com"}})),
            [IamWrite]
        );
        assert_eq!(
            slr(json!({"StringEquals": {"aws:RequestedRegion": "eu-west-1"}})),
            [IamWrite]
        );
        assert_eq!(
            kinds(
                json!({"Effect": "Allow", "Action": "iam:CreateServiceLinkedRole", "Resource": "*"})
            ),
            [IamWrite]
        );
        // A pattern reaching other IAM writes is not let through by the condition.
        assert_eq!(
            kinds(
                json!({"Effect": "Allow", "Action": "iam:Create*", "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}}})
            ),
            [IamWrite]
        );
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

    fn allow(a: Value, r: Value) -> Value {
        json!({"Effect": "Allow", "Action": a, "Resource": r})
    }

    #[test]
    fn action_patterns_reaching_iam_are_found_whatever_their_form() {
        use Escalation::*;
        let bucket = json!("arn:aws:s3:::b");
        // A wildcard service prefix reaches IAM.
        assert_eq!(kinds(allow(json!("i*:*"), bucket.clone())), [IamAll]);
        assert_eq!(kinds(allow(json!("?am:*"), bucket.clone())), [IamAll]);
        assert_eq!(
            kinds(allow(json!("*:AttachRolePolicy"), bucket.clone())),
            [IamWrite]
        );
        assert_eq!(
            kinds(allow(json!("ia?:PutRolePolicy"), bucket.clone())),
            [IamWrite]
        );
        assert_eq!(kinds(allow(json!("*:Put*"), bucket.clone())), [IamWrite]);
        // Case and `?` inside the action name.
        assert_eq!(
            kinds(allow(json!("IAM:PutRolePolicy"), bucket.clone())),
            [IamWrite]
        );
        assert_eq!(
            kinds(allow(json!("iam:Put?olePolicy"), bucket.clone())),
            [IamWrite]
        );
        assert_eq!(kinds(allow(json!("iam:Put*"), bucket.clone())), [IamWrite]);
        assert_eq!(
            kinds(allow(json!("iam:?etRole"), bucket.clone())),
            [IamWrite]
        );
        // PassRole reached through a wildcard service is a write too.
        assert_eq!(
            kinds(allow(json!("*:PassRole"), json!("*"))),
            [PassRoleAnyResource, IamWrite]
        );
        // Patterns matching every action, however written.
        for any in ["*", "*:*", "?*", "*?", "?*:?*", "**"] {
            assert_eq!(
                kinds(allow(json!(any), bucket.clone())),
                [AnyAction],
                "{any}"
            );
        }
        // Reads stay reads; other services and sts stay out of IAM.
        for read in [
            "iam:Get*",
            "iam:List?oles",
            "*:GetObject",
            "iam:Simulate*",
            "s?:Put*",
            "sts:*",
        ] {
            assert!(
                kinds(allow(json!(read), bucket.clone())).is_empty(),
                "{read}"
            );
        }
    }
}
