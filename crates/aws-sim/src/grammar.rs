//! IAM's policy grammar and policy sizes, as the simulator checks them before it stores a
//! document; written from AWS's documentation alone:
//!
//! - the grammar: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html>;
//! - the element reference (`Version`, `Statement`, `Sid`, `Effect`, `Principal`,
//!   `NotPrincipal`, `Action`, `NotAction`, `Resource`, `NotResource`, `Condition`):
//!   <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements.html>;
//! - the condition operators:
//!   <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html>;
//! - sizes and characters: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>.
//!
//! Checked: a JSON object of `Version`, `Id` and `Statement`; `Statement` one object or a
//! non-empty array of them; per statement only the documented elements, `Sid`
//! alphanumeric and unique, `Effect` `Allow` or `Deny`, exactly one of `Action` and
//! `NotAction` with each action `*` or `service:action` (one colon, a service prefix of
//! letters, digits, `-` and `.`), `Resource`/`NotResource` and `Principal`/`NotPrincipal`
//! by document kind, resources `*` or ARNs, principals as `*` or a map of
//! `AWS`/`Service`/`Federated`/`CanonicalUser` to names, and `Condition` blocks of
//! documented operators mapping keys to a value or a list of values. Not checked: that
//! actions, services, condition keys, principals or resources exist.
//!
//! Messages are IAM's `MalformedPolicyDocument` messages where AWS's answers are known;
//! where AWS does not document one, the message names the rule broken.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// A role's trust policy size, in characters, whitespace not counted: IAM's
/// `ACLSizePerRole` quota, 2,048 by default (raisable to 8,192). Source: "Role trust
/// policy length" in
/// <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>.
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;

/// The total size of all inline policies of one role, in characters, whitespace not
/// counted: 10,240 (not raisable). Source: "Role policy size cannot exceed 10,240
/// characters" in <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>.
pub const ROLE_INLINE_POLICIES_MAX_CHARS: usize = 10240;

/// The size of a Pod Identity association's session policy. EKS's
/// CreatePodIdentityAssociation reference
/// (<https://docs.aws.amazon.com/eks/latest/APIReference/API_CreatePodIdentityAssociation.html>)
/// passes `policy` to STS as a session policy, whose plaintext "can't exceed 2,048
/// characters" (`Policy` in
/// <https://docs.aws.amazon.com/STS/latest/APIReference/API_AssumeRole.html>). How EKS
/// counts is not documented: the simulator counts as IAM counts policy sizes, whitespace
/// not counted.
pub const SESSION_POLICY_MAX_CHARS: usize = 2048;

/// Which kind of document is checked: trust policies name principals and no resources;
/// identity and session policies name resources and no principals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A role's trust (assume-role) policy.
    Trust,
    /// An inline or managed permissions policy.
    Identity,
    /// A session policy, checked as an identity policy.
    Session,
}

