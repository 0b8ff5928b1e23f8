//! Executing a plan: each [`Action`] becomes one AWS or Kubernetes call, in order,
//! stopping at the first failure. Every write that succeeds is announced as a Kubernetes
//! Event on the binding.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;

use crate::aws::{self, Association};
use crate::crd::PodIdentityBinding;
use crate::{Error, Result};

use super::context::Context;
use super::plan::Action;

/// Which resource an action writes; status conditions are per resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    ServiceAccount,
    Role,
    Association,
}

impl Action {
    pub fn component(&self) -> Component {
        use Action::*;
        match self {
            CreateServiceAccount { .. }
            | PatchServiceAccount { .. }
            | DeleteServiceAccount { .. }
            | AdoptServiceAccount { .. }
            | ReleaseServiceAccount { .. } => Component::ServiceAccount,
            CreateAssociation(_)
            | UpdateAssociation(_)
            | TagAssociation { .. }
            | UntagAssociation { .. }
            | DeleteAssociation { .. } => Component::Association,
            _ => Component::Role,
        }
    }

    /// The Event reason and note announcing this write.
    fn event(&self) -> (&'static str, String) {
        use Action::*;
        match self {
            CreateServiceAccount { name, .. } => (
                "ServiceAccountCreated",
                format!("created ServiceAccount {name}"),
            ),
            PatchServiceAccount { name, .. } => (
                "ServiceAccountUpdated",
                format!("set labels and annotations of ServiceAccount {name}"),
            ),
            DeleteServiceAccount { name } => (
                "ServiceAccountDeleted",
                format!("deleted ServiceAccount {name}, no longer used"),
            ),
            AdoptServiceAccount { name } => (
                "ServiceAccountAdopted",
                format!(
                    "took over ServiceAccount {name} from an earlier binding of the same name, so the garbage collector leaves it in place"
                ),
            ),
            ReleaseServiceAccount { name } => (
                "ServiceAccountRetained",
                format!(
                    "released ServiceAccount {name} from the binding, so it stays with the retained association"
                ),
            ),
            CreateRole(r) => (
                "RoleCreated",
                format!("created IAM role {}{}", r.path, r.name),
            ),
            UpdateAssumeRolePolicy { role, .. } => (
                "RoleUpdated",
                format!("repaired the trust policy of role {role}"),
            ),
            UpdateRole { role, .. } => (
                "RoleUpdated",
                format!("set description / maximum session duration of role {role}"),
            ),
            PutPermissionsBoundary { role, policy_arn } => (
                "RoleUpdated",
                format!("set permissions boundary {policy_arn} on role {role}"),
            ),
            DeletePermissionsBoundary { role } => (
                "RoleUpdated",
                format!("removed the permissions boundary of role {role}"),
            ),
            AttachPolicy { role, policy_arn } => (
                "RoleUpdated",
                format!("attached {policy_arn} to role {role}"),
            ),
            DetachPolicy { role, policy_arn } => (
                "RoleUpdated",
                format!("detached {policy_arn} from role {role}"),
            ),
            PutInlinePolicy { role, name, .. } => (
                "RoleUpdated",
                format!("put inline policy {name} on role {role}"),
            ),
            DeleteInlinePolicy { role, name } => (
                "RoleUpdated",
                format!("deleted inline policy {name} of role {role}"),
            ),
            TagRole { role, .. } | UntagRole { role, .. } => {
                ("RoleUpdated", format!("repaired the tags of role {role}"))
            }
            DeleteRole { role } => ("RoleDeleted", format!("deleted IAM role {role}")),
            CreateAssociation(a) => (
                "AssociationCreated",
                format!(
                    "created the Pod Identity association of ServiceAccount {} with role {}",
                    a.service_account, a.role_arn
                ),
            ),
            UpdateAssociation(a) => (
                "AssociationUpdated",
                format!("updated association {}", a.association_id),
            ),
            TagAssociation {
                arn,
                adopting: true,
                ..
            } => ("AssociationAdopted", format!("adopted association {arn}")),
            TagAssociation { arn, .. } | UntagAssociation { arn, .. } => (
                "AssociationUpdated",
                format!("repaired the tags of association {arn}"),
            ),
            DeleteAssociation { id, .. } => {
                ("AssociationDeleted", format!("deleted association {id}"))
            }
        }
    }
}

