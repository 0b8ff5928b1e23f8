use clap::{Parser, Subcommand};
use pod_identity_operator::aws::ratelimit::Rate;

/// Kubernetes operator that makes EKS Pod Identity declarative.
#[derive(Parser, Debug)]
#[command(
    name = "pod-identity-operator",
    version,
    about,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand the operator runs, configured by these flags.
    #[command(flatten)]
    run: Option<RunArgs>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator.
    Run(RunArgs),
    /// Print the PodIdentityBinding CustomResourceDefinition as YAML.
    Crd,
    /// Serve a local Kubernetes API server (kubesim) on 127.0.0.1 until interrupted.
    Kubesim {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// Write a kubeconfig pointing at the server to this path.
        #[arg(long)]
        kubeconfig_out: Option<std::path::PathBuf>,
    },
    /// Run everything locally: kubesim, the AWS simulator and the operator (no cluster,
    /// no AWS account), until Ctrl-C.
    Sandbox(SandboxArgs),
}

/// Options of `sandbox`.
#[derive(clap::Args, Debug)]
struct SandboxArgs {
    /// Write the kubeconfig pointing at the sandbox here.
    #[arg(long, default_value = "./sandbox.kubeconfig")]
    kubeconfig: std::path::PathBuf,
    /// Port of the Kubernetes API (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Address of the AWS inventory JSON (`/inventory`) and the simulator's IAM/EKS
    /// endpoint.
    #[arg(long, default_value = "127.0.0.1:0")]
    inventory_addr: std::net::SocketAddr,
    /// Apply the manifests of this directory (or file) once the sandbox runs.
    #[arg(long)]
    apply: Option<std::path::PathBuf>,
    /// Print no live view of bindings and AWS.
    #[arg(long)]
    quiet: bool,
    /// Seconds between refreshes of the live view (printed when it changes).
    #[arg(long, default_value_t = 2)]
    view_interval: u64,
}

/// Options of `run`; each can also come from the environment.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Name of the EKS cluster the operator runs in.
    #[arg(long, env = "PIO_CLUSTER_NAME")]
    cluster_name: String,
    /// AWS region (default: from the AWS environment or profile).
    #[arg(long, env = "PIO_REGION")]
    region: Option<String>,
    /// Send every AWS call to this URL (tests against local servers).
    #[arg(long, env = "PIO_AWS_ENDPOINT_URL")]
    aws_endpoint_url: Option<String>,
    /// Seconds between resyncs of a converged binding (repairs AWS drift).
    #[arg(long, env = "PIO_RESYNC_INTERVAL", default_value_t = 300)]
    resync_interval: u64,
    /// Bindings reconciled at the same time.
    #[arg(long, env = "PIO_CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// Watch this namespace only (default: all namespaces).
    #[arg(long, env = "PIO_NAMESPACE")]
    namespace: Option<String>,
    /// Guardrail configuration (YAML), re-read when it changes (default: the built-in
    /// baseline, see the README).
    #[arg(long, env = "PIO_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// IAM calls per second the operator allows itself (0: no client-side limit).
    #[arg(long, env = "PIO_IAM_RATE", value_parser = rate_flag,
          default_value_t = Rate::IAM_DEFAULT.per_second)]
    iam_rate: f64,
    /// IAM calls the operator may make at once before --iam-rate paces it.
    #[arg(long, env = "PIO_IAM_BURST", default_value_t = Rate::IAM_DEFAULT.burst)]
    iam_burst: u32,
    /// EKS calls per second the operator allows itself (0: no client-side limit).
    #[arg(long, env = "PIO_EKS_RATE", value_parser = rate_flag,
          default_value_t = Rate::EKS_DEFAULT.per_second)]
    eks_rate: f64,
    /// EKS calls the operator may make at once before --eks-rate paces it.
    #[arg(long, env = "PIO_EKS_BURST", default_value_t = Rate::EKS_DEFAULT.burst)]
    eks_burst: u32,
}

/// A rate flag: a finite number of calls per second, 0 or more.
fn rate_flag(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a rate: calls per second, 0 or more")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Run(args)) => run_operator(args),
        Some(Command::Crd) => {
            print!("{}", pod_identity_operator::crd::crd_yaml()?);
            Ok(())
        }
        Some(Command::Kubesim {
            port,
            kubeconfig_out,
        }) => run_kubesim(port, kubeconfig_out),
        Some(Command::Sandbox(args)) => run_sandbox(args),
        // `run` is the default command.
        None => run_operator(
            cli.run
                .ok_or_else(|| anyhow::anyhow!("--cluster-name is required"))?,
        ),
    }
}

fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    use pod_identity_operator::aws::config::{AwsSettings, load_sdk_config};
    use pod_identity_operator::aws::{eks::SdkEks, iam::SdkIam};
    use pod_identity_operator::controller::{self, Context, Settings};
    use std::sync::Arc;

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    // kube's TLS needs a process-wide rustls provider; another one already installed
    // is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let aws = AwsSettings {
            region: args.region.clone(),
            endpoint_url: args.aws_endpoint_url.clone(),
            ..AwsSettings::default()
        };
        let sdk = load_sdk_config(&aws).await?;
        let client = kube::Client::try_default().await?;
        let mut settings = Settings::new(&args.cluster_name);
        settings.namespace = args.namespace.clone();
        settings.resync = std::time::Duration::from_secs(args.resync_interval.max(1));
        settings.concurrency = args.concurrency.max(1);
        settings.iam_rate = Rate::from_flags(args.iam_rate, args.iam_burst);
        settings.eks_rate = Rate::from_flags(args.eks_rate, args.eks_burst);
        match &args.config {
            Some(path) => {
                settings.guardrails = Arc::new(
                    pod_identity_operator::config::GuardrailSource::from_file(path)?,
                );
                tracing::info!(config = %path.display(), "guardrail configuration loaded");
            }
            None => tracing::warn!(
                "no --config: the built-in baseline guardrails apply to every namespace"
            ),
        }
        let ctx = Context::new(
            client,
            Arc::new(SdkIam::new(&sdk)),
            Arc::new(SdkEks::new(&sdk)),
            settings,
        );
        tracing::info!(cluster = %args.cluster_name, "pod-identity-operator running");
        controller::run(ctx, async {
            shutdown_signal().await;
        })
        .await;
        Ok(())
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

