//! Knobs that make an AWS implementation slow, rate limited or failing, as a [`Layer`]
//! that goes in front of any [`IamApi`](pod_identity_aws::IamApi)/[`EksApi`](pod_identity_aws::EksApi).
//!
//! [`Knobs`] holds: latency per call (a default and per-operation overrides), a token
//! bucket ([`TokenBucket`], taken from with `try_take`) per service over all calls and
//! one over its writes only (an empty bucket answers `Throttling` for IAM and
//! `ThrottlingException` for EKS), faults (fail the k-th call of an operation, or a
//! seeded random fraction of calls; either before the call acts, or after it acted
//! with the answer lost, as when a timeout hides a write that happened), counters per
//! operation of calls and of throttled answers, and a gauge of the calls in flight
//! (all, and writes). Every call is counted, failed ones included, as AWS bills and
//! rate-limits them. The simulator consults its own `Knobs`; [`Faulty`] consults one in
//! front of another implementation (the SDK adapters, say). Time is tokio's, so
//! `tokio::time::pause` makes latency and refill deterministic.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use pod_identity_aws::Result;
use pod_identity_aws::bucket::TokenBucket;
pub use pod_identity_aws::classify::aws_error;
pub use pod_identity_aws::layer::Service;
use pod_identity_aws::layer::{Call, Layer, Layered};

/// An error to inject: a service error code and message; class and status follow from
/// the code as [`code_class`](pod_identity_aws::classify::code_class) gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    pub message: String,
    /// The call takes effect and only its answer is lost (a timeout after AWS acted),
    /// instead of failing before it does anything.
    pub after_effect: bool,
}

impl Fault {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            after_effect: false,
        }
    }

    /// The same fault, raised after the call took effect.
    pub fn after_effect(mut self) -> Self {
        self.after_effect = true;
        self
    }

    /// No answer in time (class transient, no HTTP status).
    pub fn timeout() -> Self {
        Self::new("Timeout", "the response did not arrive in time")
    }

    /// What the service answers when its rate limit is hit.
    pub fn throttling(service: Service) -> Self {
        match service {
            Service::Iam => Self::new("Throttling", "Rate exceeded"),
            Service::Eks => Self::new("ThrottlingException", "Rate exceeded"),
        }
    }

    /// An internal error of the service (HTTP 500).
    pub fn server_error(service: Service) -> Self {
        match service {
            Service::Iam => Self::new(
                "ServiceFailure",
                "The request processing has failed because of an unknown error, exception or failure.",
            ),
            Service::Eks => Self::new(
                "ServerException",
                "These errors are usually caused by a server-side issue.",
            ),
        }
    }

    /// The error as the operation would have returned it.
    pub fn to_error(&self, operation: &str) -> pod_identity_aws::Error {
        aws_error(operation, &self.code, &self.message)
    }
}

struct NthFault {
    operation: String,
    n: u64,
    fault: Fault,
}

struct RandomFaults {
    rng: StdRng,
    fraction: f64,
    fault: Fault,
    /// Empty: every operation.
    operations: Vec<String>,
}

#[derive(Default)]
struct KnobState {
    latency: Duration,
    operation_latency: BTreeMap<String, Duration>,
    buckets: BTreeMap<Service, TokenBucket>,
    write_buckets: BTreeMap<Service, TokenBucket>,
    nth: Vec<NthFault>,
    random: Option<RandomFaults>,
    calls: BTreeMap<String, u64>,
    /// Faults handed out (throttling, nth and random), for reports.
    injected: u64,
    service_calls: BTreeMap<Service, u64>,
    throttled: BTreeMap<Service, u64>,
    throttled_ops: BTreeMap<String, u64>,
}

/// Whether an operation changes something (every operation but `Get*`, `List*` and
/// `Describe*`), the calls a writes-only bucket limits.
pub fn is_write(operation: &str) -> bool {
    !(operation.starts_with("Get")
        || operation.starts_with("List")
        || operation.starts_with("Describe"))
}

/// Latency, throttling, faults and call counters for one AWS implementation.
#[derive(Default)]
pub struct Knobs {
    state: Mutex<KnobState>,
    in_flight: Arc<InFlight>,
}

/// Calls between [`Knobs::enter`] and the end of their [`Admitted`]: all, and writes
/// ([`is_write`]).
#[derive(Default)]
struct InFlight {
    calls: AtomicU64,
    writes: AtomicU64,
}

/// One call counted in [`InFlight`] until it is dropped: when the call answers, fails,
/// or is abandoned (its future dropped, as when the caller hangs up).
struct Flight {
    gauge: Arc<InFlight>,
    write: bool,
}

