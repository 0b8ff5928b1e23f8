//! AWS behind traits: the IAM and EKS calls the operator makes, as [`IamApi`] and
//! [`EksApi`], with the domain types of this crate at the boundary.
//!
//! The SDK adapters ([`iam`], [`eks`], configured by [`config`], and [`local`] for the
//! set-up calls of local servers) are the only place SDK types appear; [`classify`]
//! turns every SDK failure into an [`AwsError`] carrying its [`ErrorClass`], so callers
//! decide retries by class, never by string matching. The AWS simulator (the crate `pod-identity-aws-sim`) implements the same traits.
//!
//! Policy documents travel as parsed JSON ([`serde_json::Value`]); adapters encode and
//! decode them at the wire ([`decode_policy`]).
//!
//! Around an implementation sits a call stack ([`layer`]): rate limiting
//! ([`ratelimit`]) and metering ([`metered`]) are [`Layer`](layer::Layer)s over one
//! generic wrapper; the simulator's fault injection is another.

pub mod bucket;
pub mod classify;
pub mod config;
pub mod eks;
mod error;
pub mod iam;
pub mod layer;
pub mod local;
pub mod metered;
pub mod ratelimit;

pub use error::{AwsError, Error, ErrorClass, Result, decode_policy};
pub use layer::Service;

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Tags as IAM and EKS hold them: key to value, ordered for stable comparison.
pub type Tags = BTreeMap<String, String>;

/// An IAM role as GetRole describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    pub arn: String,
    pub role_id: String,
    pub path: String,
    pub description: Option<String>,
    pub max_session_duration: i32,
    /// The trust policy, decoded from its URL-encoded wire form.
    pub assume_role_policy: Value,
    pub permissions_boundary_arn: Option<String>,
    pub tags: Tags,
    pub created: Option<DateTime<Utc>>,
}

/// Input of CreateRole.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateRole {
    pub name: String,
    pub path: String,
    pub assume_role_policy: Value,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    pub permissions_boundary_arn: Option<String>,
    pub tags: Tags,
}

/// A managed policy attached to a role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedPolicy {
    pub arn: String,
    pub name: String,
}

/// An EKS cluster as DescribeCluster reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    /// The account that owns the cluster, taken from its ARN.
    pub account_id: String,
    pub status: Option<String>,
}

/// An EKS Pod Identity association, with every field DescribePodIdentityAssociation
/// returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Association {
    pub cluster_name: String,
    pub association_id: String,
    pub association_arn: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    /// The session policy, parsed from its JSON string form.
    pub session_policy: Option<Value>,
    pub external_id: Option<String>,
    /// Set when an EKS add-on owns the association.
    pub owner_arn: Option<String>,
    pub tags: Tags,
    pub created_at: Option<DateTime<Utc>>,
    pub modified_at: Option<DateTime<Utc>>,
}

/// One row of ListPodIdentityAssociations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationSummary {
    pub cluster_name: String,
    pub association_id: String,
    pub association_arn: String,
    pub namespace: String,
    pub service_account: String,
    pub owner_arn: Option<String>,
}

/// An EKS add-on as DescribeAddon reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addon {
    pub cluster_name: String,
    pub name: String,
    pub arn: String,
    /// `ACTIVE`, `CREATING`, `DEGRADED`, ...
    pub status: Option<String>,
    pub version: Option<String>,
    /// The IAM role of the add-on's ServiceAccount under IRSA (`serviceAccountRoleArn`).
    pub service_account_role_arn: Option<String>,
    /// ARNs of the Pod Identity associations the add-on owns (EKS makes them, with the
    /// add-on's ARN as their `ownerArn`).
    pub pod_identity_association_arns: Vec<String>,
}

/// Input of CreatePodIdentityAssociation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CreateAssociation {
    pub cluster_name: String,
    pub namespace: String,
    pub service_account: String,
    pub role_arn: String,
    pub target_role_arn: Option<String>,
    pub disable_session_tags: bool,
    pub session_policy: Option<Value>,
    pub tags: Tags,
    /// Idempotency token: the same token with the same input returns the same
    /// association instead of failing.
    pub client_request_token: Option<String>,
}

/// Input of UpdatePodIdentityAssociation. `None` leaves a field as it is; for the
/// optional fields, `Some(None)` clears it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateAssociation {
    pub cluster_name: String,
    pub association_id: String,
    pub role_arn: Option<String>,
    pub target_role_arn: Option<Option<String>>,
    pub disable_session_tags: Option<bool>,
    pub session_policy: Option<Option<Value>>,
    pub client_request_token: Option<String>,
}

