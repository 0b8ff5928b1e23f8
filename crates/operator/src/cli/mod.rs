//! The command line: its subcommands and their arguments, as clap parses them. Each
//! subcommand's body lives in the module it belongs to (`run` in
//! [`crate::runtime::operator`], `audit` in [`crate::audit`], `migrate` in
//! [`crate::migrate`], `presets` in [`crate::presets`], `iam-policy` in
//! [`crate::operator_policy`], `kubesim` and `sandbox` in [`crate::runtime::local`]);
//! the binary only parses and dispatches. The files here name no body: a body may take
//! its arguments' type without an import cycle.

pub mod audit;
pub mod connection;
pub mod iam_policy;
pub mod local;
pub mod migrate;
pub mod presets;
pub mod run;

use clap::{Parser, Subcommand};

/// Kubernetes operator that makes EKS Pod Identity declarative.
#[derive(Parser, Debug)]
#[command(
    name = "pod-identity-operator",
    version,
    about,
    after_help = "Without a subcommand, `run` is meant: `pod-identity-operator --cluster-name X` \
                  is `pod-identity-operator run --cluster-name X`."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses a command line, `run` being the default subcommand. The run flags live on
    /// `run` only and `run` is inserted when the first argument names no subcommand: a
    /// copy of them flattened into the top level would be filled from their `PIO_*`
    /// variables and then demand `--cluster-name` even under another subcommand.
    pub fn try_parse_with_default<I, T>(args: I) -> Result<Self, clap::Error>
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
pub enum Command {
    /// Run the operator.
    Run(Box<run::RunArgs>),
    /// Print the PodIdentityBinding CustomResourceDefinition as YAML.
    Crd,
    /// Serve a local Kubernetes API server (kubesim) on 127.0.0.1 until interrupted.
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Kubesim(local::KubesimArgs),
    /// Print the operator's own IAM policy for one installation (see config/iam).
    IamPolicy(iam_policy::IamPolicyArgs),
    /// Run everything locally: kubesim, the AWS simulator and the operator (no cluster,
    /// no AWS account), until Ctrl-C.
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Sandbox(local::SandboxArgs),
    /// Report the cluster's identity wiring (IRSA, associations, roles, bindings, the Pod
    /// Identity Agent) without changing anything; exit status 2 at --fail-on.
    Audit(audit::AuditArgs),
    /// Plan (and with --apply make) the move from IRSA to PodIdentityBindings: writes
    /// binding YAML to --out, changes AWS or the cluster only with --apply.
    Migrate(migrate::MigrateArgs),
    /// List the policy presets (`spec.role.presets`): what each grants, its parameters
    /// and the upstream release it was written from; `presets show NAME` renders one.
    Presets(presets::PresetsArgs),
}
