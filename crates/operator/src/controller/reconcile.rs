//! One reconcile pass of a binding that is not being deleted, and the status it ends
//! with.
//!
//! A pass of a binding already Ready for its generation that AWS throttles changes
//! nothing visible: the resources were in place when last checked, and the check is
//! retried after a backoff.

use std::sync::Arc;

use chrono::Utc;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};

use std::collections::BTreeMap;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use tokio::time::Instant;

use crate::crd::{
    FINALIZER, PodIdentityBinding, PodIdentityBindingStatus, ServiceAccountStatus, StatusWarning,
};
use crate::guardrails::{Effects, effects_unchecked, evaluate, not_the_operators_role};
use crate::{Error, Result};

use super::apply::{self, Component};
use super::context::Context;
use super::desired::{self, Desired, DesiredRole};
use super::observe::{self, Observed};
use super::pacing::PassReads;
use super::plan::{self, Plan};
use super::status::{self, Conditions, Problem, Reason, Retry, State};
use super::{cleanup, notices, report};

/// The controller's reconcile function.
pub async fn reconcile(binding: Arc<PodIdentityBinding>, ctx: Arc<Context>) -> Result<Action> {
    let ns = binding.namespace().ok_or_else(|| Error::InvalidSpec {
        field: "metadata.namespace".into(),
        message: "a binding is namespaced".into(),
    })?;
    let api: Api<PodIdentityBinding> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, binding, |event| async {
        match event {
            Finalizer::Apply(b) => reconcile_binding(&b, &ctx).await,
            Finalizer::Cleanup(b) => {
                ctx.confirmed.forget(&b.uid().unwrap_or_default());
                cleanup::cleanup(&b, &ctx).await
            }
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// Everything before the plan; a problem here stops the pass.
async fn prepare(
    binding: &PodIdentityBinding,
    ctx: &Context,
) -> std::result::Result<(Desired, Observed), Problem> {
    // With no configuration, or no rules, everything is denied: say so before any AWS
    // call (the cluster lookup below is one).
    let config = ctx.settings.guardrails.current();
    if config.unconfigured || config.rules.is_empty() {
        let denial = evaluate(binding, &BTreeMap::new(), &config)
            .err()
            .unwrap_or_else(|| Error::PolicyDenied {
                rule: "(none)".into(),
                field: "metadata.namespace".into(),
                message: "no guardrail rule allows anything".into(),
            });
        return Err(status::problem_of(&denial, false));
    }
    let cluster = match ctx.cluster().await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Err(Problem {
                reason: Reason::ClusterNotFound,
                message: format!(
                    "EKS cluster {} does not exist in this account and region: check --cluster-name and --region",
                    ctx.settings.cluster_name
                ),
                retry: Retry::Slow,
            });
        }
        Err(e) => return Err(ctx.problem(&e, false)),
    };
    // The desired state is built with the rule's effects, or without any when the rule
    // denies; its validation is reported first, so a malformed field is reported as
    // such, not as denied.
    let effects = guardrails(binding, ctx).await;
    let no_effects = Effects::default();
    let desired = desired::desired_with(binding, &cluster, effects.as_ref().unwrap_or(&no_effects))
        .map_err(|e| status::problem_of(&e, false))?;
    desired::check_managed_policy_count(binding, ctx.settings.max_managed_policies_per_role)
        .map_err(|e| status::problem_of(&e, false))?;
    effects.map_err(|e| status::problem_of(&e, false))?;
    let observed = observe::observe(
        &ctx.client,
        ctx.iam.as_ref(),
        ctx.eks.as_ref(),
        binding,
        &desired,
        ctx.cached_bindings_naming(&desired.namespace, &desired.service_account.name),
    )
    .await
    .map_err(|e| ctx.problem(&e, false))?;
    Ok((desired, observed))
}

/// The guardrail rule's verdict; the binding's namespace is read only when a rule
/// selects namespaces by label.
async fn guardrails(binding: &PodIdentityBinding, ctx: &Context) -> Result<Effects> {
    let config = ctx.settings.guardrails.current();
    let mut labels = BTreeMap::new();
    if config.uses_labels() {
        let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
        if let Some(ns) = namespaces
            .get_opt(&binding.namespace().unwrap_or_default())
            .await?
        {
            labels = ns.metadata.labels.unwrap_or_default();
        }
    }
    if !ctx.settings.guardrail_checks {
        return Ok(effects_unchecked(binding, &labels, &config));
    }
    if let Some(own) = &ctx.settings.operator_role_arn {
        not_the_operators_role(binding, own)?;
    }
    evaluate(binding, &labels, &config)
}

/// True when a throttled pass is to leave the status alone: the binding is Ready for
/// its generation.
fn quiet(binding: &PodIdentityBinding, problem: &Problem) -> bool {
    problem.reason == Reason::Throttled
        && status::ready_of(binding.status.as_ref()).is_some_and(|c| {
            c.status == "True" && c.observed_generation == binding.metadata.generation
        })
}

/// How long a recent full pass still vouches for this binding: its generation is the
/// one that pass made `Ready`, and the ServiceAccount is there, unchanged since. The
/// binding's own status is not consulted: the copy a follow-up event hands over may
/// predate the pass's status patch (a status changed by others is rewritten at the
/// resync).
async fn still_confirmed(binding: &PodIdentityBinding, ctx: &Context) -> Result<Option<Duration>> {
    let generation = binding.metadata.generation;
    let uid = binding.uid().unwrap_or_default();
    if !ctx.confirmed.holds(&uid, generation, Instant::now()) {
        return Ok(None);
    }
    let sas: Api<ServiceAccount> =
        Api::namespaced(ctx.client.clone(), &binding.namespace().unwrap_or_default());
    let sa = sas.get_opt(&binding.service_account_name()).await?;
    Ok(ctx.confirmed.remaining(
        &uid,
        generation,
        sa.as_ref()
            .and_then(|s| s.metadata.resource_version.as_deref()),
        Instant::now(),
    ))
}

async fn reconcile_binding(binding: &PodIdentityBinding, ctx: &Context) -> Result<Action> {
    let uid = binding.uid().unwrap_or_default();
    if let Some(left) = still_confirmed(binding, ctx).await? {
        tracing::debug!(?left, "a recent full pass vouches for the binding");
        return Ok(Action::requeue(left));
    }
    ctx.confirmed.forget(&uid);
    let meta = &binding.metadata;
    let (desired, observed) = match prepare(binding, ctx).await {
        Ok(x) => x,
        Err(problem) if quiet(binding, &problem) => {
            return Ok(ctx.requeue(meta, problem.retry));
        }
        Err(mut problem) => {
            let mut st = binding.status.clone().unwrap_or_default();
            if problem.reason == Reason::PolicyDenied {
                match super::revoke::revoke(binding, ctx).await {
                    Ok(Some(revoked)) => {
                        st.association_id = None;
                        st.association_arn = None;
                        st.external_id = None;
                        problem.message = format!("{}; {revoked}", problem.message);
                        ctx.publish(binding, EventType::Warning, "AccessRevoked", revoked)
                            .await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        problem.message = format!(
                            "{}; revoking the access already granted failed ({e}), retrying",
                            problem.message
                        );
                        problem.retry = Retry::Backoff;
                    }
                }
            }
            let conditions = Conditions {
                ready: State::failed(problem.reason, problem.message.clone()),
                role: State::unknown(),
                service_account: State::unknown(),
                association: State::unknown(),
            };
            set_conditions(binding, &mut st, &conditions);
            report::write_status(ctx, binding, st, Some(&problem)).await?;
            return Ok(ctx.requeue(meta, problem.retry));
        }
    };
    let plan = plan::plan(&desired, &observed);
    if let Some(b) = &plan.blocked {
        let failed = State::failed(b.reason, b.message.clone());
        let role_problem = matches!(
            b.reason,
            Reason::RoleConflict | Reason::RoleNotFound | Reason::RoleTrustMissing
        );
        let conditions = Conditions {
            ready: failed.clone(),
            role: if role_problem {
                failed.clone()
            } else {
                State::unknown()
            },
            service_account: State::unknown(),
            association: if role_problem {
                State::unknown()
            } else {
                failed
            },
        };
        let mut st = binding.status.clone().unwrap_or_default();
        set_conditions(binding, &mut st, &conditions);
        let problem = Problem {
            reason: b.reason,
            message: b.message.clone(),
            retry: Retry::Slow,
        };
        report::write_status(ctx, binding, st, Some(&problem)).await?;
        return Ok(ctx.requeue(meta, Retry::Slow));
    }

    let applied = apply::apply(ctx, binding, &plan.actions).await;
    let done = applied
        .failure
        .as_ref()
        .map_or(plan.actions.len(), |(i, _)| *i);
    if plan.actions[..done].iter().any(|a| {
        matches!(
            a,
            plan::Action::CreateRole(_) | plan::Action::UpdateAssumeRolePolicy { .. }
        )
    }) {
        ctx.backoffs.wrote_trust(&uid);
    }
    let problem = applied.failure.as_ref().map(|(i, e)| {
        let role_created_now = plan.actions[..*i]
            .iter()
            .any(|a| matches!(a, plan::Action::CreateRole(_)));
        let role_recent = observed
            .role
            .as_ref()
            .and_then(|r| r.role.created)
            .is_some_and(|created| {
                let age = Utc::now().signed_duration_since(created);
                age.to_std().unwrap_or_default() < ctx.settings.propagation_window
            });
        // A trust policy the operator wrote moments ago may not have reached EKS yet.
        let trust_recent = ctx
            .backoffs
            .trust_written_within(&uid, ctx.settings.propagation_window);
        let problem = ctx.problem(e, role_created_now || role_recent || trust_recent);
        (
            *i,
            status::in_spec_terms(problem, e, &binding.spec.role.managed_policy_arns),
        )
    });
    if let Some((_, p)) = &problem
        && quiet(binding, p)
    {
        return Ok(ctx.requeue(meta, p.retry));
    }
    let mut st = outcome_status(
        binding,
        &desired,
        &observed,
        &plan,
        &applied,
        problem.as_ref(),
    );
    st.warnings = warnings(binding, ctx, &desired, &observed, &plan.actions[..done]).await;
    let ready = status::ready_of(Some(&st)).is_some_and(|c| c.status == "True");
    report::write_status(ctx, binding, st, problem.as_ref().map(|(_, p)| p)).await?;
    match problem {
        Some((_, p)) => Ok(ctx.requeue(meta, p.retry)),
        None => {
            ctx.record_success(&uid);
            let resync = ctx.resync_after(PassReads::of(&desired));
            if ready {
                ctx.confirmed
                    .record(&uid, binding.metadata.generation, Instant::now(), resync);
            }
            Ok(Action::requeue(resync))
        }
    }
}

/// The warnings a full pass leaves on the status; `done` are the actions it carried out.
async fn warnings(
    binding: &PodIdentityBinding,
    ctx: &Context,
    desired: &Desired,
    observed: &Observed,
    done: &[plan::Action],
) -> Vec<StatusWarning> {
    let old = binding
        .status
        .as_ref()
        .map(|s| s.warnings.as_slice())
        .unwrap_or_default();
    let kept = |reason: &str| old.iter().find(|w| w.reason == reason).cloned();
    let ns = &desired.namespace;
    let sa = &desired.service_account.name;
    let mut warnings = Vec::new();
    match ctx.agent_running().await {
        Some(true) => {}
        Some(false) => warnings.push(notices::agent_missing()),
        None => warnings.extend(kept(notices::AGENT_MISSING)),
    }
    let mut annotations = observed
        .service_account
        .as_ref()
        .map(|s| s.annotations.clone())
        .unwrap_or_default();
    annotations.extend(desired.service_account.annotations.clone());
    warnings.extend(notices::irsa(ns, sa, &annotations));

    let moved_now = done.iter().find_map(|a| match a {
        plan::Action::UpdateAssociation(u) => u.role_arn.clone(),
        _ => None,
    });
    let from_now = observed.association.as_ref().map(|a| a.role_arn.clone());
    let moved = match (moved_now, from_now) {
        (Some(to), Some(from)) if to != from => Some((Utc::now(), from, to, true)),
        _ => notices::moved_at(old).and_then(|(since, w)| {
            notices::moved_roles(w).map(|(from, to)| (since, from, to, false))
        }),
    };
    if let Some((since, from, to, now)) = moved {
        match notices::pods_started_before(&ctx.client, ns, sa, since).await {
            Ok(pods) => {
                let warning = notices::old_role_credentials(ns, sa, &from, &to, &pods, since);
                if now {
                    ctx.publish(
                        binding,
                        EventType::Warning,
                        "AssociationRoleChanged",
                        warning.message.clone(),
                    )
                    .await;
                }
                if !pods.is_empty() {
                    warnings.push(warning);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the pods of the ServiceAccount");
                warnings.extend(kept(notices::OLD_ROLE_CREDENTIALS));
            }
        }
    }
    warnings
}

fn outcome_status(
    binding: &PodIdentityBinding,
    desired: &Desired,
    observed: &Observed,
    plan: &Plan,
    applied: &apply::Applied,
    problem: Option<&(usize, Problem)>,
) -> PodIdentityBindingStatus {
    let state_of = |component: Component, ok: State| -> State {
        if let Some((i, p)) = problem {
            if plan.actions[*i].component() == component {
                return State::failed(p.reason, p.message.clone());
            }
            if plan.actions[*i..]
                .iter()
                .any(|a| a.component() == component)
            {
                return State::unknown();
            }
        }
        ok
    };
    let role_ok = match &desired.role {
        DesiredRole::Existing { arn, .. } => match &desired.association.target_role_arn {
            // The operator may only GetRole an existing role, so it cannot see whether the
            // role may chain into the target: the condition says what it must allow.
            Some(target) => State::ok(
                Reason::RoleExisting,
                format!(
                    "using existing role {arn}; it must allow sts:AssumeRole and sts:TagSession on the target role {target}, which the operator cannot check (it only reads the role with GetRole)"
                ),
            ),
            None => State::ok(Reason::RoleExisting, format!("using existing role {arn}")),
        },
        DesiredRole::Managed(m) if desired.association.disable_session_tags => State::ok(
            Reason::RoleCreated,
            format!(
                "role {} is in place; its trust policy is scoped to cluster {} but not to this ServiceAccount because session tags are disabled: any Pod Identity association of that cluster may use it",
                m.arn, desired.cluster_name
            ),
        ),
        DesiredRole::Managed(m) => State::ok(
            Reason::RoleCreated,
            format!(
                "role {} is in place, trusted only by ServiceAccount {}/{} of cluster {}",
                m.arn, desired.namespace, desired.service_account.name, desired.cluster_name
            ),
        ),
    };
    let sa_name = &desired.service_account.name;
    // One taken over from an earlier binding of the same name was made by the operator.
    let ours = |s: &observe::ObservedServiceAccount| s.owned || s.left_by_previous;
    let sa_created = observed.service_account.as_ref().is_some_and(ours)
        || (observed.service_account.is_none() && desired.service_account.create);
    let sa_ok = match &observed.service_account {
        None if !desired.service_account.create => State::failed(
            Reason::ServiceAccountNotFound,
            format!(
                "ServiceAccount {sa_name} does not exist and serviceAccount.create is false: create it, or set serviceAccount.create: true"
            ),
        ),
        Some(s) if !ours(s) => State::ok(
            Reason::ServiceAccountFound,
            format!("using existing ServiceAccount {sa_name}"),
        ),
        _ => State::ok(
            Reason::ServiceAccountCreated,
            format!("ServiceAccount {sa_name} created by the operator"),
        ),
    };
    let assoc_ok = if plan.adopting {
        State::ok(Reason::AssociationAdopted, "association adopted")
    } else {
        State::ok(Reason::AssociationCreated, "association is in place")
    };
    let role = state_of(Component::Role, role_ok);
    let service_account = state_of(Component::ServiceAccount, sa_ok);
    let association = state_of(Component::Association, assoc_ok);
    let ready = match problem {
        Some((_, p)) => State::failed(p.reason, p.message.clone()),
        None if service_account.status != "True" => service_account.clone(),
        None => State::ok(
            Reason::Reconciled,
            "role, ServiceAccount and association are in place",
        ),
    };

    let mut st = binding.status.clone().unwrap_or_default();
    if role.status == "True" {
        st.role_arn = Some(desired.role.arn().to_owned());
    }
    let association_now = applied
        .association
        .clone()
        .or_else(|| observed.association.clone());
    if association.status == "True" {
        st.association_arn = association_now.as_ref().map(|a| a.association_arn.clone());
        st.association_id = association_now.as_ref().map(|a| a.association_id.clone());
        st.external_id = association_now
            .as_ref()
            .filter(|a| a.target_role_arn.is_some())
            .and_then(|a| a.external_id.clone());
    }
    if service_account.status == "True" || problem.is_none() {
        st.service_account = Some(ServiceAccountStatus {
            name: sa_name.clone(),
            created: sa_created,
        });
    }
    set_conditions(
        binding,
        &mut st,
        &Conditions {
            ready,
            role,
            service_account,
            association,
        },
    );
    st
}

fn set_conditions(binding: &PodIdentityBinding, st: &mut PodIdentityBindingStatus, c: &Conditions) {
    let generation = binding.metadata.generation;
    st.conditions = status::merge(&st.conditions, c, generation);
    st.observed_generation = generation;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::PodIdentityBindingSpec;

    fn problem(reason: Reason) -> Problem {
        Problem {
            reason,
            message: "m".into(),
            retry: Retry::Backoff,
        }
    }

    #[test]
    fn throttling_is_quiet_only_for_a_binding_ready_at_its_generation() {
        let mut b = PodIdentityBinding::new("b", PodIdentityBindingSpec::default());
        b.metadata.generation = Some(2);
        let conditions = |ready: State| Conditions {
            ready,
            role: State::unknown(),
            service_account: State::unknown(),
            association: State::unknown(),
        };
        // No status yet: a throttled pass reports itself.
        assert!(!quiet(&b, &problem(Reason::Throttled)));
        let mut st = PodIdentityBindingStatus::default();
        set_conditions(
            &b,
            &mut st,
            &conditions(State::ok(Reason::Reconciled, "ok")),
        );
        b.status = Some(st);
        assert!(quiet(&b, &problem(Reason::Throttled)));
        // Other problems are reported.
        assert!(!quiet(&b, &problem(Reason::Retrying)));
        // Ready for an older generation: the new spec is not in place yet.
        b.metadata.generation = Some(3);
        assert!(!quiet(&b, &problem(Reason::Throttled)));
        // Not ready.
        b.metadata.generation = Some(2);
        let mut st = PodIdentityBindingStatus::default();
        set_conditions(
            &b,
            &mut st,
            &conditions(State::failed(Reason::RolePropagating, "soon")),
        );
        b.status = Some(st);
        assert!(!quiet(&b, &problem(Reason::Throttled)));
    }
}
