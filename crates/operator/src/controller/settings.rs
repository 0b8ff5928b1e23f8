//! How the controller runs ([`Settings`]): the cluster, what it watches, its pace and
//! retries, the guardrails in force, the client-side limits of AWS calls and the AWS
//! call stack they give.

use std::sync::Arc;
use std::time::Duration;

use crate::aws::ratelimit::Rate;
use crate::guardrails::GuardrailSource;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The EKS cluster this operator runs in.
    pub cluster_name: String,
    /// Watch one namespace only; `None` watches all.
    pub namespace: Option<String>,
    /// Requeue of a converged binding, to repair AWS drift.
    pub resync: Duration,
    /// Bindings reconciled at the same time.
    pub concurrency: u16,
    /// How long after a role's creation EKS not seeing it is `RolePropagating`.
    pub propagation_window: Duration,
    /// First delay of the exponential backoff of transient failures.
    pub retry_base: Duration,
    /// Longest backoff delay.
    pub retry_max: Duration,
    /// Delay while waiting for propagation or an association's release.
    pub retry_soon: Duration,
    /// Delay after conflicts and environment problems.
    pub retry_slow: Duration,
    /// The guardrails in force.
    pub guardrails: Arc<GuardrailSource>,
    /// How often a guardrail file is checked for changes.
    pub guardrails_poll: Duration,
    /// Where reconciles are counted; `None` counts nothing.
    pub metrics: Option<Arc<crate::runtime::metrics::Metrics>>,
    /// Client-side limit of IAM calls; `None`: unlimited.
    pub iam_rate: Option<Rate>,
    /// Client-side limit of EKS calls; `None`: unlimited.
    pub eks_rate: Option<Rate>,
    /// The operator's own IAM role, which no binding may name.
    pub operator_role_arn: Option<String>,
    /// False only in tests that show what the operator's IAM policy stops on its own:
    /// then the guardrails still place roles (path, prefix) but refuse nothing.
    pub guardrail_checks: bool,
    /// Managed policies a role may hold (IAM's `PoliciesPerRole` quota, 10 unless AWS
    /// raised it); a binding asking for more is refused before any AWS call.
    pub max_managed_policies_per_role: usize,
    /// The longest one reconcile pass may take; a pass still running then is stopped
    /// and fails as `Retrying`.
    pub pass_deadline: Duration,
}

impl Settings {
    pub fn new(cluster_name: impl Into<String>) -> Self {
        Settings {
            cluster_name: cluster_name.into(),
            namespace: None,
            resync: Duration::from_secs(300),
            concurrency: 4,
            propagation_window: Duration::from_secs(120),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            retry_soon: Duration::from_secs(5),
            retry_slow: Duration::from_secs(120),
            guardrails: Arc::new(GuardrailSource::unconfigured()),
            guardrails_poll: Duration::from_secs(10),
            metrics: None,
            iam_rate: Some(Rate::IAM_DEFAULT),
            eks_rate: Some(Rate::EKS_DEFAULT),
            operator_role_arn: None,
            guardrail_checks: true,
            max_managed_policies_per_role: 10,
            pass_deadline: Duration::from_secs(300),
        }
    }

    /// The AWS call stack of a service limited to `rate`: metering into
    /// [`metrics`](Self::metrics) when set.
    pub fn aws_stack(&self, rate: Option<Rate>) -> crate::aws::Stack {
        let observer = self.metrics.clone();
        crate::aws::Stack::new(
            rate,
            observer.map(|m| m as Arc<dyn crate::aws::layer::CallObserver>),
        )
    }
}
