//! What a contract case gets: the two APIs and facts about the backend behind them.

use std::sync::Arc;

use pod_identity_operator::aws::{EksApi, IamApi};

pub use crate::known_differences::Server;

pub struct Backend {
    /// Which implementation answers IAM, and which EKS: cases look up the server's
    /// known differences from AWS by it (`known_differences`).
    pub iam_server: Server,
    pub eks_server: Server,
    pub iam: Arc<dyn IamApi>,
    pub eks: Arc<dyn EksApi>,
    /// An existing EKS cluster the cases may use.
    pub cluster_name: String,
    /// The account the roles are created in.
    pub account_id: String,
    /// Keeps servers, temp dirs or locks alive for the case's duration.
    pub _guard: Box<dyn std::any::Any + Send>,
}
