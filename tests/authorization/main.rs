//! The AWS simulator authorizing every call against the operator's IAM policy,
//! evaluated as IAM does. Under the shipped policy (`config/iam/operator-policy.json`):
//! what it must refuse on a role the operator does not own, and the controller's whole
//! life of a binding naming an existing role passing under it. Under the policy rendered
//! for one installation (`operator_policy`, `pod-identity-operator iam-policy`): a table
//! of calls it must refuse, the escalations it stops with the guardrail checks switched
//! off, and a binding's whole life needing exactly what it allows.
//!
//! By scenario: `shipped_policy`, `escalations` (the rendered policy's table of refused
//! calls, the escalations it stops alone, the operator's own role), and `rendered_life`
//! (a binding's whole life under the rendered policy, and the AccessDenied it reports).

#[path = "../support/mod.rs"]
mod support;

mod escalations;
mod rendered_life;
mod shipped_policy;

use std::sync::Arc;

use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::aws::{CreateAssociation, CreateRole, EksApi, IamApi, Tags};
use pod_identity_operator::guardrails::GuardrailConfig;
use pod_identity_operator::operator_policy::{self, Installation};
use pod_identity_operator::policy::pod_identity_trust_policy;
use serde_json::Value;

// Shared by the scenarios: the installation, its tenants and the policy rendered for it.

const CLUSTER: &str = "prod";

const ACCOUNT: &str = "111122223333";
const OPERATOR_ROLE: &str = "arn:aws:iam::111122223333:role/pod-identity-operator";
const BOUNDARY: &str = "arn:aws:iam::111122223333:policy/boundary";
const OTHER_BOUNDARY: &str = "arn:aws:iam::111122223333:policy/lenient";

const UNLISTED: &str = "arn:aws:iam::111122223333:policy/unlisted";
const ALLOWED_EXISTING: &str = "arn:aws:iam::111122223333:role/allowed-app";

/// A platform team's guardrails: one managed policy, a mandatory boundary, existing
/// roles named `allowed-*` only.
const TENANT_GUARDRAILS: &str = r#"
rules:
- name: tenants
  namespaces: ["*"]
  allowedManagedPolicyArns: ["arn:aws:iam::aws:policy/ReadOnlyAccess"]
  deniedManagedPolicyArns: ["arn:aws:iam::aws:policy/AdministratorAccess"]
  inlinePolicies: {allowed: true}
  allowedExistingRoleArns: ["arn:aws:iam::111122223333:role/allowed-*"]
  permissionsBoundaryArn: arn:aws:iam::111122223333:policy/boundary
"#;

fn tenant_guardrails() -> GuardrailConfig {
    GuardrailConfig::parse(TENANT_GUARDRAILS).expect("guardrails")
}

fn installation() -> Installation {
    Installation::new(CLUSTER, ACCOUNT, "us-east-1").with_operator_role(Some(OPERATOR_ROLE.into()))
}

fn rendered() -> Value {
    operator_policy::permissions(&installation(), &tenant_guardrails())
}

fn ownership(cluster: &str) -> Tags {
    let arn = format!("arn:aws:eks:us-east-1:{ACCOUNT}:cluster/{cluster}");
    pod_identity_operator::naming::ownership_tags(&arn, "team", "app")
}

fn role(name: &str, path: &str, tags: Tags, boundary: Option<&str>) -> CreateRole {
    CreateRole {
        name: name.into(),
        path: path.into(),
        assume_role_policy: pod_identity_trust_policy(None),
        permissions_boundary_arn: boundary.map(str::to_owned),
        tags,
        ..CreateRole::default()
    }
}

/// An account with this cluster and another (`prod-eu`), made by an administrator: the
/// operator's own role, a deploy role, an allowed existing role, a role of `prod-eu`
/// (`victim`), a role under this cluster's path tagged for `prod-eu` (`foreign`), one
/// owned by this cluster (`ours`, with the boundary), and an association of `prod-eu`.
async fn tenant_account() -> (Arc<AwsSim>, String) {
    let aws = Arc::new(AwsSim::new(SimConfig::default()));
    aws.add_cluster(CLUSTER);
    aws.add_cluster("prod-eu");
    for p in [BOUNDARY, OTHER_BOUNDARY, UNLISTED] {
        aws.add_managed_policy(p);
    }
    support::existing_role(&aws).await;
    let other_association = AwsSim::as_admin(async {
        for r in [
            role("pod-identity-operator", "/", Tags::new(), None),
            role("allowed-app", "/", Tags::new(), None),
            role(
                "victim",
                "/pod-identity/prod-eu/",
                ownership("prod-eu"),
                None,
            ),
            role("foreign", "/pod-identity/prod/", ownership("prod-eu"), None),
            role(
                "ours",
                "/pod-identity/prod/",
                ownership(CLUSTER),
                Some(BOUNDARY),
            ),
        ] {
            aws.create_role(&r).await.expect("role");
        }
        aws.create_pod_identity_association(&CreateAssociation {
            cluster_name: "prod-eu".into(),
            namespace: "team".into(),
            service_account: "app".into(),
            role_arn: "arn:aws:iam::111122223333:role/pod-identity/prod-eu/victim".into(),
            ..CreateAssociation::default()
        })
        .await
        .expect("association")
        .association_id
    })
    .await;
    (aws, other_association)
}
