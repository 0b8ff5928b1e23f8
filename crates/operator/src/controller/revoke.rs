//! Taking back what a binding was granted once the guardrails refuse it: its association
//! is deleted and its managed role's policies removed (the role itself stays, so allowing
//! the binding again restores its access in one pass). A rule with `whenDenied: Keep`
//! keeps everything; with no guardrail configuration nothing is revoked.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;

use super::context::Context;
use crate::Result;
use crate::crd::PodIdentityBinding;
use crate::guardrails::WhenDenied;
use crate::naming;

/// Revokes what the denied `binding` still holds; what was removed, if anything.
pub async fn revoke(binding: &PodIdentityBinding, ctx: &Context) -> Result<Option<String>> {
    let config = ctx.settings.guardrails.current();
    let ns = binding.namespace().unwrap_or_default();
    let mut labels = BTreeMap::new();
    if config.uses_labels() {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        if let Some(n) = namespaces.get_opt(&ns).await? {
            labels = n.metadata.labels.unwrap_or_default();
        }
    }
    if config.when_denied(&ns, &labels) != Some(WhenDenied::Revoke) {
        return Ok(None);
    }
    let name = binding.name_any();
    let Some(described) = ctx.cluster().await? else {
        return Ok(None);
    };
    let cluster = &described.name;
    let owner = &described.arn;
    let status = binding.status.clone().unwrap_or_default();
    let mut removed = Vec::new();

    if let Some(id) = &status.association_id
        && let Some(a) = ctx
            .eks
            .describe_pod_identity_association(cluster, id)
            .await?
        && naming::owned_by(&a.tags, owner, &ns, &name)
    {
        ctx.eks.delete_pod_identity_association(cluster, id).await?;
        removed.push(format!("association {id}"));
    }

    let role = status
        .role_arn
        .as_deref()
        .and_then(naming::parse_role_arn)
        .map(|r| r.name);
    if let Some(role) = role
        && let Some(r) = ctx.iam.get_role(&role).await?
        && naming::owned_by(&r.tags, owner, &ns, &name)
    {
        let mut policies = 0;
        for p in ctx.iam.list_attached_role_policies(&role).await? {
            ctx.iam.detach_role_policy(&role, &p.arn).await?;
            policies += 1;
        }
        for p in ctx.iam.list_role_policies(&role).await? {
            ctx.iam.delete_role_policy(&role, &p).await?;
            policies += 1;
        }
        if policies > 0 {
            removed.push(format!("{policies} policies of role {role}"));
        }
    }
    Ok((!removed.is_empty()).then(|| {
        format!(
            "access revoked: removed {} (the rule's whenDenied is Revoke; Keep would have kept them)",
            removed.join(" and ")
        )
    }))
}
