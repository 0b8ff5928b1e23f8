//! The AWS call stack: layers around every [`IamApi`]/[`EksApi`] call, and the one
//! wrapper that forwards the traits' methods through them.
//!
//! A [`Layer`] sees each call as its [`Call`] (service and operation name) and a
//! function that makes it; it may act before and after, fail the call without making it
//! (fault injection), or make it again (the rate limiter retries throttled calls, hence
//! `Fn`). [`Layered`] puts a layer in front of a shared implementation (`Arc<dyn
//! IamApi>`, `Arc<AwsSim>`, ...) and is the only hand-written forwarding of the 29
//! methods. Layers compose: `(A, B)` is `A` around `B`, and `Option<L>` is `L` or
//! nothing, so a whole stack is one `Layered` with one boxed future per call.
//!
//! The layers: metering ([`metered`](super::metered), reporting each call to a
//! [`CallObserver`]), rate limiting ([`ratelimit`](super::ratelimit)) and the
//! simulator's fault injection (`pod_identity_aws_sim::faults::Knobs`). The operator's
//! `aws::Stack` builds them in their one order.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Addon, Association, AssociationSummary, AttachedPolicy, Cluster, CreateAssociation, CreateRole,
    EksApi, IamApi, Role, Tags, UpdateAssociation,
};
use crate::Result;

/// The two services, which AWS throttles and the operator paces separately.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Iam,
    Eks,
}

impl Service {
    /// The service's name in metric labels: `iam` or `eks`.
    pub fn label(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Eks => "eks",
        }
    }
}

/// One call as a layer sees it: its service and its AWS operation name (`CreateRole`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub service: Service,
    pub operation: &'static str,
}

impl Call {
    const fn iam(operation: &'static str) -> Call {
        Call {
            service: Service::Iam,
            operation,
        }
    }

    const fn eks(operation: &'static str) -> Call {
        Call {
            service: Service::Eks,
            operation,
        }
    }
}

/// Something done around every AWS call.
pub trait Layer: Send + Sync {
    /// Makes `call` through this layer: `f` makes the call itself (or the next layer's
    /// part of it), and may be invoked again to retry.
    fn call<'a, R, F, Fut>(
        &'a self,
        call: Call,
        f: F,
    ) -> impl Future<Output = Result<R>> + Send + 'a
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a;
}

/// No layer: the call as it is.
impl Layer for () {
    fn call<'a, R, F, Fut>(
        &'a self,
        _call: Call,
        f: F,
    ) -> impl Future<Output = Result<R>> + Send + 'a
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        f()
    }
}

/// A layer that may be left out.
impl<L: Layer> Layer for Option<L> {
    async fn call<'a, R, F, Fut>(&'a self, call: Call, f: F) -> Result<R>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        match self {
            Some(layer) => layer.call(call, f).await,
            None => f().await,
        }
    }
}

/// A shared layer.
impl<L: Layer> Layer for Arc<L> {
    fn call<'a, R, F, Fut>(
        &'a self,
        call: Call,
        f: F,
    ) -> impl Future<Output = Result<R>> + Send + 'a
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        (**self).call(call, f)
    }
}

/// `outer` around `inner`: each of `outer`'s attempts goes through `inner`.
impl<A: Layer, B: Layer> Layer for (A, B) {
    async fn call<'a, R, F, Fut>(&'a self, call: Call, f: F) -> Result<R>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<R>> + Send + 'a,
        R: Send + 'a,
    {
        let (outer, inner) = self;
        let f = &f;
        outer.call(call, move || inner.call(call, f)).await
    }
}

/// What a metering layer reports: every call once it finished, with its error if it
/// failed. The runtime's metrics implement it; the AWS layer knows nothing of them.
pub trait CallObserver: Send + Sync {
    fn finished(&self, call: Call, error: Option<&crate::Error>);
}

