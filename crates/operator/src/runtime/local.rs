//! The local commands, `kubesim` and `sandbox`: kubesim alone, or kubesim, the AWS
//! simulator and the operator together, until interrupted. They need the Cargo feature
//! `sandbox`; a binary built without it (the production image) answers that they are
//! not in this build ([`Error::NotInThisBuild`]).

#[cfg(not(feature = "sandbox"))]
use crate::Error;
use crate::Result;
use crate::cli::local::{KubesimArgs, SandboxArgs};

/// Serves kubesim on 127.0.0.1 until Ctrl-C.
#[cfg(feature = "sandbox")]
pub fn kubesim(args: &KubesimArgs) -> Result<()> {
    tokio::runtime::Runtime::new()?.block_on(async {
        let sim = crate::kubesim::KubeSim::new();
        let server = sim
            .serve_tcp(std::net::SocketAddr::from(([127, 0, 0, 1], args.port)))
            .await?;
        if let Some(path) = &args.kubeconfig_out {
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

/// Runs the sandbox until SIGINT or SIGTERM.
#[cfg(feature = "sandbox")]
pub fn sandbox(args: SandboxArgs) -> Result<()> {
    use crate::Error;
    use crate::guardrails::GuardrailConfig;
    use crate::sandbox::{self, Options};
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (guardrails, guardrails_from) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::context(format!("reading the guardrails file {}", path.display()), e)
            })?;
            let config = GuardrailConfig::parse(&text)
                .map_err(|e| Error::context(format!("the guardrails in {}", path.display()), e))?;
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
    tokio::runtime::Runtime::new()?.block_on(async {
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
        sandbox::run(options, stop).await
    })
}

/// `kubesim` in a build without the `sandbox` feature: not in this build.
#[cfg(not(feature = "sandbox"))]
pub fn kubesim(_args: &KubesimArgs) -> Result<()> {
    Err(Error::NotInThisBuild("kubesim"))
}

/// `sandbox` in a build without the `sandbox` feature: not in this build.
#[cfg(not(feature = "sandbox"))]
pub fn sandbox(_args: SandboxArgs) -> Result<()> {
    Err(Error::NotInThisBuild("sandbox"))
}
