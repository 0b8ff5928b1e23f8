//! Finds the statements of a permissions policy that let its holder raise its own AWS
//! power: any action (`*`, or `Allow` with `NotAction`), all of IAM (`iam:*`),
//! `iam:PassRole` or `sts:AssumeRole` on any resource, and IAM write actions; and lists
//! the roles a policy lets its holder assume ([`role_targets`]).
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
//! narrow for the findings; [`role_targets`] still lists it), and the
//! service-specific meaning of resources for non-IAM actions.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// The actions that take a role's credentials or tag the session doing so; their
/// resource is the role.
pub const ROLE_ACTIONS: [&str; 2] = ["sts:AssumeRole", "sts:TagSession"];

/// A role resource reached by an `sts:AssumeRole` or `sts:TagSession` grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleTarget {
    pub statement: usize,
    /// The action pattern as written, or `NotAction`.
    pub action: String,
    /// The resource pattern as written; `None` for `NotResource` (every resource but
    /// those listed).
    pub resource: Option<String>,
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

fn statements(doc: &Value) -> Vec<&Value> {
    match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => Vec::new(),
    }
}

fn allows(st: &Value) -> bool {
    st.get("Effect").and_then(Value::as_str) == Some("Allow")
}

/// True when some string matches both globs (`*` any run of characters, `?` one).
pub fn globs_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(0, 0)]);
    while let Some((i, j)) = queue.pop_front() {
        if !seen.insert((i, j)) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return true;
        }
        // A `*` may stop matching.
        if a.get(i) == Some(&'*') {
            queue.push_back((i + 1, j));
        }
        if b.get(j) == Some(&'*') {
            queue.push_back((i, j + 1));
        }
        // Both sides read one character: a `*` stays, anything else moves on.
        let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) else {
            continue;
        };
        let wild = |c: char| c == '*' || c == '?';
        if wild(x) || wild(y) || x == y {
            let next = |c: char, k: usize| if c == '*' { k } else { k + 1 };
            queue.push_back((next(x, i), next(y, j)));
        }
    }
    false
}

/// The positions a glob can be at after reading `c` from `states`, `*`s skipped.
fn glob_step(glob: &[char], states: &[usize], c: Option<char>) -> Vec<usize> {
    let mut next: Vec<usize> = match c {
        None => states.to_vec(),
        Some(c) => states
            .iter()
            .filter_map(|&k| match glob.get(k) {
                Some('*') => Some(k),
                Some('?') => Some(k + 1),
                Some(&l) if l == c => Some(k + 1),
                _ => None,
            })
            .collect(),
    };
    let mut i = 0;
    while i < next.len() {
        if glob.get(next[i]) == Some(&'*') && !next.contains(&(next[i] + 1)) {
            next.push(next[i] + 1);
        }
        i += 1;
    }
    next.sort_unstable();
    next.dedup();
    next
}

/// How much work [`glob_covers`] may do (positions stepped over) before it gives up:
/// globs such as `*a??????????????????` have exponentially many sets of positions.
const COVER_BUDGET: usize = 1_000_000;

/// Whether every string `inner` matches, `outer` matches too (both globs: `*` any run
/// of characters, `?` one); `None` when that takes more than [`COVER_BUDGET`]. Exact:
/// the strings tried are made of the globs' own characters and one that neither names,
/// which every other character behaves like.
pub fn glob_covers(outer: &str, inner: &str) -> Option<bool> {
    let (p, t): (Vec<char>, Vec<char>) = (outer.chars().collect(), inner.chars().collect());
    let mut alphabet: Vec<char> = p
        .iter()
        .chain(&t)
        .copied()
        .filter(|c| *c != '*' && *c != '?')
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    // A character neither glob names.
    if let Some(other) = ('\u{E000}'..).find(|c| !alphabet.contains(c)) {
        alphabet.push(other);
    }
    let start = (glob_step(&t, &[0], None), glob_step(&p, &[0], None));
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([start]);
    let mut work = 0usize;
    while let Some((ts, ps)) = queue.pop_front() {
        if ts.is_empty() || !seen.insert((ts.clone(), ps.clone())) {
            continue;
        }
        if ts.contains(&t.len()) && !ps.contains(&p.len()) {
            return Some(false);
        }
        work += (ts.len() + ps.len() + 1) * alphabet.len();
        if work > COVER_BUDGET {
            return None;
        }
        for &c in &alphabet {
            queue.push_back((glob_step(&t, &ts, Some(c)), glob_step(&p, &ps, Some(c))));
        }
    }
    Some(true)
}

