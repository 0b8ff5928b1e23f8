use clap::{Parser, Subcommand};
use pod_identity_operator::aws::ratelimit::Rate;

/// Kubernetes operator that makes EKS Pod Identity declarative.
#[derive(Parser, Debug)]
#[command(
    name = "pod-identity-operator",
    version,
    about,
    after_help = "Without a subcommand, `run` is meant: `pod-identity-operator --cluster-name X` \
                  is `pod-identity-operator run --cluster-name X`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Parses a command line, `run` being the default subcommand. The run flags live on
    /// `run` only and `run` is inserted when the first argument names no subcommand: a
    /// copy of them flattened into the top level would be filled from their `PIO_*`
    /// variables and then demand `--cluster-name` even under another subcommand.
    fn try_parse_with_default<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString>,
    {
        use clap::CommandFactory;
        let mut args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
        let cmd = Self::command();
        let explicit = args.get(1).and_then(|a| a.to_str()).is_some_and(|first| {
            matches!(first, "-h" | "--help" | "-V" | "--version" | "help")
                || cmd
                    .get_subcommands()
                    .any(|s| s.get_name() == first || s.get_all_aliases().any(|a| a == first))
        });
        if !explicit {
            args.insert(1.min(args.len()), "run".into());
        }
        Self::try_parse_from(args)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print the PodIdentityBinding CustomResourceDefinition as YAML.
    Crd,
    /// Serve a local Kubernetes API server (kubesim) on 127.0.0.1 until interrupted.
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Kubesim {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// Write a kubeconfig pointing at the server to this path.
        #[arg(long)]
        kubeconfig_out: Option<std::path::PathBuf>,
    },
    /// Print the operator's own IAM policy for one installation (see config/iam).
    IamPolicy(IamPolicyArgs),
    /// Run everything locally: kubesim, the AWS simulator and the operator (no cluster,
    /// no AWS account), until Ctrl-C.
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Sandbox(SandboxArgs),
    /// Report the cluster's identity wiring (IRSA, associations, roles, bindings, the Pod
    /// Identity Agent) without changing anything; exit status 2 at --fail-on.
    Audit(pod_identity_operator::audit::AuditArgs),
    /// Plan (and with --apply make) the move from IRSA to PodIdentityBindings: writes
    /// binding YAML to --out, changes AWS or the cluster only with --apply.
    Migrate(pod_identity_operator::migrate::MigrateArgs),
    /// List the policy presets (`spec.role.presets`): what each grants, its parameters
    /// and the upstream release it was written from; `presets show NAME` renders one.
    Presets(PresetsArgs),
}

/// Options of `presets`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
struct PresetsArgs {
    #[command(subcommand)]
    command: Option<PresetsCommand>,
    /// Output format of the list.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: ListFormat,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum PresetsCommand {
    /// Print a preset rendered for a cluster and parameters, as JSON: the managed
    /// policy ARNs it attaches and its inline policy document.
    Show {
        /// The preset's name.
        name: String,
        /// A parameter, KEY=VALUE (lists comma-separated); repeat for several.
        #[arg(long = "param", value_name = "KEY=VALUE",
              value_parser = pod_identity_operator::presets::parse_parameter)]
        params: Vec<(String, String)>,
        /// The cluster to render for (its partition, region, account and name), as
        /// `arn:aws:eks:REGION:ACCOUNT:cluster/NAME`; without it region, account and
        /// cluster name are `*`.
        #[arg(long)]
        cluster_arn: Option<String>,
    },
}

/// Options of `sandbox`.
#[derive(clap::Args, Debug)]
#[cfg_attr(not(feature = "sandbox"), allow(dead_code))]
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
    /// Use moto (IAM) and ministack (EKS) from the test venv (`bash
    /// scripts/install-test-servers`; `$PIO_TEST_VENV`, else ./.venv) instead of the
    /// in-memory AWS simulator.
    #[arg(long)]
    wire: bool,
    /// Run under the guardrails of this file (the format of `run --config`) instead of
    /// the sandbox's own (config/sandbox-guardrails.yaml); the simulator enforces the
    /// operator's IAM policy rendered for them.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