impl Flight {
    fn start(gauge: &Arc<InFlight>, operation: &str) -> Flight {
        let write = is_write(operation);
        gauge.calls.fetch_add(1, Ordering::SeqCst);
        if write {
            gauge.writes.fetch_add(1, Ordering::SeqCst);
        }
        Flight {
            gauge: gauge.clone(),
            write,
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        self.gauge.calls.fetch_sub(1, Ordering::SeqCst);
        if self.write {
            self.gauge.writes.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Knobs {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, KnobState> {
        // A panic while holding this lock leaves plain counters behind; keep using them.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Latency added to every call.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Latency of one operation (e.g. `CreateRole`), instead of the default.
    pub fn set_operation_latency(&self, operation: &str, latency: Duration) {
        self.lock()
            .operation_latency
            .insert(operation.to_owned(), latency);
    }

    /// Rate limit a service: a bucket of `burst` calls refilled at `per_second`.
    pub fn set_throttle(&self, service: Service, burst: u32, per_second: f64) {
        self.lock()
            .buckets
            .insert(service, TokenBucket::full(f64::from(burst), per_second));
    }

    /// Rate limit a service's writes only ([`is_write`]), as IAM's mutating APIs have
    /// their own quota: a bucket of `burst` writes refilled at `per_second`. Applies in
    /// addition to a bucket set by [`set_throttle`](Self::set_throttle).
    pub fn set_write_throttle(&self, service: Service, burst: u32, per_second: f64) {
        self.lock()
            .write_buckets
            .insert(service, TokenBucket::full(f64::from(burst), per_second));
    }

    /// Removes a service's rate limits (all calls and writes-only).
    pub fn clear_throttle(&self, service: Service) {
        let mut s = self.lock();
        s.buckets.remove(&service);
        s.write_buckets.remove(&service);
    }

    /// Fails the `n`-th call (1-based, counted since creation or the last
    /// [`reset_calls`](Self::reset_calls)) of `operation` with `fault`.
    pub fn fail_nth(&self, operation: &str, n: u64, fault: Fault) {
        self.lock().nth.push(NthFault {
            operation: operation.to_owned(),
            n,
            fault,
        });
    }

    /// Fails the next call of `operation` with `fault`.
    pub fn fail_next(&self, operation: &str, fault: Fault) {
        let n = self.calls_of(operation) + 1;
        self.fail_nth(operation, n, fault);
    }

    /// Fails a `fraction` of calls, drawn from a generator seeded with `seed`, of the
    /// listed operations (all when empty). Replaces an earlier random fault.
    pub fn fail_random(&self, seed: u64, fraction: f64, fault: Fault, operations: &[&str]) {
        self.lock().random = Some(RandomFaults {
            rng: StdRng::seed_from_u64(seed),
            fraction,
            fault,
            operations: operations.iter().map(|s| (*s).to_owned()).collect(),
        });
    }

    /// Removes every fault (counted calls stay).
    pub fn clear_faults(&self) {
        let mut s = self.lock();
        s.nth.clear();
        s.random = None;
    }

    /// Calls per operation so far.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Calls of one operation so far.
    pub fn calls_of(&self, operation: &str) -> u64 {
        self.lock().calls.get(operation).copied().unwrap_or(0)
    }

    /// Calls of every operation so far.
    pub fn total_calls(&self) -> u64 {
        self.lock().calls.values().sum()
    }

    /// How many faults (throttling included) were handed out so far. An after-effect
    /// fault counts even when the call itself then failed anyway.
    pub fn injected_faults(&self) -> u64 {
        self.lock().injected
    }

    /// Calls of one service so far.
    pub fn calls_of_service(&self, service: Service) -> u64 {
        self.lock()
            .service_calls
            .get(&service)
            .copied()
            .unwrap_or(0)
    }

    /// Calls of one service answered with a throttling error by its bucket so far.
    pub fn throttled(&self, service: Service) -> u64 {
        self.lock().throttled.get(&service).copied().unwrap_or(0)
    }

    /// Calls per operation answered with a throttling error so far (also counted in
    /// [`calls`](Self::calls)).
    pub fn throttled_by_operation(&self) -> BTreeMap<String, u64> {
        self.lock().throttled_ops.clone()
    }

    /// Calls in flight now: entered (waiting out their latency, or acting) and not yet
    /// answered. A test that kills a client reads it to know whether a call was cut.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.calls.load(Ordering::SeqCst)
    }

    /// Writes ([`is_write`]) in flight now.
    pub fn writes_in_flight(&self) -> u64 {
        self.in_flight.writes.load(Ordering::SeqCst)
    }

    /// Forgets counted calls and throttled answers.
    pub fn reset_calls(&self) {
        let mut s = self.lock();
        s.calls.clear();
        s.service_calls.clear();
        s.throttled.clear();
        s.throttled_ops.clear();
    }

    /// Runs before each call: counts it, waits its latency, then fails it when the
    /// service's bucket is empty or a fault matches. A matching after-effect fault is
    /// handed back in the [`Admitted`], to fail the call once it has taken effect.
    pub async fn enter(&self, service: Service, operation: &str) -> Result<Admitted> {
        let flight = Flight::start(&self.in_flight, operation);
        let (latency, n) = {
            let mut s = self.lock();
            *s.service_calls.entry(service).or_insert(0) += 1;
            let n = {
                let c = s.calls.entry(operation.to_owned()).or_insert(0);
                *c += 1;
                *c
            };
            let latency = s
                .operation_latency
                .get(operation)
                .copied()
                .unwrap_or(s.latency);
            (latency, n)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut s = self.lock();
        let now = Instant::now();
        let admitted = s.buckets.get_mut(&service).is_none_or(|b| b.try_take(now))
            && (!is_write(operation)
                || s.write_buckets
                    .get_mut(&service)
                    .is_none_or(|b| b.try_take(now)));
        if !admitted {
            s.injected += 1;
            *s.throttled.entry(service).or_insert(0) += 1;
            *s.throttled_ops.entry(operation.to_owned()).or_insert(0) += 1;
            return Err(Fault::throttling(service).to_error(operation));
        }
        let mut fault = s
            .nth
            .iter()
            .position(|f| f.operation == operation && f.n == n)
            .map(|i| s.nth.remove(i).fault);
        if fault.is_none()
            && let Some(r) = s.random.as_mut()
        {
            let applies = r.operations.is_empty() || r.operations.iter().any(|o| o == operation);
            if applies && r.rng.random_bool(r.fraction.clamp(0.0, 1.0)) {
                fault = Some(r.fault.clone());
            }
        }
        if fault.is_some() {
            s.injected += 1;
        }
        match fault {
            Some(f) if !f.after_effect => Err(f.to_error(operation)),
            after => Ok(Admitted {
                after,
                _flight: flight,
            }),
        }
    }
}

/// A call that passed [`Knobs::enter`]; [`finish`](Self::finish) it with the call's
/// result. The call stays in flight ([`Knobs::in_flight`]) until then.
#[must_use]
pub struct Admitted {
    after: Option<Fault>,
    _flight: Flight,
}

impl Admitted {
    /// The call's result, or the after-effect fault when one was due and the call
    /// succeeded.
    pub fn finish<T>(self, operation: &str, result: Result<T>) -> Result<T> {
        match (self.after, result) {
            (Some(f), Ok(_)) => Err(f.to_error(operation)),
            (_, r) => r,
        }
    }
}

/// The knobs as a [`Layer`]: each call goes through [`Knobs::enter`] first and is made
/// only if that passes, then [`Admitted::finish`]es.
impl Layer for Knobs {
    async fn call<'a, R, F, Fut>(&'a self, call: Call, f: F) -> Result<R>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        let admitted = self.enter(call.service, call.operation).await?;
        admitted.finish(call.operation, f().await)
    }
}

/// A shared AWS implementation (`Arc<dyn IamApi>`, `Arc<AwsSim>`, ...) with [`Knobs`]
/// in front: `Faulty::wrap(inner, knobs)`, its knobs at `layer()`.
pub type Faulty<T> = Layered<T, Arc<Knobs>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn injected_faults_are_counted() {
        let knobs = Knobs::new();
        knobs.fail_nth("GetRole", 2, Fault::timeout());
        knobs.fail_next("DeleteRole", Fault::timeout().after_effect());
        assert!(knobs.enter(Service::Iam, "GetRole").await.is_ok());
        assert!(knobs.enter(Service::Iam, "GetRole").await.is_err());
        let admitted = knobs
            .enter(Service::Iam, "DeleteRole")
            .await
            .expect("after-effect faults admit the call");
        assert!(admitted.finish("DeleteRole", Ok(())).is_err());
        assert_eq!(knobs.injected_faults(), 2);
        assert_eq!(knobs.total_calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_in_flight_from_enter_until_answered_failed_or_abandoned() {
        let knobs = Knobs::new();
        knobs.set_latency(Duration::from_secs(1));
        // Waiting out its latency.
        let waiting = tokio::spawn({
            let knobs = knobs.clone();
            async move { knobs.enter(Service::Iam, "CreateRole").await }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!((knobs.in_flight(), knobs.writes_in_flight()), (1, 1));
        // Acting: admitted, not yet finished.
        let admitted = waiting.await.expect("task").expect("admitted");
        assert_eq!((knobs.in_flight(), knobs.writes_in_flight()), (1, 1));
        let reading = knobs
            .enter(Service::Iam, "GetRole")
            .await
            .expect("admitted");
        assert_eq!((knobs.in_flight(), knobs.writes_in_flight()), (2, 1));
        assert!(admitted.finish("CreateRole", Ok(())).is_ok());
        assert_eq!((knobs.in_flight(), knobs.writes_in_flight()), (1, 0));
        assert!(reading.finish("GetRole", Ok(())).is_ok());
        assert_eq!(knobs.in_flight(), 0);
        // Failed before acting.
        knobs.fail_next("DeleteRole", Fault::timeout());
        assert!(knobs.enter(Service::Iam, "DeleteRole").await.is_err());
        assert_eq!(knobs.in_flight(), 0);
        // Abandoned during its latency: the caller hung up.
        let abandoned = tokio::spawn({
            let knobs = knobs.clone();
            async move {
                knobs
                    .enter(Service::Eks, "CreatePodIdentityAssociation")
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(knobs.writes_in_flight(), 1);
        abandoned.abort();
        assert!(abandoned.await.is_err());
        assert_eq!((knobs.in_flight(), knobs.writes_in_flight()), (0, 0));
    }
}
