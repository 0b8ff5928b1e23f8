//! Deletion of a binding: remove what it made, in order (association, then the role's
//! inline and attached policies and the role, under `deletionPolicy: Delete`), then let
//! the finalizer go. Only resources carrying this binding's ownership tags (its cluster
//! by ARN included) are touched; an existing role (`role.arn`) never is. The role is
//! looked for under every name it can have had: the derived name bare and under each
//! guardrail role name prefix, and the role the status recorded, so a role whose ARN
//! never reached the status is found too. A ServiceAccount the operator created goes
//! with the binding through its ownerReference under `Delete`; under `Retain` the
//! reference is removed first, so the ServiceAccount stays with the retained
//! association.
//!
//! A failure keeps the finalizer: the status says what blocks (`CleanupBlocked` with the
//! instance profiles holding the role, say) and the pass is retried.

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::Result;
use crate::crd::{DeletionPolicy, PodIdentityBinding};

use super::context::Context;
use super::status::{self, Conditions};
use super::{apply, observe, plan};

pub async fn cleanup(binding: &PodIdentityBinding, ctx: &Context) -> Result<Action> {
    let cluster_name = ctx.settings.cluster_name.clone();
    let ns = binding.namespace().unwrap_or_default();
    let name = binding.name_any();
    let policy = binding.deletion_policy();
    // Under Retain nothing in AWS is read or written.
    let cluster = match policy {
        DeletionPolicy::Retain => None,
        // A cluster that no longer exists holds no associations; roles remain to remove.
        DeletionPolicy::Delete => ctx.cluster().await?,
    };
    let found = observe::observe_for_cleanup(ctx, binding, cluster.as_ref(), policy).await?;
    let owner = plan::Owner {
        cluster: &cluster_name,
        cluster_arn: found.cluster_arn.as_deref(),
        namespace: &ns,
        binding: &name,
    };
    let actions = plan::cleanup(
        &owner,
        policy,
        &found.roles,
        &found.associations,
        &found.service_accounts,
    );
    let applied = apply::apply(ctx, binding, &actions).await;
    if let Some((_, e)) = applied.failure {
        let problem = ctx.problem(&e, false);
        let mut st = binding.status.clone().unwrap_or_default();
        let conditions = Conditions::not_ready(problem.reason, problem.message.clone());
        st.conditions = status::merge(&st.conditions, &conditions, binding.metadata.generation);
        if let Err(write) = super::report::write_status(ctx, binding, st, Some(&problem)).await {
            tracing::warn!(error = %write, "cannot report cleanup failure");
        }
        return Err(e);
    }
    if policy == DeletionPolicy::Retain {
        ctx.publish(
            binding,
            EventType::Normal,
            "Retained",
            "deletionPolicy is Retain: the role and association are left in AWS".into(),
        )
        .await;
    } else if !actions.is_empty() {
        ctx.publish(
            binding,
            EventType::Normal,
            "CleanedUp",
            "removed the AWS resources of the binding".into(),
        )
        .await;
    }
    Ok(Action::await_change())
}
