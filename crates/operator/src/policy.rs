//! IAM policy documents: shape validation, size as IAM counts it, decoding of the
//! URL-encoded form GetRole returns, and comparison by meaning.
//!
//! Implemented: the grammar checks IAM makes before it stores a document (a JSON object
//! with `Version` and `Statement`; each statement with `Effect` Allow or Deny, exactly
//! one of `Action`/`NotAction`, of `Resource`/`NotResource` for identity policies, of
//! `Principal`/`NotPrincipal` for trust policies, and well-shaped `Condition` blocks),
//! the character count IAM applies its quotas to, [`documents_equivalent`], and the
//! documents EKS Pod Identity needs: the (scoped) trust policy, the check that an
//! existing role's trust admits Pod Identity, and the role-chaining policy.
//!
//! Not implemented: checking that action names, condition operators or ARNs exist, and
//! policy evaluation. Like IAM, this module treats unknown top-level and statement keys
//! as errors.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// Trust policy size quota per role (IAM's `ACLSizePerRole` default), in characters,
/// whitespace not counted.
pub const TRUST_POLICY_MAX_CHARS: usize = 2048;
/// Total size of all inline policies of one role, in characters, whitespace not counted.
pub const ROLE_INLINE_POLICIES_MAX_CHARS: usize = 10240;
/// Size of an EKS Pod Identity session policy, in characters, whitespace not counted
/// (the `policy` field of CreatePodIdentityAssociation).
pub const SESSION_POLICY_MAX_CHARS: usize = 2048;

/// Which kind of document is being checked; trust policies name principals, identity
/// policies name resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentKind {
    /// A role's assume-role (trust) policy.
    Trust,
    /// An inline or managed permissions policy.
    Identity,
    /// An EKS session policy: an identity policy, at most 2,048 characters.
    Session,
}

/// Why IAM would refuse a document, in the words of its `MalformedPolicyDocument`
/// messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyProblem(pub String);

impl std::fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn problem<T>(msg: impl Into<String>) -> Result<T, PolicyProblem> {
    Err(PolicyProblem(msg.into()))
}

const VERSIONS: [&str; 2] = ["2012-10-17", "2008-10-17"];
const STATEMENT_KEYS: [&str; 9] = [
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

/// Checks a document's grammar as IAM does before storing it.
pub fn validate(doc: &Value, kind: DocumentKind) -> Result<(), PolicyProblem> {
    let Some(obj) = doc.as_object() else {
        return problem("Syntax errors in policy.");
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "Version" | "Id" | "Statement") {
            return problem(format!("Syntax errors in policy. Unknown field {key}"));
        }
    }
    match obj.get("Version") {
        None => return problem("Missing required field Version"),
        Some(Value::String(v)) if VERSIONS.contains(&v.as_str()) => {}
        Some(_) => return problem("The policy failed legacy parsing"),
    }
    if obj.get("Id").is_some_and(|id| !id.is_string()) {
        return problem("Syntax errors in policy.");
    }
    let statements = match obj.get("Statement") {
        None => return problem("Missing required field Statement"),
        Some(Value::Array(list)) if list.is_empty() => {
            return problem("Missing required field Statement");
        }
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => return problem("Syntax errors in policy."),
    };
    let mut sids = BTreeSet::new();
    for statement in statements {
        validate_statement(statement, kind)?;
        if let Some(Value::String(sid)) = statement.get("Sid")
            && !sids.insert(sid.clone())
        {
            return problem("Statement IDs (SID) in a single policy must be unique");
        }
    }
    if kind == DocumentKind::Session {
        let size = size_chars(doc);
        if size > SESSION_POLICY_MAX_CHARS {
            return problem(format!(
                "a session policy is at most {SESSION_POLICY_MAX_CHARS} characters, whitespace not counted; this one is {size}"
            ));
        }
    }
    Ok(())
}

