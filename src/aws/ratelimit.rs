//! Client-side rate limits: a token bucket per AWS service in front of an
//! [`IamApi`]/[`EksApi`], so the operator paces itself instead of learning its limits
//! from `Throttling` answers.
//!
//! [`RateLimited`] waits for a token before each call; one instance holds one bucket,
//! so IAM and EKS are paced apart, as AWS throttles them. The bucket ([`Bucket`]) lets
//! `burst` calls through at once, then one every `1 / per_second` seconds; it runs on
//! tokio's clock, like every other delay of the operator.
//!
//! When AWS throttles a call anyway (the budget is shared with the account's other
//! clients), the call is retried here, up to [`THROTTLE_ATTEMPTS`] attempts in all,
//! after an exponential delay with jitter, and every call to the service waits out that
//! delay too, so the operator as a whole slows down rather than each caller hammering
//! on. A reconcile pass makes several calls in a row, and one throttled call would
//! otherwise waste the pass. (The SDK adapters also retry in the SDK's adaptive mode;
//! these retries come after theirs.) Other errors are returned at once.
//!
//! Defaults: [`Rate::IAM_DEFAULT`] (10 calls/s, burst 20) and [`Rate::EKS_DEFAULT`]
//! (10 calls/s, burst 20). AWS publishes no numeric request-rate quota for the IAM API
//! or the EKS control-plane API: the "IAM and AWS STS quotas" page of the IAM User Guide
//! and the "Amazon EKS service quotas" page of the EKS User Guide list object counts and
//! sizes only, and AWS Support describes IAM throttling as per-API token buckets whose
//! sizes it does not share (quoted in hashicorp/terraform-provider-aws issue 44853).
//! Both budgets are per account and region and shared with every other client of the
//! account (Terraform, consoles, other controllers), so the defaults are deliberately
//! modest: a steady 10 calls/s per service leaves most of an account's budget to others.
//! The cost is time, not failure: 1,000 bindings (IAM's default roles-per-account quota)
//! at about six IAM reads each take some ten minutes per resync round instead of five.
//! Raise the rates with `--iam-rate`/`--eks-rate` when an account's budget allows.
//!
//! Not implemented: limits per operation (AWS has some), and lowering the rate itself
//! after throttling (the SDK's adaptive retry mode does that for real AWS).

use std::future::Future;
use std::ops::Deref;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Addon, Association, AssociationSummary, AttachedPolicy, Cluster, CreateAssociation, CreateRole,
    EksApi, IamApi, Role, Tags, UpdateAssociation,
};
use crate::Result;

/// Attempts of a call AWS throttles, the first included.
pub const THROTTLE_ATTEMPTS: u32 = 4;
/// First delay after a throttled call; doubled at each further attempt.
pub const THROTTLE_DELAY: Duration = Duration::from_millis(200);

/// A token bucket: `burst` calls at once, refilled at `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    pub const IAM_DEFAULT: Rate = Rate {
        per_second: 10.0,
        burst: 20,
    };
    pub const EKS_DEFAULT: Rate = Rate {
        per_second: 10.0,
        burst: 20,
    };

    /// The rate a command line asks for: `per_second` of 0 means no limit.
    pub fn from_flags(per_second: f64, burst: u32) -> Option<Rate> {
        (per_second > 0.0).then_some(Rate { per_second, burst })
    }

    fn bucket(self) -> Option<Bucket> {
        (self.per_second.is_finite() && self.per_second > 0.0).then(|| Bucket {
            per_second: self.per_second,
            burst: f64::from(self.burst.max(1)),
            state: Mutex::new((f64::from(self.burst.max(1)), tokio::time::Instant::now())),
        })
    }
}

/// A token bucket whose tokens may go negative: each caller reserves its token at once
/// and sleeps until the bucket has refilled to it, so waiting callers are served in
/// the order they came.
struct Bucket {
    per_second: f64,
    burst: f64,
    /// Tokens at the instant, before refill since then.
    state: Mutex<(f64, tokio::time::Instant)>,
}

