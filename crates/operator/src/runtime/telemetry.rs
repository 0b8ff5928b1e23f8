//! Logging: `tracing` to stdout, as JSON (one object per line, for log collectors) or
//! as readable text, with the level filter taken from `--log-level`, else `RUST_LOG`,
//! else `info,kube=warn`.
//!
//! Without `--log-format` the output is text when stdout is a terminal and JSON
//! otherwise (in a container). The operator's own lines, at any level, carry names,
//! ARNs, reasons and error messages, never credentials or policy documents. Not
//! guarded: the AWS SDK's and hyper's own `trace` output, which a filter such as
//! `trace` turns on and which may include request bodies (policy documents among
//! them); the default filter and `info`/`debug` for `pod_identity_operator` do not.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// The default filter when neither `--log-level` nor `RUST_LOG` says one.
pub const DEFAULT_FILTER: &str = "info,kube=warn";

/// The filter directives in force: the flag, else `RUST_LOG`, else the default; an
/// empty value counts as unset.
pub fn filter_directives(flag: Option<&str>, rust_log: Option<&str>) -> String {
    [flag, rust_log]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_FILTER)
        .to_owned()
}

/// The format in force: the flag, else text on a terminal and JSON elsewhere.
pub fn format(flag: Option<LogFormat>, terminal: bool) -> LogFormat {
    flag.unwrap_or(if terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    })
}

/// Installs the process-wide subscriber; a bad filter is an error naming it.
pub fn init(level: Option<&str>, log_format: Option<LogFormat>) -> crate::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = filter_directives(level, rust_log.as_deref());
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| crate::Error::Config(format!("log level {directives:?}: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = match format(log_format, std::io::stdout().is_terminal()) {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.map_err(|e| crate::Error::Config(format!("logging: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_rust_log_and_both_over_the_default() {
        assert_eq!(filter_directives(Some("debug"), Some("warn")), "debug");
        assert_eq!(filter_directives(None, Some("warn")), "warn");
        assert_eq!(filter_directives(Some(" "), Some("warn")), "warn");
        assert_eq!(filter_directives(None, None), DEFAULT_FILTER);
        assert_eq!(filter_directives(None, Some("")), DEFAULT_FILTER);
    }

    #[test]
    fn text_on_a_terminal_json_elsewhere_unless_told() {
        assert_eq!(format(None, true), LogFormat::Text);
        assert_eq!(format(None, false), LogFormat::Json);
        assert_eq!(format(Some(LogFormat::Json), true), LogFormat::Json);
        assert_eq!(format(Some(LogFormat::Text), false), LogFormat::Text);
    }
}