fn run_kubesim(port: u16, kubeconfig_out: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let sim = pod_identity_operator::kubesim::KubeSim::new();
        let server = sim
            .serve_tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        if let Some(path) = &kubeconfig_out {
            server.write_kubeconfig(path)?;
        }
        println!("kubesim serving on {}", server.url());
        server
            .serve_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
        Ok(())
    })
}

fn run_sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    use pod_identity_operator::sandbox::{self, Options};
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let options = Options {
        kubeconfig: args.kubeconfig,
        kube_addr: std::net::SocketAddr::from(([127, 0, 0, 1], args.port)),
        inventory_addr: args.inventory_addr,
        apply: args.apply,
        view_interval: (!args.quiet)
            .then(|| std::time::Duration::from_secs(args.view_interval.max(1))),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Registered before anything starts, so an early Ctrl-C is not lost.
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let stop = async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        };
        sandbox::run(options, stop).await?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_takes_every_flag_and_needs_a_cluster_name() {
        let cli = Cli::try_parse_from([
            "pod-identity-operator",
            "run",
            "--cluster-name",
            "prod",
            "--region",
            "eu-west-1",
            "--aws-endpoint-url",
            "http://127.0.0.1:4566",
            "--resync-interval",
            "60",
            "--concurrency",
            "8",
            "--namespace",
            "team-a",
            "--iam-rate",
            "2.5",
            "--iam-burst",
            "5",
            "--eks-rate",
            "0",
            "--eks-burst",
            "7",
        ])
        .expect("valid command line");
        let Some(Command::Run(args)) = cli.command else {
            panic!("run expected");
        };
        assert_eq!(args.cluster_name, "prod");
        assert_eq!(args.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            args.aws_endpoint_url.as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!((args.resync_interval, args.concurrency), (60, 8));
        assert_eq!(args.namespace.as_deref(), Some("team-a"));
        assert_eq!(
            (args.iam_rate, args.iam_burst, args.eks_rate, args.eks_burst),
            (2.5, 5, 0.0, 7)
        );
        assert_eq!(
            Rate::from_flags(args.iam_rate, args.iam_burst),
            Some(Rate {
                per_second: 2.5,
                burst: 5
            })
        );
        assert_eq!(Rate::from_flags(args.eks_rate, args.eks_burst), None);
        for bad in ["-1", "NaN", "inf", "fast"] {
            let err = Cli::try_parse_from([
                "pod-identity-operator",
                "--cluster-name",
                "prod",
                &format!("--iam-rate={bad}"),
            ])
            .expect_err("not a rate");
            assert!(err.to_string().contains("not a rate"), "{bad}: {err}");
        }

        if std::env::var_os("PIO_CLUSTER_NAME").is_none() {
            let err = Cli::try_parse_from(["pod-identity-operator", "run"]).expect_err("required");
            assert!(err.to_string().contains("--cluster-name"));
        }
    }

    #[test]
    fn run_is_the_default_command() {
        let cli = Cli::try_parse_from(["pod-identity-operator", "--cluster-name", "prod"])
            .expect("valid command line");
        if let Some(run) = &cli.run
            && std::env::var_os("PIO_IAM_RATE").is_none()
        {
            assert_eq!(
                Rate::from_flags(run.iam_rate, run.iam_burst),
                Some(Rate::IAM_DEFAULT)
            );
        }
        assert!(cli.command.is_none());
        assert_eq!(cli.run.map(|r| r.cluster_name), Some("prod".to_string()));
        let cli = Cli::try_parse_from(["pod-identity-operator", "crd"]).expect("crd");
        assert!(matches!(cli.command, Some(Command::Crd)));
    }

    #[test]
    fn sandbox_has_defaults_and_takes_its_flags() {
        let cli = Cli::try_parse_from(["pod-identity-operator", "sandbox"]).expect("sandbox");
        let Some(Command::Sandbox(args)) = cli.command else {
            panic!("sandbox expected");
        };
        assert_eq!(
            args.kubeconfig,
            std::path::PathBuf::from("./sandbox.kubeconfig")
        );
        assert_eq!(args.inventory_addr.to_string(), "127.0.0.1:0");
        assert!(!args.quiet && args.apply.is_none());
        let cli = Cli::try_parse_from([
            "pod-identity-operator",
            "sandbox",
            "--kubeconfig",
            "/tmp/k",
            "--inventory-addr",
            "127.0.0.1:8099",
            "--apply",
            "examples/",
            "--quiet",
        ])
        .expect("sandbox flags");
        let Some(Command::Sandbox(args)) = cli.command else {
            panic!("sandbox expected");
        };
        assert_eq!(args.inventory_addr.port(), 8099);
        assert_eq!(args.apply, Some(std::path::PathBuf::from("examples/")));
        assert!(args.quiet);
    }

    #[test]
    fn every_run_flag_has_an_environment_variable() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let run = cmd.find_subcommand("run").expect("run subcommand");
        for arg in run.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().unwrap_or_default();
            if long == "help" {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(
                env,
                Some(format!("PIO_{}", long.to_uppercase().replace('-', "_"))),
                "--{long}"
            );
        }
    }
}
