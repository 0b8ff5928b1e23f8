//! The arguments of `presets`.

use clap::Subcommand;

/// Options of `presets`.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct PresetsArgs {
    #[command(subcommand)]
    pub command: Option<PresetsCommand>,
    /// Output format of the list.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: ListFormat,
}

/// How `presets` lists the presets.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

/// The subcommands of `presets`.
#[derive(Subcommand, Debug)]
pub enum PresetsCommand {
    /// Print a preset rendered for a cluster and parameters, as JSON: the managed
    /// policy ARNs it attaches and its inline policy document.
    Show {
        /// The preset's name.
        name: String,
        /// A parameter, KEY=VALUE (lists comma-separated); repeat for several.
        #[arg(long = "param", value_name = "KEY=VALUE",
              value_parser = parse_parameter)]
        params: Vec<(String, String)>,
        /// The cluster to render for (its partition, region, account and name), as
        /// `arn:aws:eks:REGION:ACCOUNT:cluster/NAME`; without it region, account and
        /// cluster name are `*`.
        #[arg(long)]
        cluster_arn: Option<String>,
    },
}

/// Splits a `KEY=VALUE` command-line parameter.
pub fn parse_parameter(text: &str) -> std::result::Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}