/// Options of `iam-policy`.
#[derive(clap::Args, Debug)]
struct IamPolicyArgs {
    /// Name of the EKS cluster the operator runs in.
    #[arg(long)]
    cluster_name: String,
    /// The AWS account of the cluster.
    #[arg(long)]
    account: String,
    /// The cluster's region.
    #[arg(long)]
    region: String,
    /// The guardrail file the operator runs with (`run --config`); needed for the
    /// permissions document.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// The operator's own role, denied to the policy and refused in bindings.
    #[arg(long)]
    operator_role_arn: Option<String>,
    /// The operator's namespace and ServiceAccount, admitted by `--document trust`.
    #[arg(long, default_value = pod_identity_operator::operator_policy::OPERATOR_NAMESPACE)]
    namespace: String,
    #[arg(long, default_value = pod_identity_operator::operator_policy::OPERATOR_SERVICE_ACCOUNT)]
    service_account: String,
    /// Which document: the permissions policy or the trust policy of the operator's role.
    #[arg(long, value_enum, default_value = "permissions")]
    document: PolicyDocument,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum PolicyDocument {
    Permissions,
    Trust,
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
    /// Guardrail configuration (YAML), re-read when it changes. Without it every binding
    /// is denied (see config/guardrails.example.yaml and the README).
    #[arg(long, env = "PIO_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// The operator's own IAM role: a binding naming it is refused (see `iam-policy`).
    #[arg(long, env = "PIO_OPERATOR_ROLE_ARN")]
    operator_role_arn: Option<String>,
    /// Managed policies a role may hold: IAM's PoliciesPerRole quota of the account
    /// (10 by default; AWS support can raise it). Bindings asking for more are refused.
    #[arg(long, env = "PIO_MAX_MANAGED_POLICIES_PER_ROLE", default_value_t = 10)]
    max_managed_policies_per_role: usize,
    /// Seconds one reconcile pass may take before it is stopped and retried.
    #[arg(long, env = "PIO_PASS_DEADLINE", default_value_t = 300)]
    pass_deadline: u64,
    /// Reconcile only while holding the leader-election Lease (run several replicas).
    #[arg(long, env = "PIO_LEADER_ELECT")]
    leader_elect: bool,
    /// Namespace of the Lease (default: the kubeconfig's or the pod's namespace).
    #[arg(long, env = "PIO_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(
        long,
        env = "PIO_LEADER_ELECTION_NAME",
        default_value = "pod-identity-operator"
    )]
    leader_election_name: String,
    /// Seconds a leader keeps the Lease without renewing it; a standby takes over
    /// about this long after the leader dies.
    #[arg(long, env = "PIO_LEASE_DURATION", default_value_t = 15)]
    lease_duration: u64,
    /// Seconds before the Lease expires at which the leader renews it.
    #[arg(long, env = "PIO_LEASE_GRACE", default_value_t = 5)]
    lease_grace: u64,
    /// Serve /healthz and /readyz on this address (default: not served).
    #[arg(long, env = "PIO_HEALTH_ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// Serve Prometheus /metrics on this address (default: not served).
    #[arg(long, env = "PIO_METRICS_ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Log output: json or text (default: text on a terminal, json otherwise).
    #[arg(long, env = "PIO_LOG_FORMAT", value_enum)]
    log_format: Option<pod_identity_operator::runtime::telemetry::LogFormat>,
    /// Log filter in RUST_LOG syntax, e.g. `debug` or `info,kube=warn` (default:
    /// RUST_LOG, else `info,kube=warn`).
    #[arg(long, env = "PIO_LOG_LEVEL")]
    log_level: Option<String>,
    /// Seconds in-flight reconciles get to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "PIO_SHUTDOWN_TIMEOUT", default_value_t = 45)]
    shutdown_timeout: u64,
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
    let cli = Cli::try_parse_with_default(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Run(args) => run_operator(*args),
        Command::Crd => {
            print!("{}", pod_identity_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::Kubesim {
            port,
            kubeconfig_out,
        } => run_kubesim(port, kubeconfig_out),
        Command::Sandbox(args) => run_sandbox(args),
        Command::Audit(args) => {
            let failed = tokio::runtime::Runtime::new()?
                .block_on(pod_identity_operator::audit::run(&args))?;
            if failed {
                std::process::exit(2);
            }
            Ok(())
        }
        Command::Migrate(args) => {
            Ok(tokio::runtime::Runtime::new()?
                .block_on(pod_identity_operator::migrate::run(&args))?)
        }
        Command::IamPolicy(args) => {
            print!("{}", iam_policy(&args)?);
            Ok(())
        }
        Command::Presets(args) => {
            print!("{}", presets(&args)?);
            Ok(())
        }
    }
}

/// What `presets` prints.
fn presets(args: &PresetsArgs) -> anyhow::Result<String> {
    use pod_identity_operator::presets::{self, Context};
    match &args.command {
        None => Ok(match args.output {
            ListFormat::Table => presets::table(),
            ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&presets::listing())?),
        }),
        Some(PresetsCommand::Show {
            name,
            params,
            cluster_arn,
        }) => {
            let ctx = match cluster_arn {
                Some(arn) => Context::of_cluster_arn(arn).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--cluster-arn {arn:?} is not an EKS cluster ARN (arn:aws:eks:REGION:ACCOUNT:cluster/NAME)"
                    )
                })?,
                None => Context::any(),
            };
            let mut parameters = std::collections::BTreeMap::new();
            for (k, v) in params {
                anyhow::ensure!(
                    parameters.insert(k.clone(), v.clone()).is_none(),
                    "--param {k} is given twice"
                );
            }
            let shown = presets::show(name, &parameters, &ctx)?;
            Ok(format!("{}\n", serde_json::to_string_pretty(&shown)?))
        }
    }
}

