//! Client-side rate limits: a token bucket per AWS service in front of an
//! [`IamApi`]/[`EksApi`], so the operator paces itself instead of learning its limits
//! from `Throttling` answers.
//!
//! [`RateLimited`] waits for a token before each call (it never fails a call); one
//! instance holds one bucket, so IAM and EKS are paced apart, as AWS throttles them.
//! The bucket is `governor`'s GCRA limiter: `burst` calls at once, then one every
//! `1 / per_second` seconds.
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
//! Not implemented: limits per operation (AWS has some), and adapting the rate to
//! throttling answers (the SDK's adaptive retry mode does that for real AWS).

use std::num::NonZeroU32;
use std::ops::Deref;
use std::time::Duration;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::Value;

use super::{
    Association, AssociationSummary, AttachedPolicy, Cluster, CreateAssociation, CreateRole,
    EksApi, IamApi, Role, Tags, UpdateAssociation,
};
use crate::Result;

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

    fn quota(self) -> Option<Quota> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) {
            return None;
        }
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Quota::with_period(Duration::from_secs_f64(1.0 / self.per_second))
            .map(|q| q.allow_burst(burst))
    }
}

/// An AWS implementation behind a token bucket; `None` passes calls straight through.
pub struct RateLimited<T> {
    inner: T,
    limiter: Option<DefaultDirectRateLimiter>,
}

impl<T> RateLimited<T> {
    pub fn new(inner: T, rate: Option<Rate>) -> Self {
        RateLimited {
            inner,
            limiter: rate.and_then(Rate::quota).map(RateLimiter::direct),
        }
    }

    async fn token(&self) {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
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
        self.token().await;
        self.inner.create_role(input).await
    }
    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        self.token().await;
        self.inner.get_role(name).await
    }
    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        self.token().await;
        self.inner
            .update_role(name, description, max_session_duration)
            .await
    }
    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        self.token().await;
        self.inner.update_assume_role_policy(name, document).await
    }
    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.token().await;
        self.inner
            .put_role_permissions_boundary(name, policy_arn)
            .await
    }
    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        self.token().await;
        self.inner.delete_role_permissions_boundary(name).await
    }
    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.token().await;
        self.inner.attach_role_policy(name, policy_arn).await
    }
    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.token().await;
        self.inner.detach_role_policy(name, policy_arn).await
    }
    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        self.token().await;
        self.inner.list_attached_role_policies(name).await
    }
    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        self.token().await;
        self.inner
            .put_role_policy(name, policy_name, document)
            .await
    }
    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        self.token().await;
        self.inner.get_role_policy(name, policy_name).await
    }
    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        self.token().await;
        self.inner.delete_role_policy(name, policy_name).await
    }
    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        self.token().await;
        self.inner.list_role_policies(name).await
    }
    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        self.token().await;
        self.inner.tag_role(name, tags).await
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        self.token().await;
        self.inner.untag_role(name, keys).await
    }
    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        self.token().await;
        self.inner.list_role_tags(name).await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        self.token().await;
        self.inner.delete_role(name).await
    }
    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        self.token().await;
        self.inner.list_instance_profiles_for_role(name).await
    }
}

#[async_trait]
impl<T> EksApi for RateLimited<T>
where
    T: Deref + Send + Sync,
    T::Target: EksApi,
{
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        self.token().await;
        self.inner.describe_cluster(name).await
    }
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        self.token().await;
        self.inner.create_pod_identity_association(input).await
    }
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        self.token().await;
        self.inner
            .describe_pod_identity_association(cluster_name, association_id)
            .await
    }
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        self.token().await;
        self.inner.update_pod_identity_association(input).await
    }
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        self.token().await;
        self.inner
            .delete_pod_identity_association(cluster_name, association_id)
            .await
    }
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        self.token().await;
        self.inner
            .list_pod_identity_associations(cluster_name, namespace, service_account)
            .await
    }
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        self.token().await;
        self.inner.tag_resource(arn, tags).await
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.token().await;
        self.inner.untag_resource(arn, keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::sim::{AwsSim, SimConfig};
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
            assert!(r.quota().is_none(), "{bad}");
        }
        let q = Rate {
            per_second: 4.0,
            burst: 0,
        }
        .quota()
        .expect("quota");
        assert_eq!(q.burst_size().get(), 1);
        assert_eq!(q.replenish_interval(), Duration::from_millis(250));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_burst_passes_at_once_then_calls_are_paced() {
        let sim = Arc::new(AwsSim::new(SimConfig::default()));
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
}