/// What executing a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// How many actions succeeded (a prefix of the plan).
    pub done: usize,
    /// The association as the last create or update returned it.
    pub association: Option<Association>,
    /// The action that failed and why.
    pub failure: Option<(usize, Error)>,
}

/// Runs `actions` in order for `binding`, stopping at the first failure.
pub async fn apply(ctx: &Context, binding: &PodIdentityBinding, actions: &[Action]) -> Applied {
    let mut applied = Applied::default();
    for (i, action) in actions.iter().enumerate() {
        match execute(ctx, binding, action).await {
            Ok(association) => {
                applied.done = i + 1;
                if association.is_some() {
                    applied.association = association;
                }
                let (reason, note) = action.event();
                ctx.publish(binding, EventType::Normal, reason, note).await;
            }
            Err(e) => {
                tracing::info!(binding = %binding.metadata.name.as_deref().unwrap_or(""), error = %e, "write failed");
                applied.failure = Some((i, e));
                break;
            }
        }
    }
    applied
}

async fn execute(
    ctx: &Context,
    binding: &PodIdentityBinding,
    action: &Action,
) -> Result<Option<Association>> {
    use Action::*;
    let iam = ctx.iam.as_ref();
    let eks = ctx.eks.as_ref();
    match action {
        CreateServiceAccount {
            name,
            labels,
            annotations,
        } => {
            let sa = ServiceAccount {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: binding.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then(|| labels.clone()),
                    annotations: (!annotations.is_empty()).then(|| annotations.clone()),
                    owner_references: binding.controller_owner_ref(&()).map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            };
            sa_api(ctx, binding)?
                .create(&PostParams::default(), &sa)
                .await?;
        }
        PatchServiceAccount {
            name,
            labels,
            annotations,
        } => {
            let patch = json!({"metadata": {"labels": labels, "annotations": annotations}});
            sa_api(ctx, binding)?
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        DeleteServiceAccount { name } => {
            match sa_api(ctx, binding)?
                .delete(name, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        ReleaseServiceAccount { name } => release_service_account(ctx, binding, name).await?,
        AdoptServiceAccount { name } => adopt_service_account(ctx, binding, name).await?,
        CreateRole(input) => {
            iam.create_role(input).await?;
        }
        UpdateAssumeRolePolicy { role, document } => {
            iam.update_assume_role_policy(role, document).await?
        }
        UpdateRole {
            role,
            description,
            max_session_duration,
        } => {
            iam.update_role(role, description.as_deref(), *max_session_duration)
                .await?
        }
        PutPermissionsBoundary { role, policy_arn } => {
            iam.put_role_permissions_boundary(role, policy_arn).await?
        }
        DeletePermissionsBoundary { role } => iam.delete_role_permissions_boundary(role).await?,
        AttachPolicy { role, policy_arn } => iam.attach_role_policy(role, policy_arn).await?,
        DetachPolicy { role, policy_arn } => {
            ignore_not_found(iam.detach_role_policy(role, policy_arn).await)?
        }
        PutInlinePolicy {
            role,
            name,
            document,
        } => iam.put_role_policy(role, name, document).await?,
        DeleteInlinePolicy { role, name } => {
            ignore_not_found(iam.delete_role_policy(role, name).await)?
        }
        TagRole { role, tags } => iam.tag_role(role, tags).await?,
        UntagRole { role, keys } => iam.untag_role(role, keys).await?,
        DeleteRole { role } => match iam.delete_role(role).await {
            Err(aws::Error::Aws(e)) if e.code == "DeleteConflict" => {
                let profiles = iam
                    .list_instance_profiles_for_role(role)
                    .await
                    .unwrap_or_default();
                let mut e = e;
                if !profiles.is_empty() {
                    e.message = format!(
                        "{} (held by instance profile(s) {}: remove the role from them)",
                        e.message,
                        profiles.join(", ")
                    );
                }
                return Err(Error::Aws(e));
            }
            // IAM authorizes a call on a role it cannot find by `role/<name>`, without
            // the path the operator's policy is scoped to, so deleting a role that is
            // already gone (a DeleteRole whose answer was lost and that the SDK sent
            // again, or one a killed operator left to land) answers AccessDenied. GetRole
            // is allowed on every role name: a role it finds gone is what was wanted.
            Err(aws::Error::Aws(e)) if e.class == crate::error::ErrorClass::AccessDenied => {
                if !matches!(iam.get_role(role).await, Ok(None)) {
                    return Err(Error::Aws(e));
                }
            }
            other => ignore_not_found(other)?,
        },
        CreateAssociation(input) => {
            return Ok(Some(eks.create_pod_identity_association(input).await?));
        }
        UpdateAssociation(input) => {
            return Ok(Some(eks.update_pod_identity_association(input).await?));
        }
        TagAssociation { arn, tags, .. } => eks.tag_resource(arn, tags).await?,
        UntagAssociation { arn, keys } => eks.untag_resource(arn, keys).await?,
        DeleteAssociation { cluster, id } => {
            ignore_not_found(eks.delete_pod_identity_association(cluster, id).await)?
        }
    }
    Ok(None)
}

/// Removes the binding's ownerReference from a ServiceAccount; one already gone, or not
/// referring to the binding, is left as it is.
async fn release_service_account(
    ctx: &Context,
    binding: &PodIdentityBinding,
    name: &str,
) -> Result<()> {
    let uid = binding.meta().uid.as_deref().unwrap_or_default();
    rewrite_owner_references(&sa_api(ctx, binding)?, name, |refs| {
        let kept: Vec<_> = refs.iter().filter(|o| o.uid != uid).cloned().collect();
        (kept.len() != refs.len()).then_some(kept)
    })
    .await
}

/// Replaces the ownerReference of an earlier binding of the same name with this
/// binding's; one gone meanwhile is created by the next pass.
async fn adopt_service_account(
    ctx: &Context,
    binding: &PodIdentityBinding,
    name: &str,
) -> Result<()> {
    let Some(owner) = binding.controller_owner_ref(&()) else {
        return Ok(());
    };
    rewrite_owner_references(&sa_api(ctx, binding)?, name, |refs| {
        let earlier =
            |o: &OwnerReference| o.kind == owner.kind && o.name == owner.name && o.uid != owner.uid;
        (!refs.is_empty() && refs.iter().all(earlier)).then(|| vec![owner.clone()])
    })
    .await
}

/// Sets a ServiceAccount's ownerReferences to what `rewrite` makes of those read (`None`
/// leaves them). The patch tests the references as read, so a concurrent change fails it
/// (and the pass is retried) instead of being lost; a ServiceAccount gone stays gone.
async fn rewrite_owner_references(
    api: &Api<ServiceAccount>,
    name: &str,
    rewrite: impl FnOnce(&[OwnerReference]) -> Option<Vec<OwnerReference>>,
) -> Result<()> {
    let Some(sa) = api.get_opt(name).await? else {
        return Ok(());
    };
    let refs = sa.metadata.owner_references.unwrap_or_default();
    let Some(rewritten) = rewrite(&refs) else {
        return Ok(());
    };
    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/ownerReferences", "value": refs},
        {"op": "replace", "path": "/metadata/ownerReferences", "value": rewritten},
    ]))?;
    match api
        .patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn sa_api(ctx: &Context, binding: &PodIdentityBinding) -> Result<Api<ServiceAccount>> {
    let ns = binding
        .metadata
        .namespace
        .as_deref()
        .ok_or_else(|| Error::InvalidSpec {
            field: "metadata.namespace".into(),
            message: "a binding is namespaced".into(),
        })?;
    Ok(Api::namespaced(ctx.client.clone(), ns))
}

/// A delete of something already gone succeeded.
fn ignore_not_found(r: aws::Result<()>) -> aws::Result<()> {
    match r {
        Err(aws::Error::Aws(e)) if e.class == crate::error::ErrorClass::NotFound => Ok(()),
        other => other,
    }
}
