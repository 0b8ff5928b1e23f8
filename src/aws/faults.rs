//! Knobs that make an AWS implementation slow, rate limited or failing, and a wrapper
//! that puts them in front of any [`IamApi`]/[`EksApi`].
//!
//! [`Knobs`] holds: latency per call (a default and per-operation overrides), a token
//! bucket per service over all calls and one over its writes only (an empty bucket
//! answers `Throttling` for IAM and `ThrottlingException` for EKS), faults (fail the
//! k-th call of an operation, or a seeded random fraction of calls; either before the
//! call acts, or after it acted with the answer lost, as when a timeout hides a write
//! that happened), counters per operation of calls and of throttled answers, and a gauge
//! of the calls in flight (all, and writes). Every call is counted, failed ones included, as AWS bills and rate-limits
//! them. The simulator consults its own `Knobs`; [`Faulty`] consults one in front of
//! another implementation (the SDK adapters, say). Time is tokio's, so
//! `tokio::time::pause` makes latency and refill deterministic.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokio::time::Instant;

pub use super::classify::aws_error;
use super::{
    Addon, Association, AssociationSummary, AttachedPolicy, Cluster, CreateAssociation, CreateRole,
    EksApi, IamApi, Role, Tags, UpdateAssociation,
};
use crate::Result;

/// The two services, which throttle separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Iam,
    Eks,
}

/// An error to inject: a service error code and message; class and status follow from
/// the code as [`code_class`](super::classify::code_class) gives them.
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
    pub fn to_error(&self, operation: &str) -> crate::Error {
        aws_error(operation, &self.code, &self.message)
    }
}

struct TokenBucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn full(burst: u32, per_second: f64) -> Self {
        TokenBucket {
            capacity: f64::from(burst),
            per_second,
            tokens: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
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
            .insert(service, TokenBucket::full(burst, per_second));
    }

    /// Rate limit a service's writes only ([`is_write`]), as IAM's mutating APIs have
    /// their own quota: a bucket of `burst` writes refilled at `per_second`. Applies in
    /// addition to a bucket set by [`set_throttle`](Self::set_throttle).
    pub fn set_write_throttle(&self, service: Service, burst: u32, per_second: f64) {
        self.lock()
            .write_buckets
            .insert(service, TokenBucket::full(burst, per_second));
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
        let admitted = s.buckets.get_mut(&service).is_none_or(|b| b.take(now))
            && (!is_write(operation)
                || s.write_buckets
                    .get_mut(&service)
                    .is_none_or(|b| b.take(now)));
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

/// A shared AWS implementation (`Arc<dyn IamApi>`, `Arc<AwsSim>`, ...) with [`Knobs`]
/// in front: each call goes through [`Knobs::enter`] first and reaches the inner
/// implementation only if that passes.
pub struct Faulty<T> {
    inner: T,
    knobs: Arc<Knobs>,
}

impl<T> Faulty<T> {
    pub fn new(inner: T, knobs: Arc<Knobs>) -> Self {
        Self { inner, knobs }
    }

    pub fn knobs(&self) -> &Arc<Knobs> {
        &self.knobs
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }
}

#[async_trait]
impl<T> IamApi for Faulty<T>
where
    T: Deref + Send + Sync,
    T::Target: IamApi,
{
    async fn create_role(&self, input: &CreateRole) -> Result<Role> {
        let admitted = self.knobs.enter(Service::Iam, "CreateRole").await?;
        admitted.finish("CreateRole", self.inner.create_role(input).await)
    }
    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        let admitted = self.knobs.enter(Service::Iam, "GetRole").await?;
        admitted.finish("GetRole", self.inner.get_role(name).await)
    }
    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "UpdateRole").await?;
        admitted.finish(
            "UpdateRole",
            self.inner
                .update_role(name, description, max_session_duration)
                .await,
        )
    }
    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        let admitted = self
            .knobs
            .enter(Service::Iam, "UpdateAssumeRolePolicy")
            .await?;
        admitted.finish(
            "UpdateAssumeRolePolicy",
            self.inner.update_assume_role_policy(name, document).await,
        )
    }
    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        let admitted = self
            .knobs
            .enter(Service::Iam, "PutRolePermissionsBoundary")
            .await?;
        admitted.finish(
            "PutRolePermissionsBoundary",
            self.inner
                .put_role_permissions_boundary(name, policy_arn)
                .await,
        )
    }
    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        let admitted = self
            .knobs
            .enter(Service::Iam, "DeleteRolePermissionsBoundary")
            .await?;
        admitted.finish(
            "DeleteRolePermissionsBoundary",
            self.inner.delete_role_permissions_boundary(name).await,
        )
    }
    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "AttachRolePolicy").await?;
        admitted.finish(
            "AttachRolePolicy",
            self.inner.attach_role_policy(name, policy_arn).await,
        )
    }
    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "DetachRolePolicy").await?;
        admitted.finish(
            "DetachRolePolicy",
            self.inner.detach_role_policy(name, policy_arn).await,
        )
    }
    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        let admitted = self
            .knobs
            .enter(Service::Iam, "ListAttachedRolePolicies")
            .await?;
        admitted.finish(
            "ListAttachedRolePolicies",
            self.inner.list_attached_role_policies(name).await,
        )
    }
    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "PutRolePolicy").await?;
        admitted.finish(
            "PutRolePolicy",
            self.inner
                .put_role_policy(name, policy_name, document)
                .await,
        )
    }
    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        let admitted = self.knobs.enter(Service::Iam, "GetRolePolicy").await?;
        admitted.finish(
            "GetRolePolicy",
            self.inner.get_role_policy(name, policy_name).await,
        )
    }
    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "DeleteRolePolicy").await?;
        admitted.finish(
            "DeleteRolePolicy",
            self.inner.delete_role_policy(name, policy_name).await,
        )
    }
    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        let admitted = self.knobs.enter(Service::Iam, "ListRolePolicies").await?;
        admitted.finish(
            "ListRolePolicies",
            self.inner.list_role_policies(name).await,
        )
    }
    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "TagRole").await?;
        admitted.finish("TagRole", self.inner.tag_role(name, tags).await)
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "UntagRole").await?;
        admitted.finish("UntagRole", self.inner.untag_role(name, keys).await)
    }
    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        let admitted = self.knobs.enter(Service::Iam, "ListRoleTags").await?;
        admitted.finish("ListRoleTags", self.inner.list_role_tags(name).await)
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        let admitted = self.knobs.enter(Service::Iam, "DeleteRole").await?;
        admitted.finish("DeleteRole", self.inner.delete_role(name).await)
    }
    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        let admitted = self
            .knobs
            .enter(Service::Iam, "ListInstanceProfilesForRole")
            .await?;
        admitted.finish(
            "ListInstanceProfilesForRole",
            self.inner.list_instance_profiles_for_role(name).await,
        )
    }
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        let admitted = self.knobs.enter(Service::Iam, "ListRoles").await?;
        admitted.finish("ListRoles", self.inner.list_roles(path_prefix).await)
    }
}

