//! Bindings that cannot be read as a `PodIdentityBinding` (schema bypassed, an older
//! version's shape): the controller watches bindings as untyped objects, so one such
//! object never stops the watch for the others; it gets `Ready=False`, reason
//! `InvalidSpec`, naming the first field that cannot be read, and a Warning Event. No AWS
//! call is made for it while it lives.
//!
//! Deleted while holding the finalizer, it is cleaned up from what can still be known
//! ([`cleanup_scope`]): associations are found by listing the namespace's and keeping
//! those carrying this binding's ownership tags; the role by its derived name (with each
//! guardrail rule's name prefix), the name `spec.role.name` gives when it is readable,
//! and `status.roleArn`, and deleted only when it carries the ownership tags. When
//! `spec.deletionPolicy` or the role's name cannot be read, the finalizer stays and
//! the status (`CleanupBlocked`) and a Warning Event give the exact fix; under a
//! readable `deletionPolicy: Delete` the associations and the roles that can be named
//! are removed all the same.

use kube::ResourceExt;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use crate::Result;
use crate::crd::{DeletionPolicy, FINALIZER};
use crate::naming;

use super::context::Context;
use super::status::{self, Reason};
use super::typed::{raw_api, shell};
use super::{apply, observe, plan, report};

/// What the cleanup of an unreadable binding can know from its metadata, the readable
/// parts of its spec and its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanupScope {
    /// `None` when `spec.deletionPolicy` cannot be read.
    pub deletion_policy: Option<DeletionPolicy>,
    /// Names of roles this binding may have made (each is deleted only when it carries
    /// the binding's ownership tags).
    pub role_names: Vec<String>,
    /// What cannot be known, each with its fix; cleanup finishes only when empty.
    pub unknown: Vec<String>,
}

/// The cleanup [`CleanupScope`] of an unreadable binding of the cluster `cluster_arn`;
/// `prefixes` are the guardrail rules' role name prefixes (one may have been prepended
/// to the derived name).
pub fn cleanup_scope(obj: &DynamicObject, cluster_arn: &str, prefixes: &[String]) -> CleanupScope {
    let cluster = naming::cluster_name_of(cluster_arn);
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let spec = obj.data.get("spec");
    let get = |key: &str| spec.and_then(|s| s.get(key)).filter(|v| !v.is_null());
    let spec_is_object = spec.is_none_or(|s| s.is_object() || s.is_null());
    let mut unknown = Vec::new();
    let edit = format!("kubectl edit podidentitybinding {name} -n {ns}");
    let deletion_policy = match (spec_is_object, get("deletionPolicy")) {
        (true, None) => Some(DeletionPolicy::Delete),
        (true, Some(Value::String(p))) if p == "Delete" => Some(DeletionPolicy::Delete),
        (true, Some(Value::String(p))) if p == "Retain" => Some(DeletionPolicy::Retain),
        _ => {
            unknown.push(format!(
                "spec.deletionPolicy cannot be read, so whether to delete the role is unknown: set it to Delete or Retain ({edit})"
            ));
            None
        }
    };
    let unknown_role = format!(
        "a role made under the name it gives cannot be found (the role in status.roleArn, if any, is removed): fix it ({edit}) and cleanup finishes, or remove any IAM role tagged {}={name} under {} yourself and then the finalizer {FINALIZER}",
        naming::TAG_NAME,
        naming::role_path(cluster)
    );
    let mut role_names = Vec::new();
    let derived = || {
        let mut names = vec![naming::default_role_name(cluster_arn, &ns, &name)];
        names.extend(
            prefixes
                .iter()
                .map(|p| naming::prefixed_role_name(p, cluster_arn, &ns, &name)),
        );
        names
    };
    let role = if spec_is_object { get("role") } else { None };
    match role {
        None if spec_is_object => role_names.extend(derived()),
        Some(Value::Object(r)) => {
            let field = |k: &str| r.get(k).filter(|v| !v.is_null());
            match (field("arn"), field("name")) {
                // An existing role is never the operator's to delete.
                (Some(Value::String(_)), _) => {}
                (None, None) => role_names.extend(derived()),
                (None, Some(Value::String(n))) => role_names.push(n.clone()),
                (arn, _) => unknown.push(format!(
                    "spec.role.{} cannot be read, so {unknown_role}",
                    if arn.is_some() { "arn" } else { "name" }
                )),
            }
        }
        _ => unknown.push(format!("spec.role cannot be read, so {unknown_role}")),
    }
    if let Some(prev) = obj
        .data
        .pointer("/status/roleArn")
        .and_then(Value::as_str)
        .and_then(naming::parse_role_arn)
        && !role_names.contains(&prev.name)
    {
        role_names.push(prev.name);
    }
    role_names.retain(|n| naming::valid_role_name(n));
    CleanupScope {
        deletion_policy,
        role_names,
        unknown,
    }
}

