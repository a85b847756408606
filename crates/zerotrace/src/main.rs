//! `zerotrace`: the one binary for the server, the knowledge base, the scanner and the tools.
//! Each subcommand lives in its own module under `cmd/`; this file only parses and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cmd;

#[derive(Debug, Parser)]
#[command(
    name = "zerotrace",
    version,
    about = "Find the known vulnerabilities on every machine"
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command that touches the store understands.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Directory of the embedded database (SQLite) and local caches.
    #[arg(long, global = true, env = "ZEROTRACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL instead of the embedded database (postgres://user@host/db).
    #[arg(long, global = true, env = "ZEROTRACE_DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL only: hash partitions per tenant table when the schema is first created.
    #[arg(long, global = true, default_value_t = 16, env = "ZEROTRACE_PARTITIONS",
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "ZEROTRACE_LOG_FORMAT")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once per process: the size of `server`'s options (with the feed sync's) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the API, the workers and the dashboard.
    Server(cmd::server::Args),
    /// Manage companies and tokens.
    #[command(subcommand)]
    Admin(cmd::admin::Command),
    /// Import and synchronise vulnerability knowledge (OSV, NVD, KEV, EPSS).
    #[command(subcommand)]
    Feeds(cmd::feeds::Command),
    /// Match an inventory or SBOM against the local knowledge base, offline.
    Scan(cmd::scan::Args),
    /// Compare versions the way an ecosystem orders them.
    #[command(subcommand)]
    Version(cmd::version::Command),
    /// Simulate many agents against a server and measure it.
    Loadgen(cmd::loadgen::Args),
}

fn main() -> ExitCode {
    // Several crates in the graph pull different rustls crypto providers; pick one before any TLS.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = Cli::parse();
    cmd::init_logging(cli.global.log_format);
    let result = match cli.command {
        Command::Server(args) => cmd::server::run(args, &cli.global),
        Command::Admin(c) => cmd::admin::run(c, &cli.global),
        Command::Feeds(c) => cmd::feeds::run(c, &cli.global),
        Command::Scan(args) => cmd::scan::run(args, &cli.global),
        Command::Version(c) => cmd::version::run(c),
        Command::Loadgen(args) => cmd::loadgen::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
