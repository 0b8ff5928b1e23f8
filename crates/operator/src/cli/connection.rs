//! What `audit` and `migrate` share: how they reach the cluster and AWS, and their
//! output formats.

/// How `audit` and `migrate` reach the cluster and AWS: the connection flags of `run`
/// (the kubeconfig comes from the usual places: `KUBECONFIG`, `~/.kube/config`, or the
/// in-cluster ServiceAccount).
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// Name of the EKS cluster.
    #[arg(long, env = "PIO_CLUSTER_NAME")]
    pub cluster_name: String,
    /// AWS region (default: from the AWS environment or profile).
    #[arg(long, env = "PIO_REGION")]
    pub region: Option<String>,
    /// Send every AWS call to this URL (local servers).
    #[arg(long, env = "PIO_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
}

/// Output formats of `audit` and `migrate`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}