fn validate_statement(statement: &Value, kind: DocumentKind) -> Result<(), PolicyProblem> {
    let Some(st) = statement.as_object() else {
        return problem("Syntax errors in policy.");
    };
    for key in st.keys() {
        if !STATEMENT_KEYS.contains(&key.as_str()) {
            return problem(format!("Syntax errors in policy. Unknown field {key}"));
        }
    }
    if let Some(sid) = st.get("Sid") {
        match sid.as_str() {
            Some(s) if s.chars().all(|c| c.is_ascii_alphanumeric()) => {}
            _ => return problem("Statement IDs (SID) must be alpha-numeric."),
        }
    }
    match st.get("Effect").and_then(Value::as_str) {
        Some("Allow" | "Deny") => {}
        Some(_) => return problem("Invalid effect"),
        None => return problem("Missing required field Effect"),
    }
    exactly_one(st, "Action", "NotAction")?;
    let has_principal = st.contains_key("Principal") || st.contains_key("NotPrincipal");
    let has_resource = st.contains_key("Resource") || st.contains_key("NotResource");
    match kind {
        DocumentKind::Trust => {
            if has_resource {
                return problem("Has prohibited field Resource");
            }
            exactly_one(st, "Principal", "NotPrincipal")?;
            if let Some(actions) = st.get("Action") {
                let sts = |a: &&str| a.to_ascii_lowercase().starts_with("sts:") || *a == "*";
                if !string_or_strings(actions)?.iter().all(sts) {
                    return problem("AssumeRole policy may only specify STS AssumeRole actions.");
                }
            }
        }
        DocumentKind::Identity | DocumentKind::Session => {
            if has_principal {
                return problem("Policy document should not specify a principal.");
            }
            exactly_one(st, "Resource", "NotResource")?;
        }
    }
    for key in ["Action", "NotAction", "Resource", "NotResource"] {
        if let Some(v) = st.get(key) {
            string_or_strings(v)?;
        }
    }
    for key in ["Principal", "NotPrincipal"] {
        if let Some(v) = st.get(key) {
            validate_principal(v)?;
        }
    }
    if let Some(c) = st.get("Condition") {
        validate_condition(c)?;
    }
    Ok(())
}

fn exactly_one(st: &Map<String, Value>, a: &str, b: &str) -> Result<(), PolicyProblem> {
    match (st.contains_key(a), st.contains_key(b)) {
        (true, true) => problem(format!("Syntax errors in policy. {a} and {b} both set")),
        (false, false) => problem(format!("Missing required field {a}")),
        _ => Ok(()),
    }
}

fn string_or_strings(v: &Value) -> Result<Vec<&str>, PolicyProblem> {
    match v {
        Value::String(s) => Ok(vec![s.as_str()]),
        Value::Array(list) if !list.is_empty() => list
            .iter()
            .map(|x| {
                x.as_str()
                    .ok_or_else(|| PolicyProblem("Syntax errors in policy.".into()))
            })
            .collect(),
        _ => problem("Syntax errors in policy."),
    }
}

fn validate_principal(v: &Value) -> Result<(), PolicyProblem> {
    match v {
        Value::String(s) if s == "*" => Ok(()),
        Value::Object(map) if !map.is_empty() => {
            for (kind, ids) in map {
                if !matches!(
                    kind.as_str(),
                    "AWS" | "Service" | "Federated" | "CanonicalUser"
                ) {
                    return problem(format!("Invalid principal in policy: {kind}"));
                }
                string_or_strings(ids)?;
            }
            Ok(())
        }
        _ => problem("Invalid principal in policy"),
    }
}

fn validate_condition(v: &Value) -> Result<(), PolicyProblem> {
    let Some(ops) = v.as_object() else {
        return problem("Syntax errors in policy.");
    };
    for keys in ops.values() {
        let Some(keys) = keys.as_object() else {
            return problem("Syntax errors in policy.");
        };
        for value in keys.values() {
            let scalar =
                |x: &Value| matches!(x, Value::String(_) | Value::Bool(_) | Value::Number(_));
            let ok = match value {
                Value::Array(list) => list.iter().all(scalar),
                other => scalar(other),
            };
            if !ok {
                return problem("Syntax errors in policy.");
            }
        }
    }
    Ok(())
}