impl Bucket {
    /// How long the caller waits for the token it takes now.
    fn reserve(&self) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        let (tokens, at) = *state;
        let refilled = (tokens + now.saturating_duration_since(at).as_secs_f64() * self.per_second)
            .min(self.burst);
        let left = refilled - 1.0;
        *state = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.per_second)
        }
    }

    async fn acquire(&self) {
        let wait = self.reserve();
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// An AWS implementation behind a token bucket (`None`: no bucket), retrying throttled
/// calls.
pub struct RateLimited<T> {
    inner: T,
    limiter: Option<Bucket>,
    /// No call starts before this instant: the service throttled us.
    paused_until: Mutex<tokio::time::Instant>,
}

fn throttled(result: &Result<impl Sized>) -> bool {
    matches!(result, Err(crate::Error::Aws(e)) if e.throttled)
}

/// The delay before attempt `attempt + 1` of a throttled call: exponential, capped at
/// 16 times the first, with equal jitter.
fn throttle_delay(attempt: u32) -> Duration {
    let exp = THROTTLE_DELAY * (1u32 << attempt.min(4));
    exp.mul_f64(1.0 - rand::random::<f64>() * 0.5)
}

impl<T> RateLimited<T> {
    pub fn new(inner: T, rate: Option<Rate>) -> Self {
        RateLimited {
            inner,
            limiter: rate.and_then(Rate::bucket),
            paused_until: Mutex::new(tokio::time::Instant::now()),
        }
    }

    fn paused_until(&self) -> std::sync::MutexGuard<'_, tokio::time::Instant> {
        // An instant only; a panic while holding it leaves it usable.
        self.paused_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn token(&self) {
        loop {
            let until = *self.paused_until();
            if until <= tokio::time::Instant::now() {
                break;
            }
            tokio::time::sleep_until(until).await;
        }
        if let Some(b) = &self.limiter {
            b.acquire().await;
        }
    }

    /// Runs `call` after a token, again after a delay while AWS throttles it.
    async fn call<R, F, Fut>(&self, call: F) -> Result<R>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<R>>,
    {
        let mut attempt = 0;
        loop {
            self.token().await;
            let result = call().await;
            attempt += 1;
            if !throttled(&result) || attempt >= THROTTLE_ATTEMPTS {
                return result;
            }
            let resume = tokio::time::Instant::now() + throttle_delay(attempt - 1);
            let mut until = self.paused_until();
            *until = (*until).max(resume);
        }
    }
}

#[async_trait]
impl<T> IamApi for RateLimited<T>
where
    T: Deref + Send + Sync,
    T::Target: IamApi,
{
    async fn create_role(&self, input: &CreateRole) -> Result<Role> {
        self.call(|| self.inner.create_role(input)).await
    }
    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        self.call(|| self.inner.get_role(name)).await
    }
    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        self.call(|| {
            self.inner
                .update_role(name, description, max_session_duration)
        })
        .await
    }
    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        self.call(|| self.inner.update_assume_role_policy(name, document))
            .await
    }
    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.call(|| self.inner.put_role_permissions_boundary(name, policy_arn))
            .await
    }
    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        self.call(|| self.inner.delete_role_permissions_boundary(name))
            .await
    }
    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.call(|| self.inner.attach_role_policy(name, policy_arn))
            .await
    }
    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.call(|| self.inner.detach_role_policy(name, policy_arn))
            .await
    }
    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        self.call(|| self.inner.list_attached_role_policies(name))
            .await
    }
    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        self.call(|| self.inner.put_role_policy(name, policy_name, document))
            .await
    }
    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        self.call(|| self.inner.get_role_policy(name, policy_name))
            .await
    }
    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        self.call(|| self.inner.delete_role_policy(name, policy_name))
            .await
    }
    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        self.call(|| self.inner.list_role_policies(name)).await
    }
    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        self.call(|| self.inner.tag_role(name, tags)).await
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        self.call(|| self.inner.untag_role(name, keys)).await
    }
    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        self.call(|| self.inner.list_role_tags(name)).await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        self.call(|| self.inner.delete_role(name)).await
    }
    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        self.call(|| self.inner.list_instance_profiles_for_role(name))
            .await
    }
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        self.call(|| self.inner.list_roles(path_prefix)).await
    }
}

#[async_trait]
impl<T> EksApi for RateLimited<T>
where
    T: Deref + Send + Sync,
    T::Target: EksApi,
{
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        self.call(|| self.inner.describe_cluster(name)).await
    }
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        self.call(|| self.inner.create_pod_identity_association(input))
            .await
    }
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        self.call(|| {
            self.inner
                .describe_pod_identity_association(cluster_name, association_id)
        })
        .await
    }
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        self.call(|| self.inner.update_pod_identity_association(input))
            .await
    }
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        self.call(|| {
            self.inner
                .delete_pod_identity_association(cluster_name, association_id)
        })
        .await
    }
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        self.call(|| {
            self.inner
                .list_pod_identity_associations(cluster_name, namespace, service_account)
        })
        .await
    }
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        self.call(|| self.inner.tag_resource(arn, tags)).await
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.call(|| self.inner.untag_resource(arn, keys)).await
    }
    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        self.call(|| self.inner.describe_addon(cluster_name, addon_name))
            .await
    }
    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        self.call(|| self.inner.list_addons(cluster_name)).await
    }
}

