//! The arguments of `migrate`.

use std::path::PathBuf;

use super::connection::{Connection, Output};

/// Options of `migrate`.
#[derive(clap::Args, Clone, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Only ServiceAccounts of this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only ServiceAccounts matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Write one PodIdentityBinding YAML per ServiceAccount into this folder.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Make the planned changes (without it nothing in AWS or the cluster changes).
    #[arg(long)]
    pub apply: bool,
    /// Add a scoped Pod Identity statement to each IRSA role's trust policy.
    #[arg(long)]
    pub update_trust: bool,
    /// Remove the IRSA annotation of ServiceAccounts whose binding is Ready.
    #[arg(long)]
    pub remove_irsa: bool,
    /// With --remove-irsa: also remove the role's OIDC statement for that ServiceAccount.
    #[arg(long, requires = "remove_irsa")]
    pub remove_oidc_trust: bool,
    /// Output: a table for people, or JSON for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
}