/// An AWS implementation `inner` (any shared one: `Arc<dyn IamApi>`, `Arc<AwsSim>`,
/// ...) whose every call goes through `layer`. `Metered`, `RateLimited` and `Faulty`
/// are this with their layer.
pub struct Layered<T, L> {
    inner: T,
    layer: L,
}

impl<T, L> Layered<T, L> {
    /// `inner` behind `layer`.
    pub fn wrap(inner: T, layer: L) -> Self {
        Layered { inner, layer }
    }

    pub fn inner(&self) -> &T {
        &self.inner
    }

    pub fn layer(&self) -> &L {
        &self.layer
    }
}

#[async_trait]
impl<T, L> IamApi for Layered<T, L>
where
    T: Deref + Send + Sync,
    T::Target: IamApi,
    L: Layer,
{
    async fn create_role(&self, input: &CreateRole) -> Result<Role> {
        let f = || self.inner.create_role(input);
        self.layer.call(Call::iam("CreateRole"), f).await
    }
    async fn get_role(&self, name: &str) -> Result<Option<Role>> {
        let f = || self.inner.get_role(name);
        self.layer.call(Call::iam("GetRole"), f).await
    }
    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()> {
        let f = || {
            self.inner
                .update_role(name, description, max_session_duration)
        };
        self.layer.call(Call::iam("UpdateRole"), f).await
    }
    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()> {
        let f = || self.inner.update_assume_role_policy(name, document);
        self.layer
            .call(Call::iam("UpdateAssumeRolePolicy"), f)
            .await
    }
    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()> {
        let f = || self.inner.put_role_permissions_boundary(name, policy_arn);
        let call = Call::iam("PutRolePermissionsBoundary");
        self.layer.call(call, f).await
    }
    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()> {
        let f = || self.inner.delete_role_permissions_boundary(name);
        let call = Call::iam("DeleteRolePermissionsBoundary");
        self.layer.call(call, f).await
    }
    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        let f = || self.inner.attach_role_policy(name, policy_arn);
        self.layer.call(Call::iam("AttachRolePolicy"), f).await
    }
    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()> {
        let f = || self.inner.detach_role_policy(name, policy_arn);
        self.layer.call(Call::iam("DetachRolePolicy"), f).await
    }
    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>> {
        let f = || self.inner.list_attached_role_policies(name);
        let call = Call::iam("ListAttachedRolePolicies");
        self.layer.call(call, f).await
    }
    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()> {
        let f = || self.inner.put_role_policy(name, policy_name, document);
        self.layer.call(Call::iam("PutRolePolicy"), f).await
    }
    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>> {
        let f = || self.inner.get_role_policy(name, policy_name);
        self.layer.call(Call::iam("GetRolePolicy"), f).await
    }
    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()> {
        let f = || self.inner.delete_role_policy(name, policy_name);
        self.layer.call(Call::iam("DeleteRolePolicy"), f).await
    }
    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>> {
        let f = || self.inner.list_role_policies(name);
        self.layer.call(Call::iam("ListRolePolicies"), f).await
    }
    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()> {
        let f = || self.inner.tag_role(name, tags);
        self.layer.call(Call::iam("TagRole"), f).await
    }
    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()> {
        let f = || self.inner.untag_role(name, keys);
        self.layer.call(Call::iam("UntagRole"), f).await
    }
    async fn list_role_tags(&self, name: &str) -> Result<Tags> {
        let f = || self.inner.list_role_tags(name);
        self.layer.call(Call::iam("ListRoleTags"), f).await
    }
    async fn delete_role(&self, name: &str) -> Result<()> {
        let f = || self.inner.delete_role(name);
        self.layer.call(Call::iam("DeleteRole"), f).await
    }
    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>> {
        let f = || self.inner.list_instance_profiles_for_role(name);
        let call = Call::iam("ListInstanceProfilesForRole");
        self.layer.call(call, f).await
    }
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        let f = || self.inner.list_roles(path_prefix);
        self.layer.call(Call::iam("ListRoles"), f).await
    }
}

