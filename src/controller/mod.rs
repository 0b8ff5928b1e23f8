//! The controller: reconciles `PodIdentityBinding`s (DESIGN §3).
//!
//! One pass: finalizer (kube-runtime's `finalizer`, added before the first AWS write)
//! → cluster (DescribeCluster, cached) → [`desired`] (validation) → [`observe`] →
//! [`plan`] (pure) → [`apply`] → status ([`status`], patched only when it changed) →
//! requeue (the resync interval, stretched by [`pacing`] when the bindings' resync
//! would take more than half of an AWS rate, or a delay chosen by the error's class,
//! see [`backoff`]). Deletion runs
//! [`cleanup`]. Events after a pass that ended `Ready` skip the AWS reads while that
//! pass's [`confirmed`] result holds. Watches: bindings (each also wakes the other bindings of its
//! ServiceAccount, which may win or lose it), and ServiceAccounts mapped back to the
//! bindings that name them.
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
//! A pass still running at [`Settings::pass_deadline`] is stopped and fails as
//! `Retrying`; the pass that ends a deleted binding forgets its retry state.

pub mod apply;
pub mod backoff;
pub mod cleanup;
pub mod confirmed;
pub mod desired;
pub mod malformed;
pub mod notices;
pub mod observe;
pub mod pacing;
pub mod plan;
pub mod reconcile;
pub mod report;
pub mod revoke;
pub mod status;
pub mod typed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};

use crate::aws::ratelimit::{Rate, RateLimited};
use crate::aws::{Cluster, EksApi, IamApi};
use crate::crd::PodIdentityBinding;
use crate::guardrails::GuardrailSource;
use crate::{Error, Result};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The EKS cluster this operator runs in.
    pub cluster_name: String,
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// Requeue of a converged binding, to repair AWS drift.
    pub resync: Duration,
    /// Bindings reconciled at the same time.
    pub concurrency: u16,
    /// How long after a role's creation EKS not seeing it is `RolePropagating`.
    pub propagation_window: Duration,
    /// First delay of the exponential backoff of transient failures.
    pub retry_base: Duration,
    /// Longest backoff delay.
    pub retry_max: Duration,
    /// Delay while waiting for propagation or an association's release.
    pub retry_soon: Duration,
    /// Delay after conflicts and environment problems.
    pub retry_slow: Duration,
    /// The guardrails in force.
    pub guardrails: Arc<GuardrailSource>,
    /// How often a guardrail file is checked for changes.
    pub guardrails_poll: Duration,
    /// Where reconciles are counted; `None` counts nothing.
    pub metrics: Option<Arc<crate::runtime::metrics::Metrics>>,
    /// Client-side limit of IAM calls; `None`: unlimited.
    pub iam_rate: Option<Rate>,
    /// Client-side limit of EKS calls; `None`: unlimited.
    pub eks_rate: Option<Rate>,
    /// The operator's own IAM role, which no binding may name.
    pub operator_role_arn: Option<String>,
    /// False only in tests that show what the operator's IAM policy stops on its own:
    /// then the guardrails still place roles (path, prefix) but refuse nothing.
    pub guardrail_checks: bool,
    /// Managed policies a role may hold (IAM's `PoliciesPerRole` quota, 10 unless AWS
    /// raised it); a binding asking for more is refused before any AWS call.
    pub max_managed_policies_per_role: usize,
    /// The longest one reconcile pass may take; a pass still running then is stopped
    /// and fails as `Retrying`.
    pub pass_deadline: Duration,
}

