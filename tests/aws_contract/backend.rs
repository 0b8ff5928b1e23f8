//! What a contract case gets: the two APIs and facts about the backend behind them.

use std::sync::Arc;

use pod_identity_operator::aws::{EksApi, IamApi};

/// Which implementation answers; cases use it only to note where a wire server is
/// laxer than AWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Simulator,
    /// SDK adapters against moto (IAM) and ministack (EKS).
    #[allow(dead_code)] // constructed by the wire backend module
    Wire,
}

pub struct Backend {
    pub kind: BackendKind,
    pub iam: Arc<dyn IamApi>,
    pub eks: Arc<dyn EksApi>,
    /// An existing EKS cluster the cases may use.
    pub cluster_name: String,
    /// The account the roles are created in.
    pub account_id: String,
    /// Keeps servers, temp dirs or locks alive for the case's duration.
    pub _guard: Box<dyn std::any::Any + Send>,
}