/// The service principal EKS Pod Identity assumes roles as.
pub const POD_IDENTITY_PRINCIPAL: &str = "pods.eks.amazonaws.com";

/// Whom a managed role's trust policy admits: pods of one ServiceAccount of one cluster,
/// as EKS identifies them by the session tags it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustScope {
    pub account_id: String,
    pub cluster_arn: String,
    pub namespace: String,
    pub service_account: String,
}

/// The trust policy of a role for EKS Pod Identity (the EKS user guide's "pod-id-role"
/// page): `pods.eks.amazonaws.com` may `sts:AssumeRole` and `sts:TagSession`; with a
/// scope, only for that cluster, namespace and ServiceAccount, from that account. Without
/// a scope (session tags disabled, so there are no tags to match) any pod identity of
/// the account's clusters may assume it ([`cluster_trust_policy`] keeps it to one
/// cluster without session tags).
pub fn pod_identity_trust_policy(scope: Option<&TrustScope>) -> Value {
    let mut statement = json!({
        "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
    });
    if let Some(s) = scope {
        statement["Condition"] = json!({
            "StringEquals": {
                "aws:SourceAccount": s.account_id,
                "aws:RequestTag/eks-cluster-arn": s.cluster_arn,
                "aws:RequestTag/kubernetes-namespace": s.namespace,
                "aws:RequestTag/kubernetes-service-account": s.service_account,
            }
        });
    }
    json!({"Version": "2012-10-17", "Statement": [statement]})
}

/// The trust policy of a role for EKS Pod Identity whose associations disable session
/// tags: no `aws:RequestTag/...` key can be matched then, but the source keys are not
/// session tags and stay. `aws:SourceAccount` is the cluster's account and
/// `aws:SourceArn` the cluster's ARN, which EKS Pod Identity sends as the source of its
/// `AssumeRole` (the EKS user guide's "Cross-service confused deputy prevention" page
/// recommends both keys for EKS's service principals), so only associations of that
/// cluster may use the role, whatever their namespace and ServiceAccount.
pub fn cluster_trust_policy(account_id: &str, cluster_arn: &str) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
        "Effect": "Allow",
        "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account_id},
            "ArnEquals": {"aws:SourceArn": cluster_arn},
        },
    }]})
}

/// The identity policy that lets a role chain into `target_role_arn` as EKS Pod
/// Identity does (assume it and tag the session).
pub fn target_role_policy(target_role_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "AssumeTargetRole",
            "Effect": "Allow",
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Resource": target_role_arn,
        }]
    })
}

/// True when a trust policy has an Allow statement letting `pods.eks.amazonaws.com`
/// both `sts:AssumeRole` and `sts:TagSession` (directly or through `sts:*`/`*`).
/// Conditions are not evaluated: a statement with conditions still counts, since they
/// may well match. Used to tell users what an existing role lacks.
pub fn trust_admits_pod_identity(doc: &Value) -> bool {
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => return false,
    };
    statements.into_iter().any(|st| {
        let allow = st.get("Effect").and_then(Value::as_str) == Some("Allow");
        let principal = st
            .get("Principal")
            .and_then(|p| p.get("Service"))
            .map(|svc| strings(svc).contains(&POD_IDENTITY_PRINCIPAL.to_owned()))
            .unwrap_or(false);
        let actions: Vec<String> = st
            .get("Action")
            .map(|a| {
                strings(a)
                    .into_iter()
                    .map(|x| x.to_ascii_lowercase())
                    .collect()
            })
            .unwrap_or_default();
        let grants = |wanted: &str| {
            actions
                .iter()
                .any(|a| a == wanted || a == "sts:*" || a == "*")
        };
        allow && principal && grants("sts:assumerole") && grants("sts:tagsession")
    })
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// The size IAM counts a document as: characters of its JSON, whitespace not counted.
pub fn size_chars(doc: &Value) -> usize {
    doc.to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .count()
}