/// The IAM calls the operator makes. A method's doc names the IAM API it maps to.
#[async_trait]
pub trait IamApi: Send + Sync {
    /// CreateRole (tags included, so the role is never untagged).
    async fn create_role(&self, input: &CreateRole) -> Result<Role>;
    /// GetRole; `None` when the role does not exist (NoSuchEntity).
    async fn get_role(&self, name: &str) -> Result<Option<Role>>;
    /// UpdateRole: description and maximum session duration; `None` leaves a field.
    async fn update_role(
        &self,
        name: &str,
        description: Option<&str>,
        max_session_duration: Option<i32>,
    ) -> Result<()>;
    /// UpdateAssumeRolePolicy.
    async fn update_assume_role_policy(&self, name: &str, document: &Value) -> Result<()>;
    /// PutRolePermissionsBoundary.
    async fn put_role_permissions_boundary(&self, name: &str, policy_arn: &str) -> Result<()>;
    /// DeleteRolePermissionsBoundary.
    async fn delete_role_permissions_boundary(&self, name: &str) -> Result<()>;
    /// AttachRolePolicy.
    async fn attach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()>;
    /// DetachRolePolicy.
    async fn detach_role_policy(&self, name: &str, policy_arn: &str) -> Result<()>;
    /// ListAttachedRolePolicies, every page.
    async fn list_attached_role_policies(&self, name: &str) -> Result<Vec<AttachedPolicy>>;
    /// PutRolePolicy (inline policy).
    async fn put_role_policy(&self, name: &str, policy_name: &str, document: &Value) -> Result<()>;
    /// GetRolePolicy, decoded; `None` when the role has no inline policy of that name.
    async fn get_role_policy(&self, name: &str, policy_name: &str) -> Result<Option<Value>>;
    /// DeleteRolePolicy.
    async fn delete_role_policy(&self, name: &str, policy_name: &str) -> Result<()>;
    /// ListRolePolicies (inline policy names), every page.
    async fn list_role_policies(&self, name: &str) -> Result<Vec<String>>;
    /// TagRole.
    async fn tag_role(&self, name: &str, tags: &Tags) -> Result<()>;
    /// UntagRole.
    async fn untag_role(&self, name: &str, keys: &[String]) -> Result<()>;
    /// ListRoleTags, every page.
    async fn list_role_tags(&self, name: &str) -> Result<Tags>;
    /// DeleteRole.
    async fn delete_role(&self, name: &str) -> Result<()>;
    /// ListInstanceProfilesForRole: names of the instance profiles holding the role, to
    /// explain a DeleteConflict.
    async fn list_instance_profiles_for_role(&self, name: &str) -> Result<Vec<String>>;
    /// ListRoles under a path prefix, every page. IAM lists neither tags nor
    /// permissions boundaries here: ask [`IamApi::list_role_tags`] or
    /// [`IamApi::get_role`] for them. Implementations that do not list roles answer
    /// `UnsupportedOperation`.
    async fn list_roles(&self, path_prefix: &str) -> Result<Vec<Role>> {
        let _ = path_prefix;
        Err(unsupported("ListRoles"))
    }
}

/// The error of an operation an implementation does not provide.
fn unsupported(operation: &str) -> Error {
    classify::aws_error(
        operation,
        "UnsupportedOperation",
        &format!("{operation} is not implemented by this client"),
    )
}

/// The EKS calls the operator makes. A method's doc names the EKS API it maps to.
#[async_trait]
pub trait EksApi: Send + Sync {
    /// DescribeCluster; `None` when the cluster does not exist.
    async fn describe_cluster(&self, name: &str) -> Result<Option<Cluster>>;
    /// CreatePodIdentityAssociation.
    async fn create_pod_identity_association(
        &self,
        input: &CreateAssociation,
    ) -> Result<Association>;
    /// DescribePodIdentityAssociation; `None` when it does not exist.
    async fn describe_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<Option<Association>>;
    /// UpdatePodIdentityAssociation.
    async fn update_pod_identity_association(
        &self,
        input: &UpdateAssociation,
    ) -> Result<Association>;
    /// DeletePodIdentityAssociation.
    async fn delete_pod_identity_association(
        &self,
        cluster_name: &str,
        association_id: &str,
    ) -> Result<()>;
    /// ListPodIdentityAssociations, every page, filtered by namespace and ServiceAccount
    /// when given.
    async fn list_pod_identity_associations(
        &self,
        cluster_name: &str,
        namespace: Option<&str>,
        service_account: Option<&str>,
    ) -> Result<Vec<AssociationSummary>>;
    /// TagResource (on an association ARN).
    async fn tag_resource(&self, arn: &str, tags: &Tags) -> Result<()>;
    /// UntagResource (on an association ARN).
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<()>;
    /// DescribeAddon; `None` when the cluster has no add-on of that name.
    /// Implementations without add-ons answer `UnsupportedOperation`.
    async fn describe_addon(&self, cluster_name: &str, addon_name: &str) -> Result<Option<Addon>> {
        let _ = (cluster_name, addon_name);
        Err(unsupported("DescribeAddon"))
    }
    /// ListAddons: the names of the cluster's add-ons, every page.
    async fn list_addons(&self, cluster_name: &str) -> Result<Vec<String>> {
        let _ = cluster_name;
        Err(unsupported("ListAddons"))
    }
}