/// A policy variable (`${aws:username}`) is replaced when the request is made, so it
/// stands for any text here.
fn widen_variables(resource: &str) -> String {
    let mut out = String::new();
    let mut rest = resource;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('*');
                rest = &rest[start + end + 1..];
            }
            None => {
                out.push('*');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when every role a resource pattern can name is matched by one of `allowed`
/// (globs, as `allowedTargetRoleArns` are written): one of them alone must cover it.
/// `None` (`NotResource`) is never inside, nor is a pattern too costly to compare.
/// Policy variables count as `*`.
pub fn targets_within(allowed: &[String], resource: Option<&str>) -> bool {
    let Some(resource) = resource else {
        return false;
    };
    let resource = widen_variables(resource);
    allowed
        .iter()
        .any(|a| glob_covers(a, &resource) == Some(true))
}

/// True when a resource pattern may match some role's ARN. A role ARN has exactly five
/// colons (`arn:<partition>:iam::<account>:role/<path><name>`, no colon in a name or
/// path), so a pattern with five or more lines its colons up with the ARN's and is
/// compared segment by segment; one with fewer (`*`, `arn:*`) is compared as a whole,
/// its wildcards free to cover colons. Letters are compared without case; policy
/// variables count as `*`.
fn could_name_role(resource: &str) -> bool {
    let wide = widen_variables(resource).to_ascii_lowercase();
    let segments: Vec<&str> = wide.splitn(6, ':').collect();
    match segments[..] {
        [arn, _partition, service, region, _account, resource] => {
            globs_overlap(arn, "arn")
                && globs_overlap(service, "iam")
                && globs_overlap(region, "")
                && globs_overlap(resource, "role/*")
        }
        _ => globs_overlap(&wide, "arn:*:iam::*:role/*"),
    }
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

/// Every role resource the document lets its holder assume or tag a session for
/// ([`ROLE_ACTIONS`]), in statement order: each resource of an `Allow` statement one of
/// whose action patterns could match those actions (or whose `NotAction` leaves one of
/// them out), unless the resource can name no role. Policy variables count as `*`.
pub fn role_targets(doc: &Value) -> Vec<RoleTarget> {
    let role_actions: Vec<String> = ROLE_ACTIONS
        .iter()
        .map(|a| a.to_ascii_lowercase())
        .collect();
    let mut found = Vec::new();
    for (i, st) in statements(doc).into_iter().enumerate() {
        if !allows(st) {
            continue;
        }
        let action = if st.get("NotAction").is_some() {
            let excluded: Vec<String> = strings(st.get("NotAction"))
                .iter()
                .map(|a| a.to_ascii_lowercase())
                .collect();
            role_actions
                .iter()
                .any(|r| !excluded.iter().any(|e| glob_match(e, r)))
                .then(|| "NotAction".to_owned())
        } else {
            strings(st.get("Action")).into_iter().find(|a| {
                let a = a.to_ascii_lowercase();
                role_actions.iter().any(|r| glob_match(&a, r))
            })
        };
        let Some(action) = action else {
            continue;
        };
        if st.get("NotResource").is_some() {
            found.push(RoleTarget {
                statement: i,
                action,
                resource: None,
            });
            continue;
        }
        for resource in strings(st.get("Resource")) {
            if could_name_role(&resource) {
                found.push(RoleTarget {
                    statement: i,
                    action: action.clone(),
                    resource: Some(resource),
                });
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

    #[test]
    fn globs_overlap_and_cover_as_sets_of_strings() {
        for (a, b) in [
            ("*", "x"),
            ("a*", "*b"),
            ("a?c", "*c"),
            ("arn:*:iam::*:role/*", "*"),
        ] {
            assert!(globs_overlap(a, b) && globs_overlap(b, a), "{a} {b}");
        }
        for (a, b) in [
            ("a*", "b*"),
            ("arn:aws:s3:::b", "arn:*:iam::*:role/*"),
            ("a?", "a"),
        ] {
            assert!(!globs_overlap(a, b) && !globs_overlap(b, a), "{a} {b}");
        }
        let covers = [
            ("*", "anything*"),
            ("role/ok-*", "role/ok-a*"),
            ("role/ok-*", "role/ok-?"),
            ("?*", "*?"),
            ("*a*", "iam:?*"),
            ("x", "x"),
        ];
        for (outer, inner) in covers {
            assert_eq!(
                glob_covers(outer, inner),
                Some(true),
                "{outer} covers {inner}"
            );
        }
        let reaches_further = [
            ("role/ok-?", "role/ok-*"),
            ("role/ok-*", "role/*"),
            ("role/ok-*", "*"),
            ("a?", "a"),
            ("iam:?*", "iam:*"),
            ("*b", "*"),
        ];
        for (outer, inner) in reaches_further {
            assert_eq!(
                glob_covers(outer, inner),
                Some(false),
                "{outer} does not cover {inner}"
            );
        }
    }

    fn targets(statement: Value) -> Vec<(String, Option<String>)> {
        role_targets(&json!({"Version": "2012-10-17", "Statement": [statement]}))
            .into_iter()
            .map(|t| (t.action, t.resource))
            .collect()
    }

    #[test]
    fn every_role_an_assume_grant_reaches_is_listed() {
        let deploy = "arn:aws:iam::111122223333:role/deploy";
        for action in [
            "sts:AssumeRole",
            "sts:TagSession",
            "STS:assumerole",
            "sts:*",
            "sts:Assume*",
            "*",
            "*:AssumeRole",
            "s?s:*",
        ] {
            assert_eq!(
                targets(allow(
                    json!(["s3:GetObject", action]),
                    json!(["arn:aws:s3:::b", deploy])
                )),
                [(action.to_owned(), Some(deploy.to_owned()))],
                "{action}"
            );
        }
        // Not STS's role actions: nothing to list.
        for action in [
            "sts:GetCallerIdentity",
            "sts:AssumeRoleWithWebIdentity",
            "iam:*",
            "s3:*",
        ] {
            assert!(
                targets(allow(json!(action), json!(deploy))).is_empty(),
                "{action}"
            );
        }
        // NotAction that leaves sts:AssumeRole in, and NotResource.
        assert_eq!(
            targets(json!({"Effect": "Allow", "NotAction": "s3:*", "Resource": deploy})),
            [("NotAction".to_owned(), Some(deploy.to_owned()))]
        );
        assert!(
            targets(json!({"Effect": "Allow", "NotAction": ["sts:*"], "Resource": deploy}))
                .is_empty()
        );
        assert_eq!(
            targets(json!({"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": deploy})),
            [("sts:AssumeRole".to_owned(), None)]
        );
        // Resources that may name a role, a variable counting as anything.
        for resource in [
            "*",
            "arn:aws:iam::*:*",
            "arn:aws:iam::1:role/${aws:username}",
            "arn:${aws:x}",
        ] {
            assert_eq!(
                targets(allow(json!("sts:AssumeRole"), json!(resource))).len(),
                1,
                "{resource}"
            );
        }
        for no_role in [
            "arn:aws:s3:::b",
            "arn:aws:s3:::data/*",
            "arn:aws:iam::1:policy/team-*",
            "arn:aws:dynamodb:eu-west-1:1:table/t",
        ] {
            assert!(
                targets(allow(json!("sts:AssumeRole"), json!(no_role))).is_empty(),
                "{no_role}"
            );
        }
        assert!(
            targets(allow(
                json!("sts:AssumeRole"),
                json!("arn:aws:iam::1:user/x")
            ))
            .is_empty()
        );
        assert!(
            targets(json!({"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": deploy}))
                .is_empty()
        );
    }

    #[test]
    fn targets_are_within_the_allowed_globs_only_when_every_role_they_name_is() {
        let allowed = vec!["arn:aws:iam::444455556666:role/ok-*".to_owned()];
        for inside in [
            "arn:aws:iam::444455556666:role/ok-app",
            "arn:aws:iam::444455556666:role/ok-*",
            "arn:aws:iam::444455556666:role/ok-?",
        ] {
            assert!(targets_within(&allowed, Some(inside)), "{inside}");
        }
        for outside in [
            "*",
            "arn:aws:iam::444455556666:role/*",
            "arn:aws:iam::*:role/ok-app",
            "arn:aws:iam::444455556666:role/deploy",
            "arn:aws:iam::444455556666:role/${aws:PrincipalTag/team}",
            "arn:aws:iam::444455556666:role/o?-app",
        ] {
            assert!(!targets_within(&allowed, Some(outside)), "{outside}");
        }
        assert!(!targets_within(&allowed, None));
        // Patterns whose comparison would take exponential time are given up on quickly,
        // on the refusing side.
        let costly = format!("arn:aws:iam::444455556666:role/ok-*a{}", "?".repeat(40));
        let started = std::time::Instant::now();
        assert!(!targets_within(&allowed, Some(&costly)));
        assert!(!kinds(allow(json!(format!("*a{}", "?".repeat(40))), json!("*"))).is_empty());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(!targets_within(&["*".to_owned()], None));
        assert!(targets_within(&["*".to_owned()], Some("*")));
    }
}