/// The document `iam-policy` prints; a policy over IAM's managed-policy size is refused.
fn iam_policy(args: &IamPolicyArgs) -> anyhow::Result<String> {
    use anyhow::Context as _;
    use pod_identity_operator::operator_policy::{self, Installation};
    let mut inst = Installation::new(&args.cluster_name, &args.account, &args.region)
        .with_operator_role(args.operator_role_arn.clone());
    inst.namespace = args.namespace.clone();
    inst.service_account = args.service_account.clone();
    let doc = match args.document {
        PolicyDocument::Permissions => {
            let path = args.config.as_ref().context(
                "the permissions depend on the guardrails: pass --config FILE, the file the operator runs with",
            )?;
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let guardrails = pod_identity_operator::guardrails::GuardrailConfig::parse(&text)
                .with_context(|| format!("{} is not a valid guardrail file", path.display()))?;
            operator_policy::permissions(&inst, &guardrails)
        }
        PolicyDocument::Trust => operator_policy::trust(&inst),
    };
    let size = pod_identity_operator::policy::size_chars(&doc);
    anyhow::ensure!(
        size <= operator_policy::MANAGED_POLICY_MAX_CHARS,
        "the rendered policy has {size} characters, over IAM's {} for a managed policy: merge the guardrails' ARN lists into fewer globs",
        operator_policy::MANAGED_POLICY_MAX_CHARS
    );
    Ok(format!("{}\n", serde_json::to_string_pretty(&doc)?))
}

fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    use pod_identity_operator::aws::config::{AwsSettings, load_sdk_config};
    use pod_identity_operator::aws::metered::Metered;
    use pod_identity_operator::aws::{EksApi, IamApi, eks::SdkEks, iam::SdkIam};
    use pod_identity_operator::controller::{self, Context, Settings};
    use pod_identity_operator::runtime::{self, health::Health, http, leader, metrics::Metrics};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    runtime::telemetry::init(args.log_level.as_deref(), args.log_format)?;
    anyhow::ensure!(
        !args.leader_elect || args.lease_grace < args.lease_duration,
        "--lease-grace must be shorter than --lease-duration"
    );
    // kube's TLS needs a process-wide rustls provider; another one already installed
    // is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tokio_runtime = tokio::runtime::Runtime::new()?;
    tokio_runtime.block_on(async {
        let stop = runtime::shutdown::on_signal()?;
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
                settings.guardrails = Arc::new(
                    pod_identity_operator::guardrails::GuardrailSource::from_file(path)?,
                );
                tracing::info!(config = %path.display(), "guardrail configuration loaded");
            }
            None => tracing::warn!(
                "no --config: no guardrail configuration is loaded, so every binding is denied; pass --config FILE (see config/guardrails.example.yaml)"
            ),
        }
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
        let iam: Arc<dyn IamApi> =
            Arc::new(Metered::new(Arc::new(SdkIam::new(&sdk)), metrics.clone()));
        let eks: Arc<dyn EksApi> =
            Arc::new(Metered::new(Arc::new(SdkEks::new(&sdk)), metrics.clone()));
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
        tokio::spawn(runtime::probe_aws(
            eks.clone(),
            args.cluster_name.clone(),
            health.clone(),
            Duration::from_secs(5),
            servers_stop.clone(),
        ));
        let ctx = Context::new(client.clone(), iam, eks, settings);
        let outcome = match lease {
            Some(lease) => {
                let start = move |token: CancellationToken| {
                    controller::run(ctx.clone(), token.cancelled_owned())
                };
                leader::run_elected(client, lease, metrics.clone(), start, stop.clone(), deadline)
                    .await
                    .map_err(anyhow::Error::from)
            }
            None => {
                metrics.set_leader(true);
                let finished = runtime::shutdown::run_until(
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
    })
}