#[async_trait]
impl<T> EksApi for Faulty<T>
where
    T: Deref + Send + Sync,
    T::Target: EksApi,
{
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        let admitted = self.knobs.enter(Service::Eks, "DescribeCluster").await?;
        admitted.finish("DescribeCluster", self.inner.describe_cluster(name).await)
    }
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        let admitted = self
            .knobs
            .enter(Service::Eks, "CreatePodIdentityAssociation")
            .await?;
        admitted.finish(
            "CreatePodIdentityAssociation",
            self.inner.create_pod_identity_association(input).await,
        )
    }
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        let admitted = self
            .knobs
            .enter(Service::Eks, "DescribePodIdentityAssociation")
            .await?;
        admitted.finish(
            "DescribePodIdentityAssociation",
            self.inner
                .describe_pod_identity_association(cluster_name, association_id)
                .await,
        )
    }
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        let admitted = self
            .knobs
            .enter(Service::Eks, "UpdatePodIdentityAssociation")
            .await?;
        admitted.finish(
            "UpdatePodIdentityAssociation",
            self.inner.update_pod_identity_association(input).await,
        )
    }
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        let admitted = self
            .knobs
            .enter(Service::Eks, "DeletePodIdentityAssociation")
            .await?;
        admitted.finish(
            "DeletePodIdentityAssociation",
            self.inner
                .delete_pod_identity_association(cluster_name, association_id)
                .await,
        )
    }
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        let admitted = self
            .knobs
            .enter(Service::Eks, "ListPodIdentityAssociations")
            .await?;
        admitted.finish(
            "ListPodIdentityAssociations",
            self.inner
                .list_pod_identity_associations(cluster_name, namespace, service_account)
                .await,
        )
    }
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        let admitted = self.knobs.enter(Service::Eks, "TagResource").await?;
        admitted.finish("TagResource", self.inner.tag_resource(arn, tags).await)
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        let admitted = self.knobs.enter(Service::Eks, "UntagResource").await?;
        admitted.finish("UntagResource", self.inner.untag_resource(arn, keys).await)
    }
    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        let admitted = self.knobs.enter(Service::Eks, "DescribeAddon").await?;
        admitted.finish(
            "DescribeAddon",
            self.inner.describe_addon(cluster_name, addon_name).await,
        )
    }
    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        let admitted = self.knobs.enter(Service::Eks, "ListAddons").await?;
        admitted.finish("ListAddons", self.inner.list_addons(cluster_name).await)
    }
}

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
