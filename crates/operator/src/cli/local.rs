//! The arguments of the local commands, `kubesim` and `sandbox` (kubesim and the AWS
//! simulator, in builds with the `sandbox` feature).

/// Options of `kubesim`.
#[derive(clap::Args, Debug)]
pub struct KubesimArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Write a kubeconfig pointing at the server to this path.
    #[arg(long)]
    pub kubeconfig_out: Option<std::path::PathBuf>,
}

/// Options of `sandbox`.
#[derive(clap::Args, Debug)]
pub struct SandboxArgs {
    /// Write the kubeconfig pointing at the sandbox here.
    #[arg(long, default_value = "./sandbox.kubeconfig")]
    pub kubeconfig: std::path::PathBuf,
    /// Port of the Kubernetes API (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Address of the AWS inventory JSON (`/inventory`) and the simulator's IAM/EKS
    /// endpoint.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub inventory_addr: std::net::SocketAddr,
    /// Apply the manifests of this directory (or file) once the sandbox runs.
    #[arg(long)]
    pub apply: Option<std::path::PathBuf>,
    /// Print no live view of bindings and AWS.
    #[arg(long)]
    pub quiet: bool,
    /// Seconds between refreshes of the live view (printed when it changes).
    #[arg(long, default_value_t = 2)]
    pub view_interval: u64,
    /// Use moto (IAM) and ministack (EKS) from the test venv (`bash
    /// scripts/install-test-servers`; `$PIO_TEST_VENV`, else ./.venv) instead of the
    /// in-memory AWS simulator.
    #[arg(long)]
    pub wire: bool,
    /// Run under the guardrails of this file (the format of `run --config`) instead of
    /// the sandbox's own (config/sandbox-guardrails.yaml); the simulator enforces the
    /// operator's IAM policy rendered for them.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}
