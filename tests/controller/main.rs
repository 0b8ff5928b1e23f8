//! The controller in-process against kubesim and the AWS simulator, by scenario:
//! - `lifecycle`: the lifecycle through the finalizer, conditions and Events, zero-write
//!   resyncs, `deletionPolicy: Retain`, a namespace-only operator;
//! - `propagation`: crash-safety of the create path, IAM propagation and the
//!   association release window, roles held by an instance profile;
//! - `ownership`: conflicts over ServiceAccounts, roles and associations, adoption, and
//!   existing roles used without being modified;
//! - `drift`: drift in AWS repaired on resync, renames moving the association;
//! - `validation`: the CRD schema and CEL rules, and every example accepted;
//! - `failures`: environment problems reported and recovered from, backoff and kstatus
//!   conditions;
//! - `throttling`: behaviour under AWS throttling and the client-side rate limit.

#[path = "../support/mod.rs"]
mod support;

mod drift;
mod failures;
mod lifecycle;
mod ownership;
mod propagation;
mod throttling;
mod validation;

use std::sync::Arc;

use pod_identity_operator::aws::sim::{AwsSim, SimConfig};
use pod_identity_operator::controller::Settings;
use pod_identity_operator::naming;

use support::{Env, NS};

// Shared by the scenarios: the cluster, and the controller started against the simulator.

const CLUSTER: &str = "prod";
/// The ARN the simulator gives the cluster `prod`.
const CLUSTER_ARN: &str = "arn:aws:eks:us-east-1:111122223333:cluster/prod";

/// The controller against a simulator holding the cluster, which authorizes its calls
/// against the operator's policy rendered for the cluster and the guardrails it runs
/// with.
async fn start(config: SimConfig, tune: impl FnOnce(&mut Settings)) -> (Env, Arc<AwsSim>) {
    let aws = Arc::new(AwsSim::new(config));
    assert_eq!(aws.add_cluster(CLUSTER).arn, CLUSTER_ARN);
    let env = Env::start(
        CLUSTER,
        aws.clone(),
        aws.clone(),
        support::under_rendered_policy(&aws, CLUSTER, tune),
    )
    .await;
    (env, aws)
}

fn owned_roles(aws: &AwsSim, name: &str) -> usize {
    aws.inventory()
        .roles
        .iter()
        .filter(|r| naming::owned_by(&r.role.tags, CLUSTER_ARN, NS, name))
        .count()
}

fn write_calls(aws: &AwsSim) -> u64 {
    support::write_calls(aws.knobs())
}

const READ_ONLY: &str = "arn:aws:iam::aws:policy/ReadOnlyAccess";