impl Settings {
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Settings {
            cluster_name: cluster_name.into(),
            namespace: None,
            resync: Duration::from_secs(300),
            concurrency: 4,
            propagation_window: Duration::from_secs(120),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            retry_soon: Duration::from_secs(5),
            retry_slow: Duration::from_secs(120),
            guardrails: Arc::new(GuardrailSource::unconfigured()),
            guardrails_poll: Duration::from_secs(10),
            metrics: None,
            iam_rate: Some(Rate::IAM_DEFAULT),
            eks_rate: Some(Rate::EKS_DEFAULT),
            operator_role_arn: None,
            guardrail_checks: true,
            max_managed_policies_per_role: 10,
            pass_deadline: Duration::from_secs(300),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub iam: Arc<dyn IamApi>,
    pub eks: Arc<dyn EksApi>,
    pub settings: Settings,
    /// Who the Events say they come from.
    reporter: Reporter,
    cluster: tokio::sync::OnceCell<Cluster>,
    backoffs: backoff::Backoffs,
    /// Bindings a full pass confirmed within the resync interval.
    pub confirmed: confirmed::Confirmed,
    /// The running controller's cache of bindings, where a pass finds the other
    /// bindings of its namespace; `None` before [`run`] starts (then they are listed).
    bindings_cache: Mutex<Option<(Store<DynamicObject>, Arc<AtomicBool>)>>,
    /// Whether the Pod Identity Agent runs, asked once per resync interval.
    agent: notices::AgentCheck,
}

impl Context {
    pub fn new(
        client: kube::Client,
        iam: Arc<dyn IamApi>,
        eks: Arc<dyn EksApi>,
        settings: Settings,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: "pod-identity-operator".into(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        Arc::new(Context {
            reporter,
            client,
            iam: Arc::new(RateLimited::new(iam, settings.iam_rate)),
            eks: Arc::new(RateLimited::new(eks, settings.eks_rate)),
            settings,
            cluster: tokio::sync::OnceCell::new(),
            backoffs: backoff::Backoffs::default(),
            confirmed: confirmed::Confirmed::default(),
            bindings_cache: Mutex::new(None),
            agent: notices::AgentCheck::default(),
        })
    }

    fn set_bindings_cache(&self, store: Store<DynamicObject>, synced: Arc<AtomicBool>) {
        *self
            .bindings_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((store, synced));
    }

    /// The controller's cache of bindings once it has synced, if it runs.
    pub fn synced_bindings_cache(&self) -> Option<Store<DynamicObject>> {
        let (store, synced) = self
            .bindings_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        synced.load(Ordering::Acquire).then_some(store)
    }

    /// The cluster, described once; `None` when it does not exist.
    pub async fn cluster(&self) -> Result<Option<Cluster>> {
        if let Some(c) = self.cluster.get() {
            return Ok(Some(c.clone()));
        }
        match self
            .eks
            .describe_cluster(&self.settings.cluster_name)
            .await?
        {
            Some(c) => Ok(Some(self.cluster.get_or_init(|| async { c }).await.clone())),
            None => Ok(None),
        }
    }

    /// How the status reports a failure. A refusal by IAM names the statement of this
    /// installation's policy (`operator_policy`) that would allow the call, or says that
    /// the operator should not need it.
    pub fn problem(&self, err: &Error, role_within_propagation_window: bool) -> status::Problem {
        let mut problem = status::problem_of(err, role_within_propagation_window);
        if problem.reason != status::Reason::AccessDenied {
            return problem;
        }
        let (Error::Aws(aws), Some(cluster)) = (err, self.cluster.get()) else {
            return problem;
        };
        let (Some(inst), Some((action, resource))) = (
            crate::operator_policy::Installation::of_cluster(cluster),
            crate::operator_policy::denied_request(&aws.message),
        ) else {
            return problem;
        };
        let inst = inst.with_operator_role(self.settings.operator_role_arn.clone());
        let policy =
            crate::operator_policy::permissions(&inst, &self.settings.guardrails.current());
        problem.message = format!(
            "{} failed: {}: {}",
            aws.operation,
            aws.code,
            crate::operator_policy::explain_denial(&policy, &action, &resource)
        );
        problem
    }

    /// Publishes an Event on the binding; a failure to publish is logged, not fatal.
    ///
    /// A `Recorder` is made for each Event: a long-lived one keeps every Event it sent
    /// for six minutes, to count repeats into a series: at a cold start of a thousand
    /// bindings (five Events each) that cache added some 16 MiB to the operator's peak
    /// memory (`benches/scale.rs`). Repeats are rare here: a problem's Warning is
    /// published only when the problem is new.
    pub async fn publish(
        &self,
        binding: &PodIdentityBinding,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = apply::event(type_, reason, note);
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(e) = recorder.publish(&ev, &binding.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    /// Whether the Pod Identity Agent runs (`None`: unknown), noted in the metrics.
    pub async fn agent_running(&self) -> Option<bool> {
        let running = self.agent.running(&self.client, self.settings.resync).await;
        if let (Some(m), Some(r)) = (&self.settings.metrics, running) {
            m.set_agent_running(r);
        }
        running
    }

    /// When a converged binding whose passes read `reads` is due again: the resync
    /// interval, stretched to the count of bindings and the AWS rates ([`pacing`]).
    pub fn resync_after(&self, reads: pacing::PassReads) -> Duration {
        let bindings = self
            .synced_bindings_cache()
            .map_or(1, |store| store.len().max(1));
        pacing::jittered(pacing::resync_interval(
            self.settings.resync,
            bindings,
            reads,
            self.settings.iam_rate,
            self.settings.eks_rate,
        ))
    }

    pub fn record_success(&self, uid: &str) {
        self.backoffs.succeeded(uid);
    }

    /// Bindings whose retry state or recent trust write is remembered.
    pub fn tracked_bindings(&self) -> usize {
        self.backoffs.tracked()
    }

    /// The requeue for a problem of this binding (see [`backoff`]).
    pub fn requeue(&self, meta: &kube::api::ObjectMeta, retry: status::Retry) -> Action {
        let uid = meta.uid.as_deref().unwrap_or_default();
        match self
            .backoffs
            .failed(&self.settings, uid, backoff::Phase::of(meta), retry)
        {
            Some(delay) => Action::requeue(delay),
            None => Action::await_change(),
        }
    }
}

fn error_policy(obj: Arc<DynamicObject>, error: &Error, ctx: Arc<Context>) -> Action {
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
    ctx.requeue(&obj.metadata, retry)
}

/// Reads the watched object as a binding and reconciles it; one that cannot be read is
/// reported on its own status.
async fn reconcile_object(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    let uid = obj.uid().unwrap_or_default();
    if let Some(left) = ctx.backoffs.hold(&uid, backoff::Phase::of(&obj.metadata)) {
        tracing::debug!(binding = %obj.name_any(), ?left, "woken during backoff; waiting on");
        return Ok(Action::requeue(left));
    }
    use tracing::Instrument;
    let span = tracing::info_span!(
        "reconcile",
        namespace = obj.namespace().unwrap_or_default(),
        binding = obj.name_any(),
        generation = obj.metadata.generation.unwrap_or_default(),
    );
    let metrics = ctx.settings.metrics.clone();
    let deadline = ctx.settings.pass_deadline;
    let pass = async {
        tracing::debug!("reconcile pass started");
        let run = async {
            match typed::typed(&obj) {
                Ok(b) => reconcile::reconcile(Arc::new(b), ctx.clone()).await,
                Err((field, why)) => malformed::handle(&obj, &field, &why, &ctx).await,
            }
        };
        // A pass stopped at its deadline leaves nothing half-done that the next pass
        // cannot take over: every step observes before it writes.
        let result = match tokio::time::timeout(deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(pass_timed_out(&obj, &ctx, deadline).await),
        };
        // A deleted binding's last pass: nothing about it is needed any more.
        if result.is_ok() && obj.metadata.deletion_timestamp.is_some() {
            ctx.backoffs.forget(&uid);
            ctx.confirmed.forget(&uid);
        }
        tracing::debug!(ok = result.is_ok(), "reconcile pass finished");
        result
    };
    match metrics {
        Some(m) => {
            let fallback = if obj.metadata.deletion_timestamp.is_some() {
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
async fn pass_timed_out(obj: &DynamicObject, ctx: &Context, deadline: Duration) -> Error {
    let err = Error::PassTimeout(deadline);
    tracing::warn!(binding = %obj.name_any(), ?deadline, "reconcile pass stopped at its deadline");
    if let Ok(binding) = typed::typed(obj) {
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
        if let Err(e) = report::write_status(ctx, &binding, st, Some(&problem)).await {
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
fn slim(obj: &mut DynamicObject) {
    obj.metadata.managed_fields = None;
    if let Some(a) = obj.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// The ServiceAccount a watched binding names, read without typing the whole object.
pub(crate) fn sa_name_of(obj: &DynamicObject) -> String {
    obj.data
        .pointer("/spec/serviceAccount/name")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| obj.name_any())
}

fn previous_sa_of(obj: &DynamicObject) -> Option<String> {
    obj.data
        .pointer("/status/serviceAccount/name")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    // Bindings are watched untyped: one that cannot be read must not stop the watch.
    let ar = ApiResource::erase::<PodIdentityBinding>(&());
    let (bindings, sas): (Api<DynamicObject>, Api<ServiceAccount>) = match &ctx.settings.namespace {
        Some(ns) => (
            Api::namespaced_with(client.clone(), ns, &ar),
            Api::namespaced(client, ns),
        ),
        None => (Api::all_with(client.clone(), &ar), Api::all(client)),
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
    let writer = reflector::store::Writer::new(ar.clone());
    let reader = writer.as_reader();
    // The cache's first full listing, seen here rather than through
    // `Store::wait_until_ready`: that wakes only its latest waiter, and the controller
    // itself waits on it before its first reconcile.
    let synced = Arc::new(AtomicBool::new(false));
    let mark_synced = synced.clone();
    let triggers = watcher(bindings.clone(), watcher::Config::default())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect(move |event| {
            if matches!(event, Ok(watcher::Event::InitDone)) {
                mark_synced.store(true, Ordering::Release);
            }
        })
        .touched_objects();
    let controller = Controller::for_stream_with(triggers, reader, ar.clone())
        .reconcile_all_on(guardrail_changes);
    let store = controller.store();
    ctx.set_bindings_cache(store.clone(), synced.clone());
    if let Some(m) = &ctx.settings.metrics {
        m.watch_bindings(store.clone(), synced.clone());
    }
    let siblings_store = store.clone();
    let (siblings_ar, sa_ar) = (ar.clone(), ar.clone());
    let siblings_ctx = ctx.clone();
    controller
        // A binding that changes its ServiceAccount can win or lose it against another
        // binding: the others naming the same ServiceAccount are looked at again.
        .watches_with(
            bindings,
            ar.clone(),
            watcher::Config::default(),
            move |b: DynamicObject| {
                let ns = b.namespace();
                let mut names = vec![sa_name_of(&b)];
                names.extend(previous_sa_of(&b));
                siblings_store
                    .state()
                    .into_iter()
                    .filter(|o| o.namespace() == ns && o.uid() != b.uid())
                    .filter(|o| names.contains(&sa_name_of(o)))
                    .map(|o| {
                        // The sibling may win or lose the ServiceAccount: a full pass.
                        siblings_ctx.confirmed.forget(&o.uid().unwrap_or_default());
                        ObjectRef::from_obj_with(&*o, siblings_ar.clone())
                    })
                    .collect::<Vec<_>>()
            },
        )
        .watches(
            sas,
            watcher::Config::default(),
            move |sa: ServiceAccount| {
                let ns = sa.namespace();
                let name = sa.name_any();
                store
                    .state()
                    .into_iter()
                    .filter(|b| b.namespace() == ns)
                    .filter(|b| {
                        sa_name_of(b) == name || previous_sa_of(b).is_some_and(|s| s == name)
                    })
                    .map(|b| ObjectRef::from_obj_with(&*b, sa_ar.clone()))
                    .collect::<Vec<_>>()
            },
        )
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