#[cfg(feature = "sandbox")]
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

#[cfg(feature = "sandbox")]
fn run_sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use pod_identity_operator::guardrails::GuardrailConfig;
    use pod_identity_operator::sandbox::{self, Options};
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (guardrails, guardrails_from) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the guardrails file {}", path.display()))?;
            let config = GuardrailConfig::parse(&text)
                .with_context(|| format!("the guardrails in {}", path.display()))?;
            (config, path.display().to_string())
        }
        None => (
            sandbox::default_guardrails()?,
            "the sandbox's own (config/sandbox-guardrails.yaml; --config FILE for yours)".into(),
        ),
    };
    let options = Options {
        guardrails,
        guardrails_from,
        kubeconfig: args.kubeconfig,
        kube_addr: std::net::SocketAddr::from(([127, 0, 0, 1], args.port)),
        inventory_addr: args.inventory_addr,
        apply: args.apply,
        view_interval: (!args.quiet)
            .then(|| std::time::Duration::from_secs(args.view_interval.max(1))),
        wire: args.wire,
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

#[cfg(not(feature = "sandbox"))]
fn run_kubesim(_port: u16, _kubeconfig_out: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    Err(not_in_this_build("kubesim"))
}

#[cfg(not(feature = "sandbox"))]
fn run_sandbox(_args: SandboxArgs) -> anyhow::Result<()> {
    Err(not_in_this_build("sandbox"))
}

/// The answer of `kubesim` and `sandbox` in a binary built without the `sandbox` feature,
/// as the production image is.
#[cfg(not(feature = "sandbox"))]
fn not_in_this_build(command: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`{command}` is not in this build: this binary was built without the Cargo feature \
         `sandbox` (kubesim and the AWS simulator), as the production image is; build one \
         with the default features for it: `cargo run --release -- {command}`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Held by the tests that set `PIO_*` variables or depend on their absence, since
    /// clap reads them from the process environment.
    static ENV: Mutex<()> = Mutex::new(());

    /// Runs `f` with these variables set, restoring their previous values afterwards.
    fn with_env(vars: &[(&str, &str)], f: impl FnOnce()) {
        let _guard = ENV.lock().unwrap_or_else(|p| p.into_inner());
        let saved: Vec<_> = vars
            .iter()
            .map(|(k, _)| (*k, std::env::var_os(k)))
            .collect();
        for (k, v) in vars {
            // SAFETY: every test touching these variables holds ENV, and no other thread
            // of the test binary reads them.
            unsafe { std::env::set_var(k, v) };
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        for (k, old) in saved {
            // SAFETY: as above.
            unsafe {
                match old {
                    Some(v) => std::env::set_var(k, v),
                    None => std::env::remove_var(k),
                }
            }
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_with_default(
            std::iter::once("pod-identity-operator").chain(args.iter().copied()),
        )
    }

    #[test]
    fn iam_policy_renders_the_installations_documents() {
        let base = [
            "iam-policy",
            "--cluster-name",
            "prod",
            "--account",
            "111122223333",
            "--region",
            "eu-west-1",
        ];
        let args = |extra: &[&str]| {
            let all: Vec<&str> = base.iter().chain(extra).copied().collect();
            match parse(&all).expect("iam-policy parses").command {
                Command::IamPolicy(a) => a,
                other => panic!("{other:?}"),
            }
        };
        let config = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/guardrails.example.yaml"
        );
        let text = iam_policy(&args(&[
            "--config",
            config,
            "--operator-role-arn",
            "arn:aws:iam::111122223333:role/pio",
        ]))
        .expect("rendered");
        let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert!(text.contains("arn:aws:iam::111122223333:role/pod-identity/prod/*"));
        assert!(text.contains("arn:aws:eks:eu-west-1:111122223333:cluster/prod"));
        assert!(text.contains("\"arn:aws:iam::111122223333:role/pio\""));
        assert_eq!(doc["Version"], "2012-10-17");
        let missing = iam_policy(&args(&[])).expect_err("permissions need the guardrails");
        assert!(missing.to_string().contains("--config"), "{missing}");
        let trust = iam_policy(&args(&["--document", "trust", "--namespace", "ops"]))
            .expect("trust needs no guardrails");
        assert!(
            trust.contains("\"aws:RequestTag/kubernetes-namespace\": \"ops\""),
            "{trust}"
        );
    }

    #[test]
    fn run_flag_variables_fill_run_only() {
        with_env(
            &[("PIO_CONCURRENCY", "8"), ("PIO_LEADER_ELECT", "true")],
            || {
                for args in [
                    &["run", "--cluster-name", "X"][..],
                    &["--cluster-name", "X"],
                ] {
                    let Command::Run(run) = parse(args).expect("run from flags and env").command
                    else {
                        panic!("run expected for {args:?}");
                    };
                    assert_eq!((run.cluster_name.as_str(), run.concurrency), ("X", 8));
                    assert!(run.leader_elect);
                }
                assert!(matches!(
                    parse(&["crd"]).expect("crd").command,
                    Command::Crd
                ));
                let Command::Sandbox(s) = parse(&["sandbox", "--quiet"]).expect("sandbox").command
                else {
                    panic!("sandbox expected");
                };
                assert!(s.quiet);
                assert!(matches!(
                    parse(&["kubesim", "--port", "0"]).expect("kubesim").command,
                    Command::Kubesim { port: 0, .. }
                ));
                let err = parse(&["run"]).expect_err("no cluster name");
                assert!(err.to_string().contains("--cluster-name"), "{err}");
            },
        );
        with_env(
            &[("PIO_CLUSTER_NAME", "Y"), ("PIO_CONCURRENCY", "3")],
            || {
                for args in [
                    &["run"][..],
                    &[],
                    &["--namespace", "a"],
                    &["run", "--cluster-name", "Z"],
                ] {
                    let Command::Run(run) = parse(args).expect("run from env").command else {
                        panic!("run expected for {args:?}");
                    };
                    let want = if args.contains(&"Z") { "Z" } else { "Y" };
                    assert_eq!((run.cluster_name.as_str(), run.concurrency), (want, 3));
                }
                assert!(matches!(
                    parse(&["crd"]).expect("crd").command,
                    Command::Crd
                ));
            },
        );
    }

    #[test]
    fn help_and_version_are_not_taken_for_run() {
        use clap::error::ErrorKind;
        for (args, kind) in [
            (&["--help"][..], ErrorKind::DisplayHelp),
            (&["-h"], ErrorKind::DisplayHelp),
            (&["help"], ErrorKind::DisplayHelp),
            (&["--version"], ErrorKind::DisplayVersion),
            (&["-V"], ErrorKind::DisplayVersion),
            (&["run", "--help"], ErrorKind::DisplayHelp),
        ] {
            let err = parse(args).expect_err("help or version");
            assert_eq!(err.kind(), kind, "{args:?}");
        }
        let help = parse(&["--help"]).expect_err("help").to_string();
        assert!(help.contains("`run` is meant"), "{help}");
        // `sandbox` and `kubesim` are listed only in builds that have them.
        assert_eq!(
            help.contains("sandbox"),
            cfg!(feature = "sandbox"),
            "{help}"
        );
        let run_help = parse(&["run", "--help"]).expect_err("help").to_string();
        assert!(run_help.contains("--cluster-name") && run_help.contains("PIO_CONCURRENCY"));
    }

    #[test]
    fn run_takes_every_flag_and_needs_a_cluster_name() {
        let cli = Cli::try_parse_with_default([
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
        let Command::Run(args) = cli.command else {
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
            let err = Cli::try_parse_with_default([
                "pod-identity-operator",
                "--cluster-name",
                "prod",
                &format!("--iam-rate={bad}"),
            ])
            .expect_err("not a rate");
            assert!(err.to_string().contains("not a rate"), "{bad}: {err}");
        }

        let _env = ENV.lock().unwrap_or_else(|p| p.into_inner());
        {
            let err = Cli::try_parse_with_default(["pod-identity-operator", "run"])
                .expect_err("required");
            assert!(err.to_string().contains("--cluster-name"));
        }
    }

    #[test]
    fn run_takes_the_deployment_s_runtime_flags() {
        let cli = Cli::try_parse_with_default([
            "pod-identity-operator",
            "run",
            "--cluster-name",
            "prod",
            "--leader-elect",
            "--leader-election-namespace",
            "ops",
            "--health-addr=0.0.0.0:8081",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=json",
            "--log-level",
            "debug",
            "--shutdown-timeout",
            "10",
        ])
        .expect("valid command line");
        let Command::Run(args) = cli.command else {
            panic!("run expected");
        };
        assert!(args.leader_elect);
        assert_eq!(args.leader_election_namespace.as_deref(), Some("ops"));
        assert_eq!(args.leader_election_name, "pod-identity-operator");
        assert_eq!((args.lease_duration, args.lease_grace), (15, 5));
        assert_eq!(args.health_addr.map(|a| a.port()), Some(8081));
        assert_eq!(args.metrics_addr.map(|a| a.port()), Some(8080));
        assert_eq!(
            args.log_format,
            Some(pod_identity_operator::runtime::telemetry::LogFormat::Json)
        );
        assert_eq!(args.log_level.as_deref(), Some("debug"));
        assert_eq!(args.shutdown_timeout, 10);
        assert!(
            Cli::try_parse_with_default([
                "pod-identity-operator",
                "--cluster-name",
                "p",
                "--log-format=xml"
            ])
            .is_err()
        );
    }

    #[test]
    fn run_is_the_default_command() {
        let cli = Cli::try_parse_with_default(["pod-identity-operator", "--cluster-name", "prod"])
            .expect("valid command line");
        let Command::Run(run) = cli.command else {
            panic!("run expected");
        };
        assert_eq!(run.cluster_name, "prod");
        let cli = Cli::try_parse_with_default(["pod-identity-operator", "crd"]).expect("crd");
        assert!(matches!(cli.command, Command::Crd));
    }

    #[test]
    fn sandbox_has_defaults_and_takes_its_flags() {
        let cli =
            Cli::try_parse_with_default(["pod-identity-operator", "sandbox"]).expect("sandbox");
        let Command::Sandbox(args) = cli.command else {
            panic!("sandbox expected");
        };
        assert_eq!(
            args.kubeconfig,
            std::path::PathBuf::from("./sandbox.kubeconfig")
        );
        assert_eq!(args.inventory_addr.to_string(), "127.0.0.1:0");
        assert!(!args.quiet && args.apply.is_none() && !args.wire);
        let cli = Cli::try_parse_with_default([
            "pod-identity-operator",
            "sandbox",
            "--kubeconfig",
            "/tmp/k",
            "--inventory-addr",
            "127.0.0.1:8099",
            "--apply",
            "examples/",
            "--quiet",
            "--wire",
        ])
        .expect("sandbox flags");
        let Command::Sandbox(args) = cli.command else {
            panic!("sandbox expected");
        };
        assert_eq!(args.inventory_addr.port(), 8099);
        assert_eq!(args.apply, Some(std::path::PathBuf::from("examples/")));
        assert!(args.quiet && args.wire);
    }

    #[cfg(not(feature = "sandbox"))]
    #[test]
    fn sandbox_and_kubesim_say_they_are_not_in_this_build() {
        for name in ["sandbox", "kubesim"] {
            let err = match parse(&[name]).expect(name).command {
                Command::Sandbox(args) => run_sandbox(args),
                Command::Kubesim {
                    port,
                    kubeconfig_out,
                } => run_kubesim(port, kubeconfig_out),
                other => panic!("{name}: {other:?}"),
            }
            .expect_err(name)
            .to_string();
            assert!(
                err.contains("not in this build")
                    && err.contains("feature `sandbox`")
                    && err.contains(&format!("cargo run --release -- {name}")),
                "{err}"
            );
        }
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