/// An unreadable binding: reported, or cleaned up when it is being deleted.
pub async fn handle(obj: &DynamicObject, field: &str, why: &str, ctx: &Context) -> Result<Action> {
    let deleting = obj.metadata.deletion_timestamp.is_some();
    let ours = obj.finalizers().iter().any(|f| f == FINALIZER);
    match (deleting, ours) {
        (true, true) => cleanup(obj, field, why, ctx).await,
        // Going away, and nothing of ours holds it.
        (true, false) => Ok(Action::await_change()),
        (false, _) => report_invalid(obj, field, why, ctx).await,
    }
}

/// Removes what can be known to be this binding's, then the finalizer; or, when
/// something cannot be known, keeps the finalizer and says how to unblock it.
async fn cleanup(obj: &DynamicObject, field: &str, why: &str, ctx: &Context) -> Result<Action> {
    let cluster = ctx.settings.cluster_name.clone();
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let prefixes: Vec<String> = ctx
        .settings
        .guardrails
        .current()
        .rules
        .iter()
        .filter_map(|r| r.role_name_prefix.clone())
        .collect();
    let cluster_arn = match cleanup_scope(obj, &cluster, &prefixes).deletion_policy {
        Some(_) => ctx.cluster().await?.map(|c| c.arn),
        None => None,
    };
    let scope = cleanup_scope(obj, cluster_arn.as_deref().unwrap_or(&cluster), &prefixes);
    let binding = shell(obj);
    if scope.deletion_policy.is_some() {
        let mut associations = Vec::new();
        if cluster_arn.is_some() {
            for summary in ctx
                .eks
                .list_pod_identity_associations(&cluster, Some(&ns), None)
                .await?
            {
                if let Some(a) = ctx
                    .eks
                    .describe_pod_identity_association(&cluster, &summary.association_id)
                    .await?
                {
                    associations.push(a);
                }
            }
        }
        let mut roles = Vec::new();
        if scope.deletion_policy == Some(DeletionPolicy::Delete) {
            for role in &scope.role_names {
                if let Some(r) = observe::get_role(ctx.iam.as_ref(), role, Some(&cluster)).await? {
                    roles.push(r);
                }
            }
        }
        // Under Retain nothing is removed, as for a readable binding.
        let policy = scope.deletion_policy.unwrap_or(DeletionPolicy::Retain);
        let owner = plan::Owner {
            cluster: &cluster,
            cluster_arn: cluster_arn.as_deref(),
            namespace: &ns,
            binding: &name,
        };
        let actions = plan::cleanup(&owner, policy, &roles, &associations, &[]);
        let applied = apply::apply(ctx, &binding, &actions).await;
        if let Some((_, e)) = applied.failure {
            let problem = status::problem_of(&e, false);
            not_ready(obj, problem.reason, problem.message, ctx).await?;
            return Err(e);
        }
    }
    if !scope.unknown.is_empty() {
        let message = format!(
            "{field}: cannot be read ({why}); cleanup is blocked: {}",
            scope.unknown.join("; ")
        );
        return not_ready(obj, Reason::CleanupBlocked, message, ctx).await;
    }
    // The finalizer list as read, minus ours; the test makes a concurrent change fail
    // (and the pass retried) instead of being overwritten.
    let finalizers = obj.finalizers().to_vec();
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]))?;
    match raw_api(ctx.client.clone(), obj)
        .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    tracing::info!(binding = %name, namespace = %ns, "unreadable binding cleaned up, finalizer removed");
    Ok(Action::await_change())
}

