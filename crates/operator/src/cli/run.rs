//! The arguments of `run`, each of which can also come from the environment.

use crate::aws::ratelimit::Rate;
use crate::runtime::telemetry::LogFormat;

/// Options of `run`; each can also come from the environment.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Name of the EKS cluster the operator runs in.
    #[arg(long, env = "PIO_CLUSTER_NAME")]
    pub cluster_name: String,
    /// AWS region (default: from the AWS environment or profile).
    #[arg(long, env = "PIO_REGION")]
    pub region: Option<String>,
    /// Send every AWS call to this URL (tests against local servers).
    #[arg(long, env = "PIO_AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// Seconds between resyncs of a converged binding (repairs AWS drift).
    #[arg(long, env = "PIO_RESYNC_INTERVAL", default_value_t = 300)]
    pub resync_interval: u64,
    /// Bindings reconciled at the same time.
    #[arg(long, env = "PIO_CONCURRENCY", default_value_t = 4)]
    pub concurrency: u16,
    /// Watch this namespace only (default: all namespaces).
    #[arg(long, env = "PIO_NAMESPACE")]
    pub namespace: Option<String>,
    /// Guardrail configuration (YAML), re-read when it changes. Without it every binding
    /// is denied (see config/guardrails.example.yaml and the README).
    #[arg(long, env = "PIO_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// The operator's own IAM role: a binding naming it is refused (see `iam-policy`).
    #[arg(long, env = "PIO_OPERATOR_ROLE_ARN")]
    pub operator_role_arn: Option<String>,
    /// Managed policies a role may hold: IAM's PoliciesPerRole quota of the account
    /// (10 by default; AWS support can raise it). Bindings asking for more are refused.
    #[arg(long, env = "PIO_MAX_MANAGED_POLICIES_PER_ROLE", default_value_t = 10)]
    pub max_managed_policies_per_role: usize,
    /// Seconds one reconcile pass may take before it is stopped and retried.
    #[arg(long, env = "PIO_PASS_DEADLINE", default_value_t = 300)]
    pub pass_deadline: u64,
    /// Reconcile only while holding the leader-election Lease (run several replicas).
    #[arg(long, env = "PIO_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: the kubeconfig's or the pod's namespace).
    #[arg(long, env = "PIO_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "PIO_LEADER_ELECTION_NAME",
        default_value = "pod-identity-operator"
    )]
    pub leader_election_name: String,
    /// Seconds a leader keeps the Lease without renewing it; a standby takes over
    /// about this long after the leader dies.
    #[arg(long, env = "PIO_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds before the Lease expires at which the leader renews it.
    #[arg(long, env = "PIO_LEASE_GRACE", default_value_t = 5)]
    pub lease_grace: u64,
    /// Serve /healthz and /readyz on this address (default: not served).
    #[arg(long, env = "PIO_HEALTH_ADDR")]
    pub health_addr: Option<std::net::SocketAddr>,
    /// Serve Prometheus /metrics on this address (default: not served).
    #[arg(long, env = "PIO_METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Log output: json or text (default: text on a terminal, json otherwise).
    #[arg(long, env = "PIO_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in RUST_LOG syntax, e.g. `debug` or `info,kube=warn` (default:
    /// RUST_LOG, else `info,kube=warn`).
    #[arg(long, env = "PIO_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Seconds in-flight reconciles get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "PIO_SHUTDOWN_TIMEOUT", default_value_t = 45)]
    pub shutdown_timeout: u64,
    /// IAM calls per second the operator allows itself (0: no client-side limit).
    #[arg(long, env = "PIO_IAM_RATE", value_parser = rate_flag,
          default_value_t = Rate::IAM_DEFAULT.per_second)]
    pub iam_rate: f64,
    /// IAM calls the operator may make at once before --iam-rate paces it.
    #[arg(long, env = "PIO_IAM_BURST", default_value_t = Rate::IAM_DEFAULT.burst)]
    pub iam_burst: u32,
    /// EKS calls per second the operator allows itself (0: no client-side limit).
    #[arg(long, env = "PIO_EKS_RATE", value_parser = rate_flag,
          default_value_t = Rate::EKS_DEFAULT.per_second)]
    pub eks_rate: f64,
    /// EKS calls the operator may make at once before --eks-rate paces it.
    #[arg(long, env = "PIO_EKS_BURST", default_value_t = Rate::EKS_DEFAULT.burst)]
    pub eks_burst: u32,
}

/// A rate flag: a finite number of calls per second, 0 or more.
fn rate_flag(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate: calls per second, 0 or more")),
    }
}
