//! A wrapper that counts every IAM and EKS call in the operator's metrics
//! (`pod_identity_operator_aws_calls_total{service, operation, outcome}`, see
//! [`crate::runtime::metrics`]) and marks AWS reached for `/readyz` at its first answer.
//! It wraps any shared implementation, as `faults::Faulty` does, and changes no
//! call or result.

use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Addon, Association, AssociationSummary, AttachedPolicy, Cluster, CreateAssociation, CreateRole,
    EksApi, IamApi, Role, Tags, UpdateAssociation,
};
use crate::Result;
use crate::runtime::metrics::{AwsService, Metrics};

/// An AWS implementation whose calls are counted in [`Metrics`].
pub struct Metered<T> {
    inner: T,
    metrics: Arc<Metrics>,
}

impl<T> Metered<T> {
    pub fn new(inner: T, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn count<R>(
        &self,
        service: AwsService,
        operation: &'static str,
        call: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        tracing::trace!(?service, operation, "AWS call");
        let started = std::time::Instant::now();
        let result = call.await;
        tracing::debug!(
            ?service,
            operation,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "AWS call answered"
        );
        self.metrics
            .aws_call(service, operation, result.as_ref().err());
        result
    }

    async fn iam<R>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        self.count(AwsService::Iam, operation, call).await
    }

    async fn eks<R>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<R>>,
    ) -> Result<R> {
        self.count(AwsService::Eks, operation, call).await
    }
}

#[async_trait]
impl<T> IamApi for Metered<T>
where
    T: Deref + Send + Sync,
    T::Target: IamApi,
{
    async fn create_role(&self, input: &CreateRole) -> Result<Role> {
        self.iam("CreateRole", self.inner.create_role(input)).await
    }
    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        self.iam("GetRole", self.inner.get_role(name)).await
    }
    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        self.iam(
            "UpdateRole",
            self.inner
                .update_role(name, description, max_session_duration),
        )
        .await
    }
    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        self.iam(
            "UpdateAssumeRolePolicy",
            self.inner.update_assume_role_policy(name, document),
        )
        .await
    }
    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.iam(
            "PutRolePermissionsBoundary",
            self.inner.put_role_permissions_boundary(name, policy_arn),
        )
        .await
    }
    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        self.iam(
            "DeleteRolePermissionsBoundary",
            self.inner.delete_role_permissions_boundary(name),
        )
        .await
    }
    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.iam(
            "AttachRolePolicy",
            self.inner.attach_role_policy(name, policy_arn),
        )
        .await
    }
    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        self.iam(
            "DetachRolePolicy",
            self.inner.detach_role_policy(name, policy_arn),
        )
        .await
    }
    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        self.iam(
            "ListAttachedRolePolicies",
            self.inner.list_attached_role_policies(name),
        )
        .await
    }
    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        self.iam(
            "PutRolePolicy",
            self.inner.put_role_policy(name, policy_name, document),
        )
        .await
    }
    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        self.iam(
            "GetRolePolicy",
            self.inner.get_role_policy(name, policy_name),
        )
        .await
    }
    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        self.iam(
            "DeleteRolePolicy",
            self.inner.delete_role_policy(name, policy_name),
        )
        .await
    }
    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        self.iam("ListRolePolicies", self.inner.list_role_policies(name))
            .await
    }
    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        self.iam("TagRole", self.inner.tag_role(name, tags)).await
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        self.iam("UntagRole", self.inner.untag_role(name, keys))
            .await
    }
    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        self.iam("ListRoleTags", self.inner.list_role_tags(name))
            .await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        self.iam("DeleteRole", self.inner.delete_role(name)).await
    }
    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        self.iam(
            "ListInstanceProfilesForRole",
            self.inner.list_instance_profiles_for_role(name),
        )
        .await
    }
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        self.iam("ListRoles", self.inner.list_roles(path_prefix))
            .await
    }
}

#[async_trait]
impl<T> EksApi for Metered<T>
where
    T: Deref + Send + Sync,
    T::Target: EksApi,
{
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        self.eks("DescribeCluster", self.inner.describe_cluster(name))
            .await
    }
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        self.eks(
            "CreatePodIdentityAssociation",
            self.inner.create_pod_identity_association(input),
        )
        .await
    }
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        self.eks(
            "DescribePodIdentityAssociation",
            self.inner
                .describe_pod_identity_association(cluster_name, association_id),
        )
        .await
    }
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        self.eks(
            "UpdatePodIdentityAssociation",
            self.inner.update_pod_identity_association(input),
        )
        .await
    }
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        self.eks(
            "DeletePodIdentityAssociation",
            self.inner
                .delete_pod_identity_association(cluster_name, association_id),
        )
        .await
    }
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        self.eks(
            "ListPodIdentityAssociations",
            self.inner
                .list_pod_identity_associations(cluster_name, namespace, service_account),
        )
        .await
    }
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        self.eks("TagResource", self.inner.tag_resource(arn, tags))
            .await
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        self.eks("UntagResource", self.inner.untag_resource(arn, keys))
            .await
    }
    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        self.eks(
            "DescribeAddon",
            self.inner.describe_addon(cluster_name, addon_name),
        )
        .await
    }
    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        self.eks("ListAddons", self.inner.list_addons(cluster_name))
            .await
    }
}

// On the AWS simulator, which only the `sandbox` feature compiles.
#[cfg(all(test, feature = "sandbox"))]
mod tests {
    use super::*;
    use crate::aws::faults::Service;
    use crate::aws::sim::{AwsSim, SimConfig, administrator_policy};
    use crate::runtime::health::Health;

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
        let iam = Metered::new(Arc::new(Faulty::new(sim(), knobs)), metrics.clone());
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