/// The size IAM applies its quotas to: the characters of the document, whitespace not
/// counted (IAM quotas page: "IAM doesn't count white space when calculating the size of
/// a policy against these limits").
pub fn size(doc: &Value) -> usize {
    doc.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

/// Whether every character of the document is one a policy document may hold: tab,
/// line feed, carriage return and U+0020 to U+00FF (IAM quotas page, "IAM name
/// requirements"; the `[\u0009\u000A\u000D\u0020-\u00FF]+` pattern of the
/// `PolicyDocument` and `AssumeRolePolicyDocument` parameters).
pub fn characters_allowed(doc: &Value) -> bool {
    let ok = |s: &str| {
        s.chars()
            .all(|c| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
    };
    match doc {
        Value::String(s) => ok(s),
        Value::Array(list) => list.iter().all(characters_allowed),
        Value::Object(map) => map.iter().all(|(k, v)| ok(k) && characters_allowed(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

const SYNTAX: &str = "Syntax errors in policy.";
const VERSION_2012: &str = "2012-10-17";
const VERSION_2008: &str = "2008-10-17";

/// The elements a statement may hold (grammar page, `<statement>`).
const STATEMENT_ELEMENTS: [&str; 9] = [
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];

/// The principal types of a principal map (grammar page, `<principal_map_entry>`).
const PRINCIPAL_TYPES: [&str; 4] = ["AWS", "Service", "Federated", "CanonicalUser"];

/// The condition operators (condition operators page), before the optional
/// `ForAnyValue:`/`ForAllValues:` prefix and `IfExists` suffix.
const CONDITION_OPERATORS: [&str; 27] = [
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "NumericEquals",
    "NumericNotEquals",
    "NumericLessThan",
    "NumericLessThanEquals",
    "NumericGreaterThan",
    "NumericGreaterThanEquals",
    "DateEquals",
    "DateNotEquals",
    "DateLessThan",
    "DateLessThanEquals",
    "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool",
    "BinaryEquals",
    "IpAddress",
    "NotIpAddress",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Null",
];

fn refuse<T>(message: impl Into<String>) -> Result<T, String> {
    Err(message.into())
}

/// Checks a document against IAM's grammar for its kind; the error is the
/// `MalformedPolicyDocument` message.
pub fn check(doc: &Value, kind: Kind) -> Result<(), String> {
    let Some(top) = doc.as_object() else {
        return refuse(SYNTAX);
    };
    if top
        .keys()
        .any(|k| !matches!(k.as_str(), "Version" | "Id" | "Statement"))
    {
        return refuse(SYNTAX);
    }
    check_version(top.get("Version"), kind)?;
    if top.get("Id").is_some_and(|id| !id.is_string()) {
        return refuse(SYNTAX);
    }
    let statements: Vec<&Value> = match top.get("Statement") {
        None => return refuse("Missing required field Statement"),
        Some(Value::Array(list)) if list.is_empty() => {
            return refuse("Missing required field Statement");
        }
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return refuse(SYNTAX),
    };
    let mut sids = BTreeSet::new();
    for statement in statements {
        let Some(st) = statement.as_object() else {
            return refuse(SYNTAX);
        };
        check_statement(st, kind)?;
        if let Some(Value::String(sid)) = st.get("Sid")
            && !sid.is_empty()
            && !sids.insert(sid.as_str())
        {
            return refuse("Statement IDs (SID) in a single policy must be unique.");
        }
    }
    Ok(())
}

/// `Version`: "2012-10-17" or "2008-10-17" (Version element page). IAM refuses
/// permissions policies that are not "2012-10-17" ("Policy document must be version
/// 2012-10-17 or greater."); trust policies may still be "2008-10-17". A document
/// without `Version` is refused as well.
fn check_version(version: Option<&Value>, kind: Kind) -> Result<(), String> {
    let v = match version {
        None => match kind {
            Kind::Trust => return refuse("Missing required field Version"),
            Kind::Identity | Kind::Session => None,
        },
        Some(Value::String(v)) if v == VERSION_2012 || v == VERSION_2008 => Some(v.as_str()),
        Some(_) => return refuse(SYNTAX),
    };
    match kind {
        Kind::Trust => Ok(()),
        Kind::Identity | Kind::Session if v == Some(VERSION_2012) => Ok(()),
        Kind::Identity | Kind::Session => {
            refuse("Policy document must be version 2012-10-17 or greater.")
        }
    }
}

fn check_statement(st: &Map<String, Value>, kind: Kind) -> Result<(), String> {
    if st.keys().any(|k| !STATEMENT_ELEMENTS.contains(&k.as_str())) {
        return refuse(SYNTAX);
    }
    if let Some(sid) = st.get("Sid") {
        // Sid element page: IAM policies take ASCII letters and digits.
        let ok = sid
            .as_str()
            .is_some_and(|s| s.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            return refuse(
                "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies \
                 the regular expression [0-9A-Za-z]*",
            );
        }
    }
    match st.get("Effect") {
        None => return refuse("Missing required field Effect"),
        Some(Value::String(e)) if e == "Allow" || e == "Deny" => {}
        Some(_) => return refuse("Invalid effect"),
    }
    let allow = st.get("Effect").and_then(Value::as_str) == Some("Allow");

    let actions = one_of(
        st,
        "Action",
        "NotAction",
        "Policy statement must contain actions.",
    )?;
    for action in &actions {
        check_action(action)?;
    }

    let resources = [st.get("Resource"), st.get("NotResource")];
    let principals = [st.get("Principal"), st.get("NotPrincipal")];
    match kind {
        Kind::Trust => {
            if resources.iter().any(Option::is_some) {
                return refuse("Has prohibited field Resource.");
            }
            // NotPrincipal element page: not usable in a role trust policy, and never
            // with Allow.
            if st.contains_key("NotPrincipal") {
                return refuse(if allow {
                    "Allow with NotPrincipal is not allowed."
                } else {
                    "AssumeRole policy must not contain NotPrincipal field."
                });
            }
            match st.get("Principal") {
                None => return refuse("Missing required field Principal"),
                Some(p) => check_principal(p)?,
            }
            // A trust policy grants assuming the role: STS actions only.
            let sts = |a: &&str| *a == "*" || a.to_ascii_lowercase().starts_with("sts:");
            if !actions.iter().all(sts) {
                return refuse("AssumeRole policy may only specify STS AssumeRole actions.");
            }
        }
        Kind::Identity | Kind::Session => {
            if principals.iter().any(Option::is_some) {
                return refuse("Policy document should not specify a principal.");
            }
            let resources = one_of(
                st,
                "Resource",
                "NotResource",
                "Policy statement must contain resources.",
            )?;
            for resource in resources {
                check_resource(resource)?;
            }
        }
    }
    if let Some(c) = st.get("Condition") {
        check_condition(c)?;
    }
    Ok(())
}

/// Exactly one of `a` and `b`, as a string or a non-empty list of strings.
fn one_of<'a>(
    st: &'a Map<String, Value>,
    a: &str,
    b: &str,
    missing: &str,
) -> Result<Vec<&'a str>, String> {
    match (st.get(a), st.get(b)) {
        (Some(_), Some(_)) => refuse(SYNTAX),
        (None, None) => refuse(missing),
        (Some(v), None) | (None, Some(v)) => match v {
            Value::Array(list) if list.is_empty() => refuse(missing),
            other => strings(other),
        },
    }
}

/// A string, or a non-empty list of strings.
fn strings(v: &Value) -> Result<Vec<&str>, String> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|x| x.as_str().ok_or_else(|| SYNTAX.to_owned()))
            .collect(),
        _ => refuse(SYNTAX),
    }
}

/// `*`, or `<service-namespace>:<action>` (Action element page; grammar page,
/// `<action_string>`). The action part is not checked.
fn check_action(action: &str) -> Result<(), String> {
    if action == "*" {
        return Ok(());
    }
    let mut parts = action.split(':');
    let (Some(service), Some(_)) = (parts.next(), parts.next()) else {
        return refuse(
            "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
        );
    };
    if parts.next().is_some() {
        return refuse("Actions/Condition can contain only one colon.");
    }
    let service_ok = !service.is_empty()
        && service
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !service_ok {
        return refuse(format!("Vendor {service} is not valid"));
    }
    Ok(())
}

/// `*`, or an ARN: `arn:partition:service:region:account:resource`, wildcards allowed
/// (Resource element page).
fn check_resource(resource: &str) -> Result<(), String> {
    let arn = resource.starts_with("arn:") && resource.splitn(6, ':').count() == 6;
    if resource == "*" || arn {
        return Ok(());
    }
    refuse(format!(
        r#"Resource {resource} must be in ARN format or "*"."#
    ))
}

/// `"*"`, or a map of principal types to a name or a list of names (Principal element
/// page). An `AWS` principal is `*`, a 12-digit account id or an ARN.
fn check_principal(v: &Value) -> Result<(), String> {
    let map = match v {
        Value::String(s) if s == "*" => return Ok(()),
        Value::Object(map) if !map.is_empty() => map,
        other => return refuse(format!("Invalid principal in policy: {other}")),
    };
    for (kind, names) in map {
        if !PRINCIPAL_TYPES.contains(&kind.as_str()) {
            return refuse(format!("Invalid principal in policy: \"{kind}\""));
        }
        for name in strings(names)? {
            let ok = match kind.as_str() {
                "AWS" => {
                    name == "*"
                        || name.starts_with("arn:")
                        || (name.len() == 12 && name.bytes().all(|b| b.is_ascii_digit()))
                }
                _ => !name.is_empty(),
            };
            if !ok {
                return refuse(format!(
                    "Invalid principal in policy: \"{kind}\":\"{name}\""
                ));
            }
        }
    }
    Ok(())
}

/// `{ operator: { key: value or [values] } }` (Condition element page), with documented
/// operators.
fn check_condition(v: &Value) -> Result<(), String> {
    let Some(operators) = v.as_object() else {
        return refuse(SYNTAX);
    };
    for (operator, block) in operators {
        if !CONDITION_OPERATORS.contains(&base_operator(operator)) {
            return refuse(SYNTAX);
        }
        let Some(keys) = block.as_object() else {
            return refuse(SYNTAX);
        };
        for value in keys.values() {
            let scalar =
                |x: &Value| matches!(x, Value::String(_) | Value::Bool(_) | Value::Number(_));
            let ok = match value {
                Value::Array(list) => list.iter().all(scalar),
                other => scalar(other),
            };
            if !ok {
                return refuse(SYNTAX);
            }
        }
    }
    Ok(())
}

/// The operator without its set prefix and `IfExists` suffix.
fn base_operator(op: &str) -> &str {
    let op = op
        .strip_prefix("ForAnyValue:")
        .or_else(|| op.strip_prefix("ForAllValues:"))
        .unwrap_or(op);
    op.strip_suffix("IfExists").unwrap_or(op)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn doc(statement: Value) -> Value {
        json!({"Version": "2012-10-17", "Statement": [statement]})
    }

    fn identity(statement: Value) -> Result<(), String> {
        check(&doc(statement), Kind::Identity)
    }

    fn trust(statement: Value) -> Result<(), String> {
        check(&doc(statement), Kind::Trust)
    }

    #[test]
    fn identity_statements_accepted() {
        for st in [
            json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}),
            json!({"Effect": "Deny", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b/*"]}),
            json!({"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:iam::*:role/x"}),
            json!({"Sid": "A1", "Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*",
                   "Condition": {"ForAnyValue:StringLikeIfExists": {"aws:TagKeys": ["a", "b"]},
                                 "Bool": {"aws:SecureTransport": true},
                                 "NumericLessThan": {"s3:max-keys": 10}}}),
            json!({"Effect": "Allow", "Action": "s3:Get?bject", "Resource": "*"}),
        ] {
            assert_eq!(identity(st.clone()), Ok(()), "{st}");
        }
        let single = json!({"Version": "2012-10-17", "Id": "x",
            "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}});
        assert_eq!(check(&single, Kind::Session), Ok(()));
    }

    #[test]
    fn identity_statements_refused_with_iam_messages() {
        let cases = [
            (
                json!({"Action": "s3:*", "Resource": "*"}),
                "Missing required field Effect",
            ),
            (
                json!({"Effect": "allow", "Action": "s3:*", "Resource": "*"}),
                "Invalid effect",
            ),
            (
                json!({"Effect": "Allow", "Resource": "*"}),
                "Policy statement must contain actions.",
            ),
            (
                json!({"Effect": "Allow", "Action": [], "Resource": "*"}),
                "Policy statement must contain actions.",
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}),
                SYNTAX,
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:*"}),
                "Policy statement must contain resources.",
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "NotResource": "*"}),
                SYNTAX,
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:*", "Resource": "bucket"}),
                r#"Resource bucket must be in ARN format or "*"."#,
            ),
            (
                json!({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}),
                "Policy document should not specify a principal.",
            ),
            (
                json!({"Effect": "Allow", "Action": "GetObject", "Resource": "*"}),
                "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc.",
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:Get:Object", "Resource": "*"}),
                "Actions/Condition can contain only one colon.",
            ),
            (
                json!({"Effect": "Allow", "Action": "s 3:Get", "Resource": "*"}),
                "Vendor s 3 is not valid",
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Sid": "a-b"}),
                "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the \
                 regular expression [0-9A-Za-z]*",
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*", "Extra": 1}),
                SYNTAX,
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*",
                       "Condition": {"StringMaybe": {"aws:x": "y"}}}),
                SYNTAX,
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*",
                       "Condition": {"StringEquals": {"aws:x": {"nested": 1}}}}),
                SYNTAX,
            ),
            (
                json!({"Effect": "Allow", "Action": "s3:Get", "Resource": "*",
                       "Condition": {"StringEquals": "y"}}),
                SYNTAX,
            ),
        ];
        for (st, message) in cases {
            assert_eq!(identity(st.clone()), Err(message.to_owned()), "{st}");
        }
    }

    #[test]
    fn documents_refused() {
        let st = json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*"});
        let v2012 = "Policy document must be version 2012-10-17 or greater.";
        let cases = [
            (json!("text"), SYNTAX),
            (json!({"Statement": [st.clone()]}), v2012),
            (
                json!({"Version": "2008-10-17", "Statement": [st.clone()]}),
                v2012,
            ),
            (
                json!({"Version": "2020-01-01", "Statement": [st.clone()]}),
                SYNTAX,
            ),
            (
                json!({"Version": "2012-10-17"}),
                "Missing required field Statement",
            ),
            (
                json!({"Version": "2012-10-17", "Statement": []}),
                "Missing required field Statement",
            ),
            (json!({"Version": "2012-10-17", "Statement": "x"}), SYNTAX),
            (json!({"Version": "2012-10-17", "Statement": ["x"]}), SYNTAX),
            (
                json!({"Version": "2012-10-17", "Id": 1, "Statement": [st.clone()]}),
                SYNTAX,
            ),
            (
                json!({"Version": "2012-10-17", "Other": 1, "Statement": [st.clone()]}),
                SYNTAX,
            ),
            (
                json!({"Version": "2012-10-17", "Statement": [
                    {"Sid": "S", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
                    {"Sid": "S", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}),
                "Statement IDs (SID) in a single policy must be unique.",
            ),
        ];
        for (d, message) in cases {
            assert_eq!(check(&d, Kind::Identity), Err(message.to_owned()), "{d}");
        }
    }

    #[test]
    fn trust_statements() {
        let svc = json!({"Service": "pods.eks.amazonaws.com"});
        for st in [
            json!({"Effect": "Allow", "Principal": svc, "Action": ["sts:AssumeRole", "sts:TagSession"]}),
            json!({"Effect": "Allow", "Principal": {"AWS": ["111122223333", "arn:aws:iam::1:root", "*"]},
                   "Action": "sts:AssumeRole"}),
            json!({"Effect": "Deny", "Principal": "*", "NotAction": "sts:*"}),
            json!({"Effect": "Allow", "Principal": {"Federated": "cognito-identity.amazonaws.com"},
                   "Action": "sts:AssumeRoleWithWebIdentity"}),
        ] {
            assert_eq!(trust(st.clone()), Ok(()), "{st}");
        }
        let old = json!({"Version": "2008-10-17", "Statement": [
            {"Effect": "Allow", "Principal": svc, "Action": "sts:AssumeRole"}]});
        assert_eq!(check(&old, Kind::Trust), Ok(()));

        let cases = [
            (
                json!({"Effect": "Allow", "Principal": svc, "Action": "sts:AssumeRole", "Resource": "*"}),
                "Has prohibited field Resource.",
            ),
            (
                json!({"Effect": "Allow", "Action": "sts:AssumeRole"}),
                "Missing required field Principal",
            ),
            (
                json!({"Effect": "Allow", "NotPrincipal": svc, "Action": "sts:AssumeRole"}),
                "Allow with NotPrincipal is not allowed.",
            ),
            (
                json!({"Effect": "Deny", "NotPrincipal": svc, "Action": "sts:AssumeRole"}),
                "AssumeRole policy must not contain NotPrincipal field.",
            ),
            (
                json!({"Effect": "Allow", "Principal": svc, "Action": "s3:GetObject"}),
                "AssumeRole policy may only specify STS AssumeRole actions.",
            ),
            (
                json!({"Effect": "Allow", "Principal": {"User": "x"}, "Action": "sts:AssumeRole"}),
                "Invalid principal in policy: \"User\"",
            ),
            (
                json!({"Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "sts:AssumeRole"}),
                "Invalid principal in policy: \"AWS\":\"bob\"",
            ),
            (
                json!({"Effect": "Allow", "Principal": {}, "Action": "sts:AssumeRole"}),
                "Invalid principal in policy: {}",
            ),
        ];
        for (st, message) in cases {
            assert_eq!(trust(st.clone()), Err(message.to_owned()), "{st}");
        }
        let unversioned = json!({"Statement": [
            {"Effect": "Allow", "Principal": svc, "Action": "sts:AssumeRole"}]});
        assert_eq!(
            check(&unversioned, Kind::Trust),
            Err("Missing required field Version".to_owned())
        );
    }

    #[test]
    fn size_does_not_count_whitespace() {
        let d = json!({"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "a b c"}]});
        let compact = r#"{"Statement":[{"Action":"s3:*","Effect":"Allow","Resource":"abc"}],"Version":"2012-10-17"}"#;
        assert_eq!(size(&d), compact.chars().count());
        // Characters, not bytes.
        assert_eq!(size(&json!("é")), 3);
    }

    #[test]
    fn characters_limited_to_latin1_and_three_controls() {
        assert!(characters_allowed(
            &json!({"a\tb": ["é\n\r", 1, true, null]})
        ));
        assert!(!characters_allowed(&json!({"a": "ā"})));
        assert!(!characters_allowed(&json!({"ā": "a"})));
        assert!(!characters_allowed(&json!(["\u{1}"])));
    }
}
