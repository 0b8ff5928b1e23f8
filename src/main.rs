use clap::{Parser, Subcommand};

/// Kubernetes operator that makes EKS Pod Identity declarative.
#[derive(Parser, Debug)]
#[command(name = "pod-identity-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn main() -> anyhow::Result<()> {
    let _cli = Cli::parse();
    Ok(())
}
