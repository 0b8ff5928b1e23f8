//! The sandbox's live view: bindings with their Ready condition, then the AWS side
//! (roles with who their trust policy admits and their policies; associations), as
//! plain text. Pure: the caller lists and prints.

use std::fmt::Write;

use kube::ResourceExt;
use serde_json::Value;

use crate::aws::sim::Inventory;
use crate::crd::PodIdentityBinding;

/// The principals a trust policy's Allow statements name, and whether any is scoped
/// by a condition.
fn trust_summary(doc: &Value) -> String {
    let mut principals = Vec::new();
    let mut scoped = false;
    let statements = match &doc["Statement"] {
        Value::Array(list) => list.clone(),
        other => vec![other.clone()],
    };
    for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
        scoped |= s.get("Condition").is_some();
        if let Value::Object(p) = &s["Principal"] {
            for v in p.values() {
                match v {
                    Value::String(one) => principals.push(one.clone()),
                    Value::Array(many) => {
                        principals.extend(many.iter().filter_map(|x| x.as_str().map(str::to_owned)))
                    }
                    _ => {}
                }
            }
        } else if let Some(p) = s["Principal"].as_str() {
            principals.push(p.to_owned());
        }
    }
    principals.sort();
    principals.dedup();
    let scope = if scoped { " (with conditions)" } else { "" };
    format!("{}{scope}", principals.join(", "))
}

/// The whole view.
pub fn render(bindings: &[PodIdentityBinding], inventory: &Inventory) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = writeln!(out, "── bindings ({}) ──", bindings.len());
    let mut rows: Vec<_> = bindings.iter().collect();
    rows.sort_by_key(|b| (b.namespace(), b.name_any()));
    for b in rows {
        let ready = b
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        let (state, reason) = ready
            .map(|c| (c.status.as_str(), c.reason.as_str()))
            .unwrap_or(("-", "-"));
        let deleting = if b.metadata.deletion_timestamp.is_some() {
            " deleting"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {}/{}  sa={}  Ready={state} {reason}{deleting}",
            b.namespace().unwrap_or_default(),
            b.name_any(),
            b.service_account_name(),
        );
    }
    let _ = writeln!(out, "── IAM roles ({}) ──", inventory.roles.len());
    for r in &inventory.roles {
        let _ = writeln!(out, "  {}{}", r.role.path, r.role.name);
        let _ = writeln!(
            out,
            "      trust: {}",
            trust_summary(&r.role.assume_role_policy)
        );
        for arn in &r.attached_policy_arns {
            let _ = writeln!(out, "      managed: {arn}");
        }
        for name in r.inline_policies.keys() {
            let _ = writeln!(out, "      inline: {name}");
        }
    }
    let _ = writeln!(
        out,
        "── Pod Identity associations ({}) ──",
        inventory.associations.len()
    );
    for a in &inventory.associations {
        let target = a
            .target_role_arn
            .as_deref()
            .map(|t| format!(" -> {t}"))
            .unwrap_or_default();
        let session = if a.session_policy.is_some() {
            " +session policy"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} {}/{} => {}{target}{session}",
            a.cluster_name, a.namespace, a.service_account, a.role_arn
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trust_lists_principals_and_says_when_conditions_scope_them() {
        let doc = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
             "Action": ["sts:AssumeRole", "sts:TagSession"],
             "Condition": {"StringEquals": {"aws:RequestTag/kubernetes-namespace": "a"}}},
            {"Effect": "Deny", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "*"},
        ]});
        assert_eq!(
            trust_summary(&doc),
            "pods.eks.amazonaws.com (with conditions)"
        );
        let doc = json!({"Statement": {"Effect": "Allow",
            "Principal": {"AWS": ["arn:b", "arn:a"]}, "Action": "sts:AssumeRole"}});
        assert_eq!(trust_summary(&doc), "arn:a, arn:b");
    }

    #[test]
    fn the_view_shows_bindings_roles_and_associations() {
        let b: PodIdentityBinding = serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": "app", "namespace": "team"},
            "spec": {"serviceAccount": {"name": "runner"}},
            "status": {"conditions": [{"type": "Ready", "status": "True",
                "reason": "Reconciled", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
        }))
        .expect("binding");
        let inventory: Inventory = serde_json::from_value(json!({
            "roles": [{"role": {"name": "r1", "arn": "arn:aws:iam::1:role/p/r1",
                "role_id": "AROA", "path": "/p/", "description": null,
                "max_session_duration": 3600,
                "assume_role_policy": {"Statement": [{"Effect": "Allow",
                    "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
                "permissions_boundary_arn": null, "tags": {}, "created": null},
              "attached_policy_arns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"],
              "inline_policies": {"route53": {}}, "instance_profiles": []}],
            "clusters": [],
            "associations": [{"cluster_name": "sandbox", "association_id": "a-1",
                "association_arn": "arn:a", "namespace": "team", "service_account": "runner",
                "role_arn": "arn:aws:iam::1:role/p/r1", "target_role_arn": "arn:aws:iam::2:role/t",
                "disable_session_tags": false, "session_policy": null, "external_id": null,
                "owner_arn": null, "tags": {}}],
        }))
        .expect("inventory");
        let text = render(&[b], &inventory);
        for wanted in [
            "bindings (1)",
            "team/app  sa=runner  Ready=True Reconciled",
            "/p/r1",
            "trust: pods.eks.amazonaws.com",
            "managed: arn:aws:iam::aws:policy/ReadOnlyAccess",
            "inline: route53",
            "sandbox team/runner => arn:aws:iam::1:role/p/r1 -> arn:aws:iam::2:role/t",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
        }
    }
}