// On the AWS simulator, which only the `sandbox` feature compiles.
#[cfg(all(test, feature = "sandbox"))]
mod tests {
    use super::*;
    use crate::aws::sim::{AwsSim, SimConfig, administrator_policy};
    use std::sync::Arc;

    #[test]
    fn flags_of_zero_disable_the_limit_and_bad_rates_make_no_bucket() {
        assert_eq!(Rate::from_flags(0.0, 5), None);
        assert_eq!(
            Rate::from_flags(2.5, 5),
            Some(Rate {
                per_second: 2.5,
                burst: 5
            })
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0] {
            let r = Rate {
                per_second: bad,
                burst: 1,
            };
            assert!(r.bucket().is_none(), "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_serves_its_burst_then_one_token_per_period() {
        let b = Rate {
            per_second: 4.0,
            burst: 0,
        }
        .bucket()
        .expect("bucket");
        // A burst of 0 is a burst of 1.
        assert_eq!(b.reserve(), Duration::ZERO);
        assert_eq!(b.reserve(), Duration::from_millis(250));
        assert_eq!(b.reserve(), Duration::from_millis(500));
        tokio::time::advance(Duration::from_secs(10)).await;
        // Refilled, but never beyond the burst.
        assert_eq!(b.reserve(), Duration::ZERO);
        assert_eq!(b.reserve(), Duration::from_millis(250));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_burst_passes_at_once_then_calls_are_paced() {
        let sim = Arc::new(AwsSim::new(SimConfig {
            identity_policy: Some(administrator_policy()),
            ..SimConfig::default()
        }));
        let limited = Arc::new(RateLimited::new(
            sim.clone(),
            Some(Rate {
                per_second: 20.0,
                burst: 5,
            }),
        ));
        // 25 calls from 5 tasks: the burst of 5 at once, then 20 at 20/s, so at least
        // about a second passes (a lower bound only: the machine may be slower).
        let start = std::time::Instant::now();
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let l = limited.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        IamApi::get_role(&*l, "r").await.expect("get_role");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        assert!(start.elapsed() >= Duration::from_millis(900));
        assert_eq!(sim.knobs().calls_of("GetRole"), 25);
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_calls_are_retried_a_bounded_number_of_times_and_pause_the_service() {
        use crate::aws::faults::{Fault, Service};
        let sim = Arc::new(AwsSim::new(SimConfig {
            identity_policy: Some(administrator_policy()),
            ..SimConfig::default()
        }));
        let limited = Arc::new(RateLimited::new(sim.clone(), None));
        // Five calls a second: concurrent callers are throttled, retried, and all pass.
        sim.knobs().set_throttle(Service::Iam, 1, 5.0);
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let l = limited.clone();
                tokio::spawn(async move { IamApi::get_role(&*l, "r").await.map(|_| ()) })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("passes after retries");
        }
        assert!(sim.knobs().throttled(Service::Iam) > 0);

        // A bucket that never refills: the call gives up after THROTTLE_ATTEMPTS.
        sim.knobs().set_throttle(Service::Iam, 0, 0.0);
        let before = sim.knobs().calls_of("GetRole");
        let e = IamApi::get_role(&*limited, "r")
            .await
            .expect_err("throttled");
        assert!(e.aws().is_some_and(|a| a.throttled));
        assert_eq!(
            sim.knobs().calls_of("GetRole") - before,
            u64::from(THROTTLE_ATTEMPTS)
        );
        // Other errors are not retried; EKS is not paused by IAM's throttling.
        sim.knobs().clear_throttle(Service::Iam);
        sim.knobs()
            .fail_next("GetRole", Fault::server_error(Service::Iam));
        let before = sim.knobs().calls_of("GetRole");
        assert!(IamApi::get_role(&*limited, "r").await.is_err());
        assert_eq!(sim.knobs().calls_of("GetRole") - before, 1);
    }

    #[test]
    fn throttle_delays_grow_with_jitter_and_are_capped() {
        for attempt in 0..10 {
            let d = throttle_delay(attempt);
            let exp = THROTTLE_DELAY * (1 << attempt.min(4));
            assert!(d >= exp / 2 && d <= exp, "{attempt}: {d:?}");
        }
    }
}
