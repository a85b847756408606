//! One module per subcommand. Each exposes its clap arguments and a `run` returning the exit code.

pub mod admin;
pub mod feeds;
pub mod loadgen;
pub mod scan;
pub mod server;
pub mod version;

use crate::LogFormat;

/// Logs go to stderr so that commands printing results (scan, version cmp) keep stdout clean.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ZEROTRACE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