#[async_trait]
impl<T, L> EksApi for Layered<T, L>
where
    T: Deref + Send + Sync,
    T::Target: EksApi,
    L: Layer,
{
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>> {
        let f = || self.inner.describe_cluster(name);
        self.layer.call(Call::eks("DescribeCluster"), f).await
    }
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association> {
        let f = || self.inner.create_pod_identity_association(input);
        let call = Call::eks("CreatePodIdentityAssociation");
        self.layer.call(call, f).await
    }
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>> {
        let f = || {
            self.inner
                .describe_pod_identity_association(cluster_name, association_id)
        };
        let call = Call::eks("DescribePodIdentityAssociation");
        self.layer.call(call, f).await
    }
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association> {
        let f = || self.inner.update_pod_identity_association(input);
        let call = Call::eks("UpdatePodIdentityAssociation");
        self.layer.call(call, f).await
    }
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()> {
        let f = || {
            self.inner
                .delete_pod_identity_association(cluster_name, association_id)
        };
        let call = Call::eks("DeletePodIdentityAssociation");
        self.layer.call(call, f).await
    }
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>> {
        let f = || {
            self.inner
                .list_pod_identity_associations(cluster_name, namespace, service_account)
        };
        let call = Call::eks("ListPodIdentityAssociations");
        self.layer.call(call, f).await
    }
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()> {
        let f = || self.inner.tag_resource(arn, tags);
        self.layer.call(Call::eks("TagResource"), f).await
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()> {
        let f = || self.inner.untag_resource(arn, keys);
        self.layer.call(Call::eks("UntagResource"), f).await
    }
    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        let f = || self.inner.describe_addon(cluster_name, addon_name);
        self.layer.call(Call::eks("DescribeAddon"), f).await
    }
    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        let f = || self.inner.list_addons(cluster_name);
        self.layer.call(Call::eks("ListAddons"), f).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A layer that notes its name before and after each call it passes on.
    struct Note(&'static str, Arc<Mutex<Vec<String>>>);

    impl Layer for Note {
        async fn call<'a, R, F, Fut>(&'a self, call: Call, f: F) -> Result<R>
        where
            F: Fn() -> Fut + Send + Sync + 'a,
            Fut: Future<Output = Result<R>> + Send + 'a,
            R: Send + 'a,
        {
            let note = |s: String| self.1.lock().expect("notes").push(s);
            note(format!("{} {}", self.0, call.operation));
            let r = f().await;
            note(format!("{} done", self.0));
            r
        }
    }

    /// A layer that makes every call twice, as a retrying layer would.
    struct Twice;

    impl Layer for Twice {
        async fn call<'a, R, F, Fut>(&'a self, _call: Call, f: F) -> Result<R>
        where
            F: Fn() -> Fut + Send + Sync + 'a,
            Fut: Future<Output = Result<R>> + Send + 'a,
            R: Send + 'a,
        {
            let _ = f().await;
            f().await
        }
    }

    #[tokio::test]
    async fn layers_compose_outer_first_and_each_attempt_passes_the_inner_ones() {
        let notes = Arc::new(Mutex::new(Vec::new()));
        let stack = (
            Twice,
            (
                Note("a", notes.clone()),
                (None::<Note>, (Arc::new(Note("b", notes.clone())), ())),
            ),
        );
        let made = AtomicU32::new(0);
        let n = stack
            .call(Call::iam("GetRole"), || async {
                Ok(made.fetch_add(1, Ordering::SeqCst))
            })
            .await
            .expect("call");
        assert_eq!((n, made.load(Ordering::SeqCst)), (1, 2));
        let once = ["a GetRole", "b GetRole", "b done", "a done"];
        assert_eq!(*notes.lock().expect("notes"), [once, once].concat());
    }
}