pub use crate::aws::decode_policy;

/// True when two documents mean the same to IAM: same JSON after ignoring statement
/// order and `Sid`s, order and duplicates in action, resource, principal and condition
/// value lists, a single string versus a one-element list, the case of action names and
/// condition keys, and an account id versus its `:root` ARN as an AWS principal.
pub fn documents_equivalent(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// The canonical form [`documents_equivalent`] compares.
pub fn normalize(doc: &Value) -> Value {
    let Some(obj) = doc.as_object() else {
        return doc.clone();
    };
    let mut out = Map::new();
    for (key, value) in obj {
        let value = match key.as_str() {
            "Statement" => {
                let list = match value {
                    Value::Array(list) => list.iter().map(normalize_statement).collect(),
                    other => vec![normalize_statement(other)],
                };
                Value::Array(sorted_set(list))
            }
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

fn normalize_statement(statement: &Value) -> Value {
    let Some(st) = statement.as_object() else {
        return statement.clone();
    };
    let mut out = Map::new();
    for (key, value) in st {
        let value = match key.as_str() {
            "Sid" => continue,
            "Action" | "NotAction" => string_set(value, |s| s.to_ascii_lowercase()),
            "Resource" | "NotResource" => string_set(value, str::to_owned),
            "Principal" | "NotPrincipal" => normalize_principal(value),
            "Condition" => normalize_condition(value),
            _ => value.clone(),
        };
        out.insert(key.clone(), value);
    }
    Value::Object(out)
}

fn normalize_principal(v: &Value) -> Value {
    // `"*"` and `{"AWS": "*"}` name the same principal.
    if v.as_str() == Some("*") {
        return json!({"AWS": ["*"]});
    }
    let Some(map) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (kind, ids) in map {
        let ids = if kind == "AWS" {
            string_set(ids, |s| {
                if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
                    format!("arn:aws:iam::{s}:root")
                } else {
                    s.to_owned()
                }
            })
        } else {
            string_set(ids, str::to_owned)
        };
        out.insert(kind.clone(), ids);
    }
    Value::Object(out)
}

fn normalize_condition(v: &Value) -> Value {
    let Some(ops) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (op, keys) in ops {
        let Some(keys) = keys.as_object() else {
            out.insert(op.clone(), keys.clone());
            continue;
        };
        let mut inner = Map::new();
        for (key, values) in keys {
            let values = match values {
                Value::Array(list) => list.iter().map(scalar_text).collect(),
                other => vec![scalar_text(other)],
            };
            let set: BTreeSet<String> = values.into_iter().collect();
            inner.insert(
                key.to_ascii_lowercase(),
                Value::Array(set.into_iter().map(Value::String).collect()),
            );
        }
        out.insert(op.clone(), Value::Object(inner));
    }
    Value::Object(out)
}

/// Condition values are compared as IAM reads them: `true`, `"true"` and `1` vs `"1"`
/// are the same string.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn string_set(v: &Value, f: impl Fn(&str) -> String) -> Value {
    let items: Vec<Value> = match v {
        Value::String(s) => vec![Value::String(f(s))],
        Value::Array(list) => list
            .iter()
            .map(|x| match x {
                Value::String(s) => Value::String(f(s)),
                other => other.clone(),
            })
            .collect(),
        other => return other.clone(),
    };
    Value::Array(sorted_set(items))
}

fn sorted_set(items: Vec<Value>) -> Vec<Value> {
    let mut keyed: Vec<(String, Value)> = items.into_iter().map(|v| (sort_key(&v), v)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    keyed.into_iter().map(|(_, v)| v).collect()
}

/// JSON text with object keys sorted, whatever order the map keeps them in.
fn sort_key(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let inner: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), sort_key(v)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(list) => {
            let inner: Vec<String> = list.iter().map(sort_key).collect();
            format!("[{}]", inner.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
