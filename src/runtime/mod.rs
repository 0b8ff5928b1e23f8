//! The process around the controller: leader election ([`leader`]), metrics
//! ([`metrics`], served with health by [`http`]), health ([`health`]), logging
//! ([`telemetry`]) and graceful shutdown ([`shutdown`]). `main.rs` wires them.

pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::aws::EksApi;

/// Calls DescribeCluster until AWS answers once (so `/readyz` can pass on a replica
/// with no binding to reconcile), every `every`, until `stop`. The call goes through the
/// metered client, which marks AWS reached.
pub async fn probe_aws(
    eks: Arc<dyn EksApi>,
    cluster: String,
    health: Arc<health::Health>,
    every: Duration,
    stop: CancellationToken,
) {
    while !health.aws_reached() && !stop.is_cancelled() {
        match eks.describe_cluster(&cluster).await {
            Ok(Some(c)) => tracing::info!(
                cluster = %c.name,
                status = c.status.as_deref().unwrap_or("unknown"),
                "EKS cluster found"
            ),
            Ok(None) => {
                tracing::warn!(%cluster, "EKS cluster not found in this account and region")
            }
            Err(e) => tracing::warn!(error = %e, "AWS not reachable yet"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => {}
        }
    }
}
