//! The controller's watch and one pass of a binding: the watch ([`run`]) wakes a
//! binding on its changes and those of the ServiceAccount it names; the pass
//! ([`reconcile`]) runs the stages in order ([`super::desired`], [`super::observe`],
//! [`super::plan`], [`super::apply`]) and hands the outcome to [`super::report`], the
//! status's one writer. No stage calls a later one.
//!
//! A pass of a binding already Ready for its generation that AWS throttles changes
//! nothing visible: the resources were in place when last checked, and the check is
//! retried after a backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::time::Instant;

use crate::crd::{FINALIZER, PodIdentityBinding};
use crate::guardrails::{Effects, effects_unchecked, evaluate, not_the_operators_role};
use crate::{Error, Result};

use super::context::Context;
use super::desired::{self, Desired};
use super::observe::{self, Observed};
use super::pacing::PassReads;
use super::plan;
use super::status::{self, Problem, Reason, Retry};
use super::typed::CachedBinding;
use super::{apply, backoff, cleanup, malformed, report, sa_index, sweep};

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // A binding that cannot be read is kept as it is ([`typed`]): it must not stop the
    // watch.
    let (bindings, sas): (Api<CachedBinding>, Api<PartialObjectMeta<ServiceAccount>>) =
        match &ctx.settings.namespace {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client, ns),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
    let guardrails = (ctx.settings.guardrails.clone(), ctx.clone());
    let poll = ctx.settings.guardrails_poll;
    let guardrail_changes = futures::stream::unfold(guardrails, move |(g, ctx)| async move {
        loop {
            tokio::time::sleep(poll).await;
            if g.reload() {
                // Every binding is looked at again under the new rules.
                ctx.confirmed.clear();
                return Some(((), (g, ctx)));
            }
        }
    });
    // Every change wakes its binding, the operator's own status writes included: a
    // retry still waits out its backoff ([`backoff`]), and a pass after a `Ready` one
    // skips the AWS reads ([`confirmed`]).
    let writer = reflector::store::Writer::default();
    let reader = writer.as_reader();
    // The cache's first full listing, seen here rather than through
    // `Store::wait_until_ready`: that wakes only its latest waiter, and the controller
    // itself waits on it before its first reconcile.
    let synced = Arc::new(AtomicBool::new(false));
    let mark_synced = synced.clone();
    // A binding whose change matters to the others naming its ServiceAccount (they may
    // win or lose it) wakes them for a full pass; the index says which ([`sa_index`]).
    let (wake, woken) = futures::channel::mpsc::unbounded();
    let index_ctx = ctx.clone();
    let wake_others = move |others: Vec<(sa_index::BindingKey, String)>| {
        for ((ns, name), uid) in others {
            index_ctx.confirmed.forget(&uid);
            let _ = wake.unbounded_send(ObjectRef::new(&name).within(&ns));
        }
    };
    let index = ctx.clone();
    let triggers = watcher(bindings, list_in_pages())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect(move |event| match event {
            Ok(watcher::Event::Init) => index.service_accounts.relist_started(),
            Ok(watcher::Event::InitApply(b) | watcher::Event::Apply(b)) => {
                wake_others(index.service_accounts.applied(b));
            }
            Ok(watcher::Event::Delete(b)) => wake_others(index.service_accounts.deleted(b)),
            Ok(watcher::Event::InitDone) => {
                wake_others(index.service_accounts.relist_done());
                mark_synced.store(true, Ordering::Release);
            }
            Err(_) => {}
        })
        .touched_objects();
    let every = sweep::period(ctx.settings.resync);
    let sweep_ctx = ctx.clone();
    let late = sweep::sweeps(
        every,
        move |now| sweep::late_uids(&sweep_ctx.confirmed, &sweep_ctx.backoffs, now, every),
        reader.clone(),
        {
            let metrics = ctx.settings.metrics.clone();
            move |late| {
                if let Some(m) = &metrics {
                    m.set_late(late);
                }
            }
        },
    );
    let controller = Controller::for_stream(triggers, reader)
        .reconcile_all_on(guardrail_changes)
        .reconcile_on(woken)
        .reconcile_on(late);
    let store = controller.store();
    ctx.set_bindings_cache(store.clone(), synced.clone());
    if let Some(m) = &ctx.settings.metrics {
        m.watch_bindings(store, synced.clone());
    }
    let sa_ctx = ctx.clone();
    // A ServiceAccount's change wakes the bindings naming it; its name is all that is
    // read, so it is watched as metadata only.
    let sa_changes = watcher(sas, list_in_pages())
        .default_backoff()
        .touched_objects();
    controller
        .watches_stream(sa_changes, move |sa: PartialObjectMeta<ServiceAccount>| {
            let ns = sa.namespace().unwrap_or_default();
            sa_ctx
                .service_accounts
                .naming(&ns, &sa.name_any())
                .into_iter()
                .map(|b| ObjectRef::new(&b).within(&ns))
                .collect::<Vec<_>>()
        })
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.settings.concurrency),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile_object, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
}

fn error_policy(obj: Arc<CachedBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(binding = %obj.name_any(), %error, "reconcile failed");
    let problem = ctx.problem(inside_finalizer(error), true);
    let retry = match problem.retry {
        // A failed cleanup is retried even when the error is the user's: the binding
        // is going away and only a retry can finish that.
        status::Retry::OnChange => status::Retry::Slow,
        r => r,
    };
    ctx.requeue(obj.meta(), retry)
}

