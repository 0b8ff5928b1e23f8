//! The operator's Prometheus metrics, served on `/metrics` in the text format
//! (OpenMetrics flavour, which Prometheus scrapes as is), with `prometheus-client`.
//!
//! Every name starts with `pod_identity_operator_`:
//! - `reconciles_total{result, reason}`: finished reconcile passes; `result` is `ok` or
//!   `error`, `reason` the binding's `Ready` reason the pass reported (`Reconciled`,
//!   `Retrying`, `PolicyDenied`, ...), `FinalizerAdded` or `Deleted` for passes that
//!   only add the finalizer or finish a deletion, or the error's reason for a failed
//!   pass that reported none. A pass aborted (lost lease, shutdown deadline) is not
//!   counted.
//! - `reconcile_duration_seconds`: histogram of the same passes' wall time.
//! - `aws_calls_total{service, operation, outcome}`: every IAM and EKS call, as the
//!   metering layer ([`crate::aws::metered`]) reports it to these metrics, its
//!   [`CallObserver`]; `outcome` is `ok`, `throttled`, or the error
//!   class (`transient`, `propagation`, `user_input`, `conflict`, `access_denied`,
//!   `not_found`, `quota`), or `bad_answer` (an answer the operator could not use).
//! - `bindings{ready, reason}`: bindings in the controller's cache by their `Ready`
//!   condition's status (`True`, `False`, `Unknown`; no condition counts as `Unknown`)
//!   and reason (empty without one, `Other` for a value that is not a reason name),
//!   computed at scrape time; a series per pair present, and `ready` with an empty
//!   reason at zero for each status none has; all zero on a replica that is not
//!   leading (it has no cache).
//! - `leader`: 1 while this process holds the lease and reconciles (always 1 without
//!   leader election once the controller runs), else 0.
//! - `reconciles_in_flight`: reconcile passes running right now, i.e. bindings taken
//!   off the controller's queue and not finished (at most `--concurrency`). The depth
//!   of kube-runtime's scheduler queue itself is not exposed by kube-runtime, so it is
//!   not measured.
//! - `build_info{version}`: always 1.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::controller::typed::CachedBinding;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::health::Health;
use crate::aws::Service;
use crate::aws::layer::{Call, CallObserver};
use crate::error::ErrorClass;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReconcileLabels {
    result: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AwsLabels {
    service: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ReadyLabels {
    ready: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The `outcome` label of an AWS call: `ok`, `throttled`, the error class, or
/// `bad_answer` for an answer the adapter could not use.
pub fn aws_outcome(error: Option<&crate::aws::Error>) -> &'static str {
    let Some(e) = error else { return "ok" };
    let Some(e) = e.aws() else {
        return "bad_answer";
    };
    if e.throttled {
        return "throttled";
    }
    match e.class {
        ErrorClass::Transient => "transient",
        ErrorClass::Propagation => "propagation",
        ErrorClass::UserInput => "user_input",
        ErrorClass::Conflict => "conflict",
        ErrorClass::AccessDenied => "access_denied",
        ErrorClass::NotFound => "not_found",
        ErrorClass::Quota => "quota",
    }
}

/// The `ready` label of a binding read from the cache.
pub fn ready_status(obj: &CachedBinding) -> &'static str {
    ready_labels(obj).ready
}

/// The `ready` and `reason` labels of a binding read from the cache. A reason is kept
/// only when it looks like one (a short CamelCase name), so a hand-edited status cannot
/// make series without bound.
fn ready_labels(obj: &CachedBinding) -> ReadyLabels {
    let ready = obj.ready();
    let reason = match ready.and_then(|(_, reason)| reason) {
        None | Some("") => String::new(),
        Some(r) if r.len() <= 64 && r.chars().all(|c| c.is_ascii_alphanumeric()) => r.into(),
        Some(_) => "Other".into(),
    };
    ReadyLabels {
        ready: match ready.map(|(status, _)| status) {
            Some("True") => "True",
            Some("False") => "False",
            _ => "Unknown",
        },
        reason,
    }
}

tokio::task_local! {
    /// The `Ready` reason the running reconcile pass reported, if any.
    static REPORTED_REASON: RefCell<Option<String>>;
}

/// Notes the `Ready` reason the running reconcile pass reports; outside a pass timed by
/// [`Metrics::time_reconcile`] it does nothing.
pub fn note_reason(reason: &str) {
    let _ = REPORTED_REASON.try_with(|r| *r.borrow_mut() = Some(reason.to_owned()));
}

/// All metrics of one process, and the health state they share.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Histogram,
    aws_calls: Family<AwsLabels, Counter>,
    bindings: Family<ReadyLabels, Gauge>,
    leader: Gauge,
    in_flight: Gauge,
    late: Gauge,
    agent_running: Gauge,
    cache: Mutex<Option<Store<CachedBinding>>>,
    health: Arc<Health>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(health: Arc<Health>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("pod_identity_operator");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Finished reconcile passes by result and Ready reason",
            reconciles.clone(),
        );
        // 5 ms .. ~82 s
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        registry.register(
            "reconcile_duration_seconds",
            "Wall time of finished reconcile passes",
            duration.clone(),
        );
        let aws_calls = Family::<AwsLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "AWS API calls by service, operation and outcome (ok, throttled, or the error class)",
            aws_calls.clone(),
        );
        let bindings = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "bindings",
            "Bindings in the controller's cache by the status of their Ready condition",
            bindings.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process leads and reconciles, else 0",
            leader.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "reconciles_in_flight",
            "Reconcile passes running now",
            in_flight.clone(),
        );
        let late = Gauge::default();
        registry.register(
            "bindings_late",
            "Bindings whose resync or retry was more than a sweep period late at the last sweep",
            late.clone(),
        );
        let agent_running = Gauge::default();
        agent_running.set(-1);
        registry.register(
            "pod_identity_agent_running",
            "1 when the DaemonSet kube-system/eks-pod-identity-agent exists, 0 when it does not, -1 until the operator could tell",
            agent_running.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The operator's version", build);
        Arc::new(Metrics {
            registry,
            reconciles,
            duration,
            aws_calls,
            bindings,
            leader,
            in_flight,
            late,
            agent_running,
            cache: Mutex::new(None),
            health,
        })
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// Counts one AWS call; any answer from AWS, an error included, shows AWS is reached.
    pub fn aws_call(
        &self,
        service: Service,
        operation: &'static str,
        error: Option<&crate::aws::Error>,
    ) {
        self.aws_calls
            .get_or_create(&AwsLabels {
                service: service.label(),
                operation,
                outcome: aws_outcome(error),
            })
            .inc();
        // A call that got no answer at all (timeout, connection refused) has no status.
        let answered = error.is_none_or(|e| e.aws().is_none_or(|a| a.http_status.is_some()));
        if answered {
            self.health.set_aws_reached();
        }
    }

    /// Runs one reconcile pass, counted in flight while it runs, then counted by result
    /// and reason with its duration. The reason is the one the pass reported
    /// ([`note_reason`]), else `fallback` for an `Ok` pass and `reason_of` the error for
    /// a failed one.
    pub async fn time_reconcile<T, E>(
        &self,
        pass: impl Future<Output = Result<T, E>>,
        fallback: &str,
        reason_of: impl FnOnce(&E) -> String,
    ) -> Result<T, E> {
        self.in_flight.inc();
        // Decremented even when the pass is dropped half-way.
        let _in_flight = InFlight(&self.in_flight);
        let start = tokio::time::Instant::now();
        let (result, reported) = REPORTED_REASON
            .scope(RefCell::new(None), async {
                let r = pass.await;
                (r, REPORTED_REASON.with(|c| c.borrow_mut().take()))
            })
            .await;
        self.duration.observe(start.elapsed().as_secs_f64());
        let (label, reason) = match &result {
            Ok(_) => ("ok", reported.unwrap_or_else(|| fallback.to_owned())),
            Err(e) => ("error", reported.unwrap_or_else(|| reason_of(e))),
        };
        self.reconciles
            .get_or_create(&ReconcileLabels {
                result: label,
                reason,
            })
            .inc();
        result
    }

    /// The bindings the last sweep found late (see `controller::sweep`).
    pub fn set_late(&self, bindings: usize) {
        self.late.set(i64::try_from(bindings).unwrap_or(i64::MAX));
    }

    pub fn set_agent_running(&self, running: bool) {
        self.agent_running.set(i64::from(running));
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
        self.health.set_leading(leading);
    }

    /// The controller's cache of bindings: counted by Ready status at each scrape; the
    /// watches count as synced once `synced` (the cache's first full listing) is set.
    /// `synced` is polled: waiting on the store's readiness would take the controller's
    /// own wake-up (it wakes only its latest waiter).
    pub fn watch_bindings(self: &Arc<Self>, store: Store<CachedBinding>, synced: Arc<AtomicBool>) {
        *self.lock_cache() = Some(store);
        let me = self.clone();
        tokio::spawn(async move {
            while !synced.load(Ordering::Acquire) {
                // Only this task still holds the flag: that controller is gone.
                if Arc::strong_count(&synced) == 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            me.health.set_synced(true);
        });
    }

    /// The controller stopped: its cache is gone.
    pub fn controller_stopped(&self) {
        *self.lock_cache() = None;
        self.health.set_synced(false);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Option<Store<CachedBinding>>> {
        // Holds a handle only; a panic while holding it leaves it usable.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut counts: std::collections::BTreeMap<ReadyLabels, i64> = Default::default();
        if let Some(store) = self.lock_cache().as_ref() {
            for obj in store.state() {
                *counts.entry(ready_labels(&obj)).or_default() += 1;
            }
        }
        for ready in ["True", "False", "Unknown"] {
            if !counts.keys().any(|l| l.ready == ready) {
                let reason = String::new();
                counts.insert(ReadyLabels { ready, reason }, 0);
            }
        }
        // Pairs no binding has any more are dropped, not left at their last count.
        self.bindings.clear();
        for (labels, n) in counts {
            self.bindings.get_or_create(&labels).set(n);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The metering layer's reports: each call counted, and AWS marked reached for
/// `/readyz` at its first answer.
impl CallObserver for Metrics {
    fn finished(&self, call: Call, error: Option<&crate::aws::Error>) {
        self.aws_call(call.service, call.operation, error);
    }
}

struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn condition(status: &str, reason: &str) -> serde_json::Value {
        json!({"type": "Ready", "status": status, "reason": reason,
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    fn binding(ready: Option<&str>) -> CachedBinding {
        let conditions: Vec<_> = ready
            .map(|s| condition(s, "Reconciled"))
            .into_iter()
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
            "metadata": {"name": "b", "namespace": "default"}, "spec": {},
            "status": {"conditions": conditions},
        }))
        .expect("object")
    }

    #[test]
    fn ready_status_reads_the_ready_condition() {
        assert_eq!(ready_status(&binding(Some("True"))), "True");
        assert_eq!(ready_status(&binding(Some("False"))), "False");
        assert_eq!(ready_status(&binding(Some("Unknown"))), "Unknown");
        assert_eq!(ready_status(&binding(None)), "Unknown");
    }

    #[test]
    fn bindings_are_counted_by_ready_status_and_reason() {
        let with_reason = |status: &str, reason: &str| -> CachedBinding {
            serde_json::from_value(json!({
                "apiVersion": "podidentity.dev/v1alpha1", "kind": "PodIdentityBinding",
                "metadata": {"name": "b", "namespace": "default"}, "spec": {},
                "status": {"conditions": [condition(status, reason)]},
            }))
            .expect("object")
        };
        let l = ready_labels(&with_reason("False", "PolicyDenied"));
        assert_eq!((l.ready, l.reason.as_str()), ("False", "PolicyDenied"));
        let l = ready_labels(&with_reason("False", "not a reason {}"));
        assert_eq!(l.reason, "Other");
        assert_eq!(ready_labels(&binding(None)).reason, "");
    }

    #[tokio::test]
    async fn passes_are_counted_by_result_and_reason_and_timed() {
        let m = Metrics::new(Health::new());
        let r: Result<(), String> = m
            .time_reconcile(
                async {
                    note_reason("Reconciled");
                    Ok(())
                },
                "FinalizerAdded",
                |e: &String| e.clone(),
            )
            .await;
        assert!(r.is_ok());
        let _ = m
            .time_reconcile(async { Ok::<_, String>(()) }, "FinalizerAdded", |e| {
                e.clone()
            })
            .await;
        let _ = m
            .time_reconcile(async { Err::<(), _>("Retrying".to_owned()) }, "x", |e| {
                e.clone()
            })
            .await;
        let text = m.encode();
        for line in [
            r#"pod_identity_operator_reconciles_total{result="ok",reason="Reconciled"} 1"#,
            r#"pod_identity_operator_reconciles_total{result="ok",reason="FinalizerAdded"} 1"#,
            r#"pod_identity_operator_reconciles_total{result="error",reason="Retrying"} 1"#,
            "pod_identity_operator_reconcile_duration_seconds_count 3",
            "pod_identity_operator_reconciles_in_flight 0",
            r#"pod_identity_operator_build_info{version=""#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[tokio::test]
    async fn a_pass_counts_in_flight_while_it_runs_even_when_dropped() {
        let m = Metrics::new(Health::new());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let pass = m.time_reconcile(
            async {
                let _ = rx.await;
                Ok::<_, String>(())
            },
            "x",
            |e| e.clone(),
        );
        let mut pass = Box::pin(pass);
        assert!(futures::poll!(&mut pass).is_pending());
        assert!(
            m.encode()
                .contains("pod_identity_operator_reconciles_in_flight 1")
        );
        drop(pass);
        drop(tx);
        let text = m.encode();
        assert!(
            text.contains("pod_identity_operator_reconciles_in_flight 0"),
            "{text}"
        );
        assert!(
            !text.contains("reconciles_total{"),
            "a dropped pass is not counted"
        );
    }

    #[test]
    fn note_reason_outside_a_pass_does_nothing() {
        note_reason("Reconciled");
    }
}

// The metering layer reporting to these metrics, on the AWS simulator, which only the
// `sandbox` feature compiles.
#[cfg(all(test, feature = "sandbox"))]
mod metered_tests {
    use super::*;
    use crate::aws::metered::Metered;
    use crate::aws::sim::{AwsSim, SimConfig, administrator_policy};
    use crate::aws::{EksApi, IamApi};

    fn sim() -> Arc<AwsSim> {
        let sim = Arc::new(AwsSim::new(SimConfig {
            identity_policy: Some(administrator_policy()),
            ..SimConfig::default()
        }));
        sim.add_cluster("prod");
        sim
    }

    #[tokio::test]
    async fn every_call_is_counted_by_service_operation_and_outcome() {
        let health = Health::new();
        let metrics = Metrics::new(health.clone());
        let aws = sim();
        let iam = Metered::new(aws.clone(), metrics.clone());
        let eks = Metered::new(aws.clone(), metrics.clone());
        assert!(!health.aws_reached());
        assert!(iam.get_role("nobody").await.expect("GetRole").is_none());
        assert!(health.aws_reached(), "an answer marks AWS reached");
        assert!(
            eks.describe_cluster("prod")
                .await
                .expect("describe")
                .is_some()
        );
        let err = iam
            .attach_role_policy("nobody", "arn:aws:iam::aws:policy/ReadOnlyAccess")
            .await
            .expect_err("no such role");
        assert_eq!(err.aws().map(|e| e.code.as_str()), Some("NoSuchEntity"));
        aws.knobs().set_throttle(Service::Eks, 0, 0.0);
        eks.describe_cluster("prod").await.expect_err("throttled");

        let text = metrics.encode();
        for line in [
            r#"pod_identity_operator_aws_calls_total{service="iam",operation="GetRole",outcome="ok"} 1"#,
            r#"pod_identity_operator_aws_calls_total{service="eks",operation="DescribeCluster",outcome="ok"} 1"#,
            r#"pod_identity_operator_aws_calls_total{service="iam",operation="AttachRolePolicy",outcome="not_found"} 1"#,
            r#"pod_identity_operator_aws_calls_total{service="eks",operation="DescribeCluster",outcome="throttled"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[tokio::test]
    async fn an_unanswered_call_does_not_mark_aws_reached() {
        use crate::aws::faults::{Fault, Faulty, Knobs};
        let health = Health::new();
        let metrics = Metrics::new(health.clone());
        let knobs = Knobs::new();
        knobs.fail_next("GetRole", Fault::timeout());
        let iam = Metered::new(Arc::new(Faulty::wrap(sim(), knobs)), metrics.clone());
        iam.get_role("x").await.expect_err("timeout");
        assert!(!health.aws_reached());
        assert!(
            metrics
                .encode()
                .contains(r#"operation="GetRole",outcome="transient"} 1"#)
        );
        iam.get_role("x").await.expect("answered");
        assert!(health.aws_reached());
    }
}
