//! `pod-identity-operator run`: the operator's wiring. The AWS and Kubernetes clients,
//! the guardrails, the metrics and health servers, the controller (under leader
//! election when asked), and a graceful shutdown on SIGTERM or Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::health::Health;
use super::metrics::Metrics;
use super::{http, leader, shutdown, telemetry};
use crate::aws::config::{AwsSettings, load_sdk_config};
use crate::aws::ratelimit::Rate;
use crate::aws::{EksApi, eks::SdkEks, iam::SdkIam};
use crate::cli::run::RunArgs;
use crate::controller::{self, Context, Settings};
use crate::guardrails::GuardrailSource;
use crate::{Error, Result};

/// Runs the operator until SIGTERM or Ctrl-C, and then until its in-flight reconciles
/// finish or `--shutdown-timeout` passes.
pub fn run(args: &RunArgs) -> Result<()> {
    telemetry::init(args.log_level.as_deref(), args.log_format)?;
    if args.leader_elect && args.lease_grace >= args.lease_duration {
        return Err(Error::Usage(
            "--lease-grace must be shorter than --lease-duration".into(),
        ));
    }
    // kube's TLS needs a process-wide rustls provider; another one already installed
    // is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Runtime::new()?.block_on(serve(args))
}

/// The settings of the controller that the flags give.
fn settings(args: &RunArgs, metrics: &Arc<Metrics>) -> Result<Settings> {
    let mut settings = Settings::new(&args.cluster_name);
    settings.namespace = args.namespace.clone();
    settings.resync = Duration::from_secs(args.resync_interval.max(1));
    settings.concurrency = args.concurrency.max(1);
    settings.metrics = Some(metrics.clone());
    settings.iam_rate = Rate::from_flags(args.iam_rate, args.iam_burst);
    settings.eks_rate = Rate::from_flags(args.eks_rate, args.eks_burst);
    settings.operator_role_arn = args.operator_role_arn.clone().filter(|a| !a.is_empty());
    settings.max_managed_policies_per_role = args.max_managed_policies_per_role.max(1);
    settings.pass_deadline = Duration::from_secs(args.pass_deadline.max(1));
    match &args.config {
        Some(path) => {
            settings.guardrails = Arc::new(GuardrailSource::from_file(path)?);
            tracing::info!(config = %path.display(), "guardrail configuration loaded");
        }
        None => tracing::warn!(
            "no --config: no guardrail configuration is loaded, so every binding is denied; pass --config FILE (see config/guardrails.example.yaml)"
        ),
    }
    Ok(settings)
}

async fn serve(args: &RunArgs) -> Result<()> {
    let stop = shutdown::on_signal()?;
    let deadline = Duration::from_secs(args.shutdown_timeout);
    let health = Health::new();
    let metrics = Metrics::new(health.clone());
    let health_listener = match args.health_addr {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    let metrics_listener = match args.metrics_addr {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await?),
        None => None,
    };
    let aws = AwsSettings {
        region: args.region.clone(),
        endpoint_url: args.aws_endpoint_url.clone(),
        ..AwsSettings::default()
    };
    let sdk = load_sdk_config(&aws).await?;
    let client = kube::Client::try_default().await?;
    let settings = settings(args, &metrics)?;
    let lease = args.leader_elect.then(|| leader::LeaseSettings {
        name: args.leader_election_name.clone(),
        namespace: args
            .leader_election_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned()),
        identity: leader::identity(),
        duration: args.lease_duration,
        grace: args.lease_grace,
    });
    let addr = |l: &Option<tokio::net::TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "off".to_owned(), |a| a.to_string())
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        cluster = %args.cluster_name,
        region = sdk.region().map_or("unset", |r| r.as_ref()),
        aws_endpoint = args.aws_endpoint_url.as_deref().unwrap_or("default"),
        watch_namespace = args.namespace.as_deref().unwrap_or("all"),
        guardrails = %args.config.as_ref().map_or("built-in baseline".into(), |p| p.display().to_string()),
        guardrail_rules = settings.guardrails.current().rules.len(),
        leader_election = args.leader_elect,
        lease = %lease.as_ref().map_or("off".into(), |l| format!("{}/{}", l.namespace, l.name)),
        identity = lease.as_ref().map_or("", |l| l.identity.as_str()),
        health_addr = %addr(&health_listener),
        metrics_addr = %addr(&metrics_listener),
        concurrency = settings.concurrency,
        resync_seconds = settings.resync.as_secs(),
        shutdown_timeout_seconds = args.shutdown_timeout,
        "pod-identity-operator starting"
    );
    // The context puts the clients behind the AWS call stack: rate limits and metering.
    let ctx = Context::new(
        client.clone(),
        Arc::new(SdkIam::new(&sdk)),
        Arc::new(SdkEks::new(&sdk)),
        settings,
    );
    let servers_stop = CancellationToken::new();
    let mut servers = Vec::new();
    if let Some(l) = health_listener {
        let router = http::health_router(health.clone());
        servers.push(tokio::spawn(http::serve(l, router, servers_stop.clone())));
    }
    if let Some(l) = metrics_listener {
        let router = http::metrics_router(metrics.clone());
        servers.push(tokio::spawn(http::serve(l, router, servers_stop.clone())));
    }
    tokio::spawn(probe_aws(
        ctx.eks.clone(),
        args.cluster_name.clone(),
        health.clone(),
        Duration::from_secs(5),
        servers_stop.clone(),
    ));
    let outcome = match lease {
        Some(lease) => {
            let start = move |token: CancellationToken| {
                controller::run(ctx.clone(), token.cancelled_owned())
            };
            leader::run_elected(
                client,
                lease,
                metrics.clone(),
                start,
                stop.clone(),
                deadline,
            )
            .await
        }
        None => {
            metrics.set_leader(true);
            let finished = shutdown::run_until(
                controller::run(ctx, stop.clone().cancelled_owned()),
                &stop,
                deadline,
            )
            .await;
            if !finished {
                tracing::warn!("shutdown deadline passed: in-flight reconciles dropped");
            }
            metrics.set_leader(false);
            Ok(())
        }
    };
    // The HTTP servers go last, so probes and scrapes see the shutdown through.
    servers_stop.cancel();
    for s in servers {
        let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
    }
    tracing::info!("pod-identity-operator stopped");
    outcome
}

/// Calls DescribeCluster until AWS answers once (so `/readyz` can pass on a replica
/// with no binding to reconcile), every `every`, until `stop`. The call goes through the
/// context's AWS call stack, whose metering marks AWS reached.
pub async fn probe_aws(
    eks: Arc<dyn EksApi>,
    cluster: String,
    health: Arc<Health>,
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
