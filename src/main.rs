use clap::{Parser, Subcommand};

/// Kubernetes operator that makes EKS Pod Identity declarative.
#[derive(Parser, Debug)]
#[command(name = "pod-identity-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve a local Kubernetes API server (kubesim) on 127.0.0.1 until interrupted.
    Kubesim {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 6443)]
        port: u16,
        /// Write a kubeconfig pointing at the server to this path.
        #[arg(long)]
        kubeconfig_out: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Kubesim {
            port,
            kubeconfig_out,
        }) => run_kubesim(port, kubeconfig_out),
        None => Ok(()),
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
