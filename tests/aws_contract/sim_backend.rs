//! The in-memory simulator as a contract backend. Propagation and release windows are
//! short but real, so the cases see them happen and then pass; two seconds leave room
//! for a loaded machine between a create and the call that must find it still hidden.

use std::sync::Arc;
use std::time::Duration;

use pod_identity_operator::aws::sim::{AwsSim, SimConfig, administrator_policy};

use crate::backend::{Backend, Server};

/// How long a new role stays invisible to EKS, and a deleted association keeps
/// blocking its ServiceAccount, in this backend.
pub const WINDOW: Duration = Duration::from_secs(2);

pub async fn start() -> Backend {
    let sim = Arc::new(AwsSim::new(SimConfig {
        role_propagation: WINDOW,
        association_release: WINDOW,
        seed: rand::random(),
        // The contract is the API's: the caller is the account's administrator, so
        // every call still passes through the authorizer and is allowed.
        identity_policy: Some(administrator_policy()),
        ..SimConfig::default()
    }));
    let cluster = sim.add_cluster("contract");
    Backend {
        iam_server: Server::Simulator,
        eks_server: Server::Simulator,
        iam: sim.clone(),
        eks: sim.clone(),
        cluster_name: cluster.name,
        account_id: cluster.account_id,
        _guard: Box::new(sim),
    }
}

crate::cases::all_cases!();