/// Reads the watched object as a binding and reconciles it; one that cannot be read is
/// reported on its own status.
async fn reconcile_object(obj: Arc<CachedBinding>, ctx: Arc<Context>) -> Result<Action> {
    let uid = obj.uid().unwrap_or_default();
    if let Some(left) = ctx.backoffs.hold(&uid, backoff::Phase::of(obj.meta())) {
        tracing::debug!(binding = %obj.name_any(), ?left, "woken during backoff; waiting on");
        return Ok(Action::requeue(left));
    }
    use tracing::Instrument;
    let span = tracing::info_span!(
        "reconcile",
        namespace = obj.namespace().unwrap_or_default(),
        binding = obj.name_any(),
        generation = obj.meta().generation.unwrap_or_default(),
    );
    let metrics = ctx.settings.metrics.clone();
    let deadline = ctx.settings.pass_deadline;
    let pass = async {
        tracing::debug!("reconcile pass started");
        let run = async {
            match obj.as_ref() {
                CachedBinding::Typed(b) => reconcile(Arc::new(b.clone()), ctx.clone()).await,
                CachedBinding::Unreadable(u) => {
                    malformed::handle(&u.raw, &u.field, &u.why, &ctx).await
                }
            }
        };
        // A pass stopped at its deadline leaves nothing half-done that the next pass
        // cannot take over: every step observes before it writes.
        let result = match tokio::time::timeout(deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(pass_timed_out(&obj, &ctx, deadline).await),
        };
        // A deleted binding's last pass: nothing about it is needed any more.
        if result.is_ok() && obj.meta().deletion_timestamp.is_some() {
            ctx.backoffs.forget(&uid);
            ctx.confirmed.forget(&uid);
        }
        tracing::debug!(ok = result.is_ok(), "reconcile pass finished");
        result
    };
    match metrics {
        Some(m) => {
            let fallback = if obj.meta().deletion_timestamp.is_some() {
                "Deleted"
            } else {
                "FinalizerAdded"
            };
            m.time_reconcile(pass, fallback, |e| failure_reason(e).to_owned())
                .instrument(span)
                .await
        }
        None => pass.instrument(span).await,
    }
}

/// Reports a pass stopped at its deadline on the binding's status (`Retrying`), and
/// returns the error the pass fails with.
async fn pass_timed_out(obj: &CachedBinding, ctx: &Context, deadline: Duration) -> Error {
    let err = Error::PassTimeout(deadline);
    tracing::warn!(binding = %obj.name_any(), ?deadline, "reconcile pass stopped at its deadline");
    if let CachedBinding::Typed(binding) = obj {
        let problem = status::problem_of(&err, false);
        let st = report::not_ready(binding, &problem);
        if let Err(e) = report::write_status(ctx, binding, st, Some(&problem)).await {
            tracing::warn!(error = %e, "cannot report the pass deadline");
        }
    }
    err
}

/// The reason a failed pass is counted under: that of the error inside the finalizer's.
fn failure_reason(error: &Error) -> &'static str {
    status::problem_of(inside_finalizer(error), false)
        .reason
        .as_str()
}

/// The error the pass failed with, taken out of the finalizer's wrapping.
fn inside_finalizer(error: &Error) -> &Error {
    use kube::runtime::finalizer::Error as Fin;
    match error {
        Error::Finalizer(f) => match f.as_ref() {
            Fin::ApplyFailed(e) | Fin::CleanupFailed(e) => e,
            _ => error,
        },
        e => e,
    }
}

/// Drops what no pass reads from a cached binding: field ownership and the copy of the
/// whole object that `kubectl apply` keeps in an annotation.
fn slim(obj: &mut CachedBinding) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The watches' configuration: a (re)listing comes in pages of 100 objects, so the
/// objects of one page, read whole before [`slim`] trims them, stay few.
fn list_in_pages() -> watcher::Config {
    watcher::Config::default().page_size(100)
}

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

/// Takes away the access a denied binding was granted before, and says so in the
/// problem; true when an association was removed.
async fn revoke(binding: &PodIdentityBinding, ctx: &Context, problem: &mut Problem) -> bool {
    match super::revoke::revoke(binding, ctx).await {
        Ok(Some(revoked)) => {
            problem.message = format!("{}; {revoked}", problem.message);
            ctx.publish(binding, EventType::Warning, "AccessRevoked", revoked)
                .await;
            true
        }
        Ok(None) => false,
        Err(e) => {
            problem.message = format!(
                "{}; revoking the access already granted failed ({e}), retrying",
                problem.message
            );
            problem.retry = Retry::Backoff;
            false
        }
    }
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
            let revoked =
                problem.reason == Reason::PolicyDenied && revoke(binding, ctx, &mut problem).await;
            let mut st = report::not_ready(binding, &problem);
            if revoked {
                st.association_id = None;
                st.association_arn = None;
                st.external_id = None;
            }
            report::write_status(ctx, binding, st, Some(&problem)).await?;
            return Ok(ctx.requeue(meta, problem.retry));
        }
    };
    let plan = plan::plan(&desired, &observed);
    if let Some(b) = &plan.blocked {
        let (st, problem) = report::blocked(binding, b);
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
    let mut st = report::outcome(
        binding,
        &desired,
        &observed,
        &plan,
        &applied,
        problem.as_ref(),
    );
    st.warnings = report::warnings(binding, ctx, &desired, &observed, &plan.actions[..done]).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::report::set_conditions;
    use crate::controller::status::{Conditions, State};
    use crate::crd::{PodIdentityBindingSpec, PodIdentityBindingStatus};

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
