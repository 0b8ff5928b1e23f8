//! The deployable packaging: `config/` (kustomize bases, IAM policy, Argo CD and Flux
//! health checks) and the Dockerfile.
//!
//! Every kustomization is rendered with the real `kubectl kustomize` (kubectl must be
//! installed; the tests fail, never skip, without it). By scenario:
//! - `bases`: the objects each base yields; the Deployment's security settings, probes
//!   and flags (against `run --help`); the CRD base against `crds/`;
//! - `rbac`: RBAC against the requests the controller makes (a static list of its
//!   reads, and every write it makes while a binding is created, moved to another
//!   ServiceAccount and deleted against kubesim and the AWS simulator);
//! - `iam`: the IAM policy against every API the AWS traits map to and every call
//!   the simulator saw;
//! - `apply`: `default/` and `samples/` applied with `kubectl apply` to kubesim and to a
//!   real kube-apiserver (`support/cluster.rs`), client-side from the rendered text and
//!   server-side with `-k`;
//! - `health`: the Argo CD Lua health check on sample statuses, and the Flux CEL
//!   expressions agreeing with it;
//! - `dockerfile`: the image's build and runtime stages.

#[path = "../support/cluster.rs"]
mod cluster;
#[path = "../support/files.rs"]
mod files;
#[allow(dead_code)]
#[path = "../support/kubectl.rs"]
mod kubectl;

mod apply;
mod bases;
mod dockerfile;
mod health;
mod iam;
mod rbac;

use std::collections::BTreeSet;

use serde_json::Value;

use crate::files::read;

// Shared by the scenarios: the operator's namespace, and a model of the IAM policy
// (the APIs the AWS traits map to, and whether a policy allows a call).

const NAMESPACE: &str = "pod-identity-system";

fn iam_policy() -> Value {
    serde_json::from_str(&read("config/iam/operator-policy.json")).expect("policy is JSON")
}

/// The APIs the methods of `trait_name` map to: the first word of each method's doc.
fn trait_apis(src: &str, trait_name: &str) -> BTreeSet<String> {
    let start = src
        .find(&format!("pub trait {trait_name}"))
        .unwrap_or_else(|| panic!("{trait_name} in crates/aws/src/lib.rs"));
    let body = &src[start..];
    let body = &body[..body.find("\n}\n").expect("end of trait")];
    let mut apis = BTreeSet::new();
    let mut methods = 0;
    let mut first_doc: Option<String> = None;
    let mut in_doc = false;
    for line in body.lines().map(str::trim) {
        if let Some(doc) = line.strip_prefix("///") {
            if !in_doc {
                first_doc = Some(doc.trim().to_owned());
            }
            in_doc = true;
            continue;
        }
        in_doc = false;
        if line.starts_with("async fn ") {
            methods += 1;
            let doc = first_doc
                .take()
                .unwrap_or_else(|| panic!("{trait_name}: `{line}` has no doc naming its API"));
            let api: String = doc
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            assert!(
                api.len() > 3 && api.starts_with(|c: char| c.is_ascii_uppercase()),
                "{trait_name}: the doc of `{line}` starts with an API name: {doc}"
            );
            apis.insert(api);
        }
    }
    assert_eq!(apis.len(), methods, "{trait_name}: one API per method");
    apis
}

fn aws_apis() -> (BTreeSet<String>, BTreeSet<String>) {
    let src = read("crates/aws/src/lib.rs");
    let operators = |apis: BTreeSet<String>| -> BTreeSet<String> {
        apis.into_iter()
            .filter(|api| !USER_ONLY_APIS.iter().any(|(a, _)| a == api))
            .collect()
    };
    (
        operators(trait_apis(&src, "IamApi")),
        operators(trait_apis(&src, "EksApi")),
    )
}

/// APIs of the traits that only `audit` and `migrate` call, with the credentials of the
/// user who runs them; the operator never does (the controller's sources name none of
/// their methods), so its policy does not allow them.
const USER_ONLY_APIS: [(&str, &str); 3] = [
    ("ListRoles", "list_roles"),
    ("DescribeAddon", "describe_addon"),
    ("ListAddons", "list_addons"),
];

/// The resource an EKS API is authorized on.
fn eks_resource<'a>(op: &str, cluster: &'a str, association: &'a str) -> &'a str {
    match op {
        "DescribeCluster" | "CreatePodIdentityAssociation" | "ListPodIdentityAssociations" => {
            cluster
        }
        _ => association,
    }
}

fn glob(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let (p, t) = if case_insensitive {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some((b'?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    go(p.as_bytes(), t.as_bytes())
}

fn strings(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    }
}

/// Whether `doc` allows `action` on `resource` in a request with these condition keys.
/// Conditions: `StringEquals` is evaluated; any other operator makes the statement not
/// apply (conservative for Allow).
fn allows(doc: &Value, action: &str, resource: &str, context: &[(&str, &str)]) -> bool {
    let applies = |s: &Value| {
        strings(&s["Action"]).iter().any(|a| glob(a, action, true))
            && strings(&s["Resource"])
                .iter()
                .any(|r| glob(r, resource, false))
            && s.get("Condition")
                .and_then(Value::as_object)
                .is_none_or(|conds| {
                    conds.iter().all(|(op, kv)| {
                        op == "StringEquals"
                            && kv.as_object().is_some_and(|kv| {
                                kv.iter().all(|(k, want)| {
                                    context.iter().any(|(ck, cv)| {
                                        ck.eq_ignore_ascii_case(k) && strings(want).contains(cv)
                                    })
                                })
                            })
                    })
                })
    };
    let statements = doc["Statement"].as_array().expect("Statement list");
    let allowed = statements
        .iter()
        .any(|s| s["Effect"] == "Allow" && applies(s));
    let denied = statements
        .iter()
        .any(|s| s["Effect"] == "Deny" && applies(s));
    allowed && !denied
}
