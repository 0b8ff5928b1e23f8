//! The `pod-identity-operator` binary: parses the command line ([`cli`]) and hands each
//! subcommand to the library module it belongs to. Errors become `anyhow` here only.

use pod_identity_operator::cli::{Cli, Command};
use pod_identity_operator::{audit, cli, crd, migrate, operator_policy, presets, runtime};

fn main() -> anyhow::Result<()> {
    let cli = Cli::try_parse_with_default(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Run(args) => runtime::operator::run(&args)?,
        Command::Crd => print!("{}", crd::crd_yaml()?),
        Command::Kubesim(args) => runtime::local::kubesim(&args)?,
        Command::Sandbox(args) => runtime::local::sandbox(args)?,
        Command::Audit(args) => {
            let run = audit::run(&args.connection, args.output, args.fail_on);
            if block_on(run)?? {
                std::process::exit(2);
            }
        }
        Command::Migrate(args) => block_on(migrate::run(&args))??,
        Command::IamPolicy(args) => print!("{}", iam_policy(&args)?),
        Command::Presets(args) => print!("{}", presets::command(&args)?),
    }
    Ok(())
}

/// What `iam-policy` prints.
fn iam_policy(args: &cli::iam_policy::IamPolicyArgs) -> pod_identity_operator::Result<String> {
    let guardrails = args.config.as_deref();
    operator_policy::command(&args.installation(), args.document, guardrails)
}

/// Runs `work` to its end on a new Tokio runtime.
fn block_on<F: std::future::Future>(work: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Runtime::new()?.block_on(work))
}
