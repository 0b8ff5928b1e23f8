//! The controller: reconciles `PodIdentityBinding`s (DESIGN §3).
//!
//! One pass: finalizer (kube-runtime's `finalizer`, added before the first AWS write)
//! → cluster (DescribeCluster, cached) → [`desired`] (validation) → [`observe`] →
//! [`plan`] (pure) → [`apply`] → status ([`status`], patched only when it changed) →
//! requeue (the resync interval, or a delay chosen by the error's class). Deletion runs
//! [`cleanup`]. Events after a pass that ended `Ready` (mostly of the operator's own
//! making) skip the AWS reads while that pass's [`confirmed`] result holds. Watches: bindings (each also wakes the other bindings of its
//! ServiceAccount, which may win or lose it), and ServiceAccounts mapped back to the
//! bindings that name them.
//!
//! Guardrails ([`crate::config`]) are evaluated after validation and before any AWS
//! call; a guardrail file is polled for changes and every binding is reconciled again
//! when it changes.
//!
//! Not implemented: leader election, metrics.

pub mod apply;
pub mod cleanup;
pub mod confirmed;
pub mod desired;
pub mod malformed;
pub mod observe;
pub mod plan;
pub mod reconcile;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::aws::{Cluster, EksApi, IamApi};
use crate::config::GuardrailSource;
use crate::crd::PodIdentityBinding;
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
            guardrails: Arc::new(GuardrailSource::baseline()),
            guardrails_poll: Duration::from_secs(10),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub iam: Arc<dyn IamApi>,
    pub eks: Arc<dyn EksApi>,
    pub settings: Settings,
    recorder: Recorder,
    cluster: tokio::sync::OnceCell<Cluster>,
    failures: Mutex<HashMap<String, u32>>,
    /// Bindings a full pass confirmed within the resync interval.
    pub confirmed: confirmed::Confirmed,
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
            recorder: Recorder::new(client.clone(), reporter),
            client,
            iam,
            eks,
            settings,
            cluster: tokio::sync::OnceCell::new(),
            failures: Mutex::new(HashMap::new()),
            confirmed: confirmed::Confirmed::default(),
        })
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

    /// Publishes an Event on the binding; a failure to publish is logged, not fatal.
    pub async fn publish(
        &self,
        binding: &PodIdentityBinding,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = apply::event(type_, reason, note);
        if let Err(e) = self.recorder.publish(&ev, &binding.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    fn lock_failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // The map holds counters only; a panic while holding it leaves it usable.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a failure of this binding and returns how many came before in a row.
    pub fn record_failure(&self, uid: &str) -> u32 {
        let mut map = self.lock_failures();
        let n = map.entry(uid.to_owned()).or_insert(0);
        *n += 1;
        *n - 1
    }

    pub fn record_success(&self, uid: &str) {
        self.lock_failures().remove(uid);
    }

    /// The requeue for a problem of this binding.
    pub fn requeue(&self, uid: &str, retry: status::Retry) -> Action {
        let s = &self.settings;
        match retry {
            status::Retry::Backoff => Action::requeue(status::backoff(
                s.retry_base,
                s.retry_max,
                self.record_failure(uid),
            )),
            status::Retry::Soon => Action::requeue(s.retry_soon),
            status::Retry::Slow => Action::requeue(s.retry_slow),
            status::Retry::OnChange => Action::await_change(),
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
    let problem = status::problem_of(inner, true);
    let retry = match problem.retry {
        // A failed cleanup is retried even when the error is the user's: the binding
        // is going away and only a retry can finish that.
        status::Retry::OnChange => status::Retry::Slow,
        r => r,
    };
    ctx.requeue(&obj.uid().unwrap_or_default(), retry)
}

/// Reads the watched object as a binding and reconciles it; one that cannot be read is
/// reported on its own status.
async fn reconcile_object(obj: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action> {
    match malformed::typed(&obj) {
        Ok(b) => reconcile::reconcile(Arc::new(b), ctx).await,
        Err((field, why)) => malformed::report(&obj, &field, &why, &ctx).await,
    }
}

/// The ServiceAccount a watched binding names, read without typing the whole object.
fn sa_name_of(obj: &DynamicObject) -> String {
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
    let controller = Controller::new_with(bindings.clone(), watcher::Config::default(), ar.clone())
        .reconcile_all_on(guardrail_changes);
    let store = controller.store();
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
