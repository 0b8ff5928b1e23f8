//! The arguments of `audit`.

use super::connection::{Connection, Output};
use crate::audit::Severity;

/// Options of `audit`.
#[derive(clap::Args, Clone, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Output: a table for people, or JSON for scripts.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: Output,
    /// Exit with status 2 when a finding is at or above this severity.
    #[arg(long, value_enum, default_value = "error")]
    pub fail_on: Severity,
}
