//! The controller: reconciles `PodIdentityBinding`s (DESIGN §3).
//!
//! One pass: finalizer (kube-runtime's `finalizer`, added before the first AWS write)
//! → cluster (DescribeCluster, cached) → [`desired`] (validation) → [`observe`] →
//! [`plan`] (pure) → [`apply`] → status ([`status`], patched only when it changed) →
//! requeue (the resync interval, stretched by [`pacing`] when the bindings' resync
//! would take more than half of an AWS rate, or a delay chosen by the error's class,
//! see [`backoff`]). Deletion runs
//! [`cleanup`]. Events after a pass that ended `Ready` skip the AWS reads while that
//! pass's [`confirmed`] result holds. Watches: bindings (one whose change matters to the
//! others naming its ServiceAccount, which may win or lose it, also wakes them: see
//! [`sa_index`]), and ServiceAccounts mapped back to the bindings that name them.
//!
//! Every change of a binding wakes it, its own status writes included: a retry still
//! waits out its [`backoff`], and a pass after a `Ready` one skips the AWS reads
//! ([`confirmed`]). AWS calls go through a client-side token bucket
//! per service ([`crate::aws::ratelimit`], `Settings::iam_rate`/`eks_rate`), and at most
//! `Settings::concurrency` bindings are reconciled at once.
//!
//! Guardrails ([`crate::guardrails`]) are evaluated after validation and before any AWS
//! call; a guardrail file is polled for changes and every binding is reconciled again
//! when it changes.
//!
//! With [`Settings::metrics`] set, each pass is timed and counted, in flight included,
//! in one place ([`reconcile_object`]), and the bindings cache feeds the bindings gauge
//! and readiness ([`crate::runtime::metrics`]). Each pass runs in a `reconcile` span
//! carrying the binding's `namespace`, name (`binding`) and `generation`. Leader
//! election wraps [`run`] from outside ([`crate::runtime::leader`]).
//!
//! Should a requeue never fire, the [`sweep`] wakes the binding once its resync or
//! retry is a sweep period late.
//!
//! A pass still running at [`Settings::pass_deadline`] is stopped and fails as
//! `Retrying`; the pass that ends a deleted binding forgets its retry state.
//!
//! What every pass shares is the [`context`] ([`Context`], with its [`settings`]); the
//! children take it from there, never from this file, which only declares them and
//! wires the controller ([`run`]).

pub mod apply;
pub mod backoff;
pub mod cleanup;
pub mod confirmed;
pub mod context;
pub mod desired;
#[cfg(test)]
mod fixtures;
pub mod malformed;
pub mod notices;
pub mod observe;
pub mod pacing;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod revoke;
pub mod sa_index;
pub mod settings;
pub mod status;
pub mod sweep;
pub mod typed;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Resource;
use kube::ResourceExt;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};

pub use context::Context;
pub use settings::Settings;
pub use typed::CachedBinding;

use crate::{Error, Result};

fn error_policy(obj: Arc<CachedBinding>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(binding = %obj.name_any(), %error, "reconcile failed");
    let inner = match error {
        Error::Finalizer(f) => match f.as_ref() {
            kube::runtime::finalizer::Error::ApplyFailed(e)
            | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
            _ => error,
        },
        e => e,
    };
    let problem = ctx.problem(inner, true);
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
                CachedBinding::Typed(b) => {
                    reconcile::reconcile(Arc::new(b.clone()), ctx.clone()).await
                }
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
        let mut st = binding.status.clone().unwrap_or_default();
        let conditions = status::Conditions {
            ready: status::State::failed(problem.reason, problem.message.clone()),
            role: status::State::unknown(),
            service_account: status::State::unknown(),
            association: status::State::unknown(),
        };
        st.conditions = status::merge(&st.conditions, &conditions, binding.metadata.generation);
        st.observed_generation = binding.metadata.generation;
        if let Err(e) = report::write_status(ctx, binding, st, Some(&problem)).await {
            tracing::warn!(error = %e, "cannot report the pass deadline");
        }
    }
    err
}

/// The reason a failed pass is counted under: that of the error inside the finalizer's.
fn failure_reason(error: &Error) -> &'static str {
    use kube::runtime::finalizer::Error as Fin;
    let inner = match error {
        Error::Finalizer(f) => match f.as_ref() {
            Fin::ApplyFailed(e) | Fin::CleanupFailed(e) => e,
            _ => error,
        },
        e => e,
    };
    status::problem_of(inner, false).reason.as_str()
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
