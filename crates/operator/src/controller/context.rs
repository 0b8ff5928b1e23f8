//! What every reconcile shares ([`Context`]): the clients, the [`Settings`], and the
//! state kept between passes (the cluster described once, retry backoffs, passes
//! confirmed, the bindings cache of the running controller, whether the Pod Identity
//! Agent runs).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;

use super::settings::Settings;
use super::typed::CachedBinding;
use super::{backoff, confirmed, notices, pacing, sa_index, status};
use crate::aws::{Cluster, EksApi, IamApi};
use crate::crd::PodIdentityBinding;
use crate::{Error, Result};

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub iam: Arc<dyn IamApi>,
    pub eks: Arc<dyn EksApi>,
    pub settings: Settings,
    /// Who the Events say they come from.
    reporter: Reporter,
    cluster: tokio::sync::OnceCell<Cluster>,
    pub(super) backoffs: backoff::Backoffs,
    /// Bindings a full pass confirmed within the resync interval.
    pub confirmed: confirmed::Confirmed,
    /// The running controller's cache of bindings, where a pass finds the other
    /// bindings of its namespace; `None` before [`run`](super::run) starts (then they are listed).
    bindings_cache: Mutex<Option<(Store<CachedBinding>, Arc<AtomicBool>)>>,
    /// Whether the Pod Identity Agent runs, asked once per resync interval.
    agent: notices::AgentCheck,
    /// Which bindings name which ServiceAccount, kept by the running controller.
    pub service_accounts: sa_index::ServiceAccountIndex,
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
            iam: settings.aws_stack(settings.iam_rate).iam(iam),
            eks: settings.aws_stack(settings.eks_rate).eks(eks),
            settings,
            cluster: tokio::sync::OnceCell::new(),
            backoffs: backoff::Backoffs::default(),
            confirmed: confirmed::Confirmed::default(),
            bindings_cache: Mutex::new(None),
            agent: notices::AgentCheck::default(),
            service_accounts: sa_index::ServiceAccountIndex::default(),
        })
    }

    pub(super) fn set_bindings_cache(&self, store: Store<CachedBinding>, synced: Arc<AtomicBool>) {
        *self
            .bindings_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((store, synced));
    }

    /// The bindings of `namespace` naming `service_account` (in their spec or as the one
    /// they had), from the running controller's cache once it has synced; `None` before.
    pub fn cached_bindings_naming(
        &self,
        namespace: &str,
        service_account: &str,
    ) -> Option<Vec<Arc<CachedBinding>>> {
        let store = self.synced_bindings_cache()?;
        Some(
            self.service_accounts
                .naming(namespace, service_account)
                .into_iter()
                .filter_map(|name| store.get(&ObjectRef::new(&name).within(namespace)))
                .collect(),
        )
    }

    /// The controller's cache of bindings once it has synced, if it runs.
    pub fn synced_bindings_cache(&self) -> Option<Store<CachedBinding>> {
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
    /// memory (`benches/scale/`). Repeats are rare here: a problem's Warning is
    /// published only when the problem is new.
    pub async fn publish(
        &self,
        binding: &PodIdentityBinding,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = event(type_, reason, note);
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

/// An Event of `type_` with this reason and note (at most 1000 characters).
fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: reason.to_owned(),
        secondary: None,
    }
}