/// Reports a binding that cannot be read, once per generation.
async fn report_invalid(
    obj: &DynamicObject,
    field: &str,
    why: &str,
    ctx: &Context,
) -> Result<Action> {
    let message = format!(
        "{field}: cannot be read ({why}); fix the field (see kubectl explain podidentitybinding.{})",
        field
            .trim_start_matches("spec.")
            .split('.')
            .next()
            .unwrap_or_default()
    );
    not_ready(obj, Reason::InvalidSpec, message, ctx).await
}

/// Reports the binding not ready for this reason; the pass ends there.
async fn not_ready(
    obj: &DynamicObject,
    reason: Reason,
    message: String,
    ctx: &Context,
) -> Result<Action> {
    report::write_unreadable(ctx, obj, reason, message).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::controller::fixtures::raw_binding as obj;

    #[test]
    fn cleanup_scope_names_what_can_be_known() {
        let scope = |spec: Value, status: Option<Value>| {
            let mut o = obj(spec);
            if let Some(s) = status {
                o.data["status"] = s;
            }
            cleanup_scope(&o, PROD, &["t-".to_owned()])
        };
        const PROD: &str = "arn:aws:eks:us-east-1:111122223333:cluster/prod";
        let derived = naming::default_role_name(PROD, "ns", "b");
        let prefixed = naming::prefixed_role_name("t-", PROD, "ns", "b");

        let s = scope(json!({"serviceAccount": {"create": "yes"}}), None);
        assert_eq!(s.deletion_policy, Some(DeletionPolicy::Delete));
        assert_eq!(s.role_names, [derived.clone(), prefixed.clone()]);
        assert!(s.unknown.is_empty());

        let s = scope(
            json!({"role": {"name": "mine", "maxSessionDuration": "long"},
            "deletionPolicy": "Retain"}),
            None,
        );
        assert_eq!(s.deletion_policy, Some(DeletionPolicy::Retain));
        assert_eq!(s.role_names, ["mine"]);

        // An existing role is never a candidate; the status still names what was used.
        let s = scope(
            json!({"role": {"arn": "arn:aws:iam::111122223333:role/theirs"}, "tags": [1]}),
            Some(json!({"roleArn": "arn:aws:iam::111122223333:role/pod-identity/prod/old"})),
        );
        assert_eq!(s.role_names, ["old"]);
        assert!(s.unknown.is_empty());

        for (spec, field) in [
            (json!({"role": "admin"}), "spec.role cannot be read"),
            (
                json!({"role": {"name": 5}}),
                "spec.role.name cannot be read",
            ),
            (
                json!({"role": {"arn": ["x"]}}),
                "spec.role.arn cannot be read",
            ),
        ] {
            let s = scope(spec.clone(), None);
            assert_eq!(s.unknown.len(), 1, "{spec}");
            assert!(s.unknown[0].starts_with(field), "{spec}: {:?}", s.unknown);
            assert!(s.unknown[0].contains("kubectl edit podidentitybinding b -n ns"));
            assert!(s.role_names.is_empty(), "{spec}");
        }

        let s = scope(json!({"deletionPolicy": "Sometimes"}), None);
        assert_eq!(s.deletion_policy, None);
        assert!(s.unknown[0].contains("Delete or Retain"), "{:?}", s.unknown);

        let s = scope(json!("nope"), None);
        assert_eq!(s.deletion_policy, None);
        assert_eq!(s.unknown.len(), 2, "{:?}", s.unknown);
    }
}
