//! `zerotrace-agent`: lists what is installed on this host and reports it to a ZeroTrace server.
//!
//! `zerotrace-agent --server URL --enroll-secret S` enrolls once (identity kept in the state
//! directory, owner-only) and then reports at start and every interval, spooling reports on disk
//! while the server is unreachable. `zerotrace-agent inventory` prints the inventory instead.

mod backoff;
mod client;
mod report;
mod run;
mod spool;
mod state;
#[cfg(test)]
mod testserver;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use zt_collect::CollectOptions;

const DEFAULT_STATE_DIR: &str = if cfg!(windows) {
    r"C:\ProgramData\ZeroTrace\agent"
} else if cfg!(target_os = "macos") {
    "/Library/Application Support/ZeroTrace/agent"
} else {
    "/var/lib/zerotrace-agent"
};

#[derive(Debug, Parser)]
#[command(
    name = "zerotrace-agent",
    version,
    about = "Lists what is installed on this host and reports it to a ZeroTrace server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The ZeroTrace server, e.g. https://zerotrace.example.com
    #[arg(long, env = "ZEROTRACE_SERVER")]
    server: Option<String>,
    /// The company's enroll secret (needed until the agent is enrolled)
    #[arg(long, env = "ZEROTRACE_ENROLL_SECRET", hide_env_values = true)]
    enroll_secret: Option<String>,
    /// Where the identity, state and spool live
    #[arg(long, env = "ZEROTRACE_AGENT_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Seconds between collections (default: the server's suggestion)
    #[arg(long, value_name = "SECONDS")]
    interval: Option<u64>,
    /// Seconds after which a full report is sent even if nothing changed
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    full_report_interval: u64,
    /// Collect and send once, then exit (exit code 1 if reports stay spooled)
    #[arg(long)]
    once: bool,
    /// Collect from the file system mounted here instead of this host
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Most reports kept on disk while the server is unreachable
    #[arg(long, default_value_t = 100)]
    spool_max_reports: usize,
    /// Most megabytes kept on disk while the server is unreachable
    #[arg(long, default_value_t = 64)]
    spool_max_mb: u64,
    /// Trust the CA certificates in this PEM file instead of the built-in roots
    #[arg(long, env = "ZEROTRACE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// A tag of this host, `KEY=VALUE` or `NAME` (repeatable; ASCII letters, digits and - _ . : / =).
    /// Sent with every report: they replace the tags this agent sent before, while tags set
    /// through the server's API stay. In agent.env: ZEROTRACE_AGENT_TAGS=env=prod,dmz
    #[arg(
        long = "tag",
        value_name = "KEY=VALUE|NAME",
        env = "ZEROTRACE_AGENT_TAGS",
        value_delimiter = ','
    )]
    tags: Vec<String>,
    /// Longest wait between delivery attempts, in seconds
    #[arg(long, default_value_t = 300, hide = true)]
    max_backoff: u64,
    /// First wait after a failed delivery, in milliseconds
    #[arg(long, default_value_t = 5000, hide = true)]
    min_backoff_ms: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print this host's inventory without sending it
    Inventory {
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Collect from the file system mounted here instead of this host
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Cyclonedx,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Some(Command::Inventory { format, root }) => inventory(format, root),
        None => report(cli.report),
    };
    match result {
        Ok(code) => code,
        // `zerotrace-agent inventory | head`: the reader left; not an error of ours.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zerotrace-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let kind = e
        .downcast_ref::<std::io::Error>()
        .map(std::io::Error::kind)
        .or_else(|| {
            e.downcast_ref::<serde_json::Error>()
                .and_then(|j| j.io_error_kind())
        });
    kind == Some(std::io::ErrorKind::BrokenPipe)
}

/// Log lines to stderr; `ZEROTRACE_AGENT_LOG=debug|info|warn|error` sets the level.
fn init_logging() {
    let level = match std::env::var("ZEROTRACE_AGENT_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .with_ansi(false)
        .init();
}

fn collect_options(root: PathBuf) -> CollectOptions {
    CollectOptions::under_root(root)
}

fn inventory(format: Format, root: PathBuf) -> anyhow::Result<ExitCode> {
    let collection = zt_collect::collect(&collect_options(root));
    for w in &collection.warnings {
        tracing::warn!("{w}");
    }
    for e in &collection.errors {
        tracing::error!("{e}");
    }
    let report = report::build_report(&collection, &[]);
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => serde_json::to_writer_pretty(&mut out, &report)?,
        Format::Cyclonedx => serde_json::to_writer_pretty(&mut out, &report::cyclonedx(&report))?,
    }
    writeln!(out)?;
    Ok(if collection.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The tags as given (spaces around list items ignored), checked by the server's rule,
/// sorted, without repeats; a bad one is an error naming it.
fn check_tags(given: &[String]) -> anyhow::Result<Vec<String>> {
    let mut tags: Vec<String> = given
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    for t in &tags {
        if let Some(problem) = zt_inventory::tag_problem(t) {
            anyhow::bail!("--tag / ZEROTRACE_AGENT_TAGS: {problem}");
        }
    }
    tags.sort();
    tags.dedup();
    if tags.len() > zt_inventory::MAX_TAGS {
        anyhow::bail!(
            "--tag / ZEROTRACE_AGENT_TAGS: {} tags; at most {}",
            tags.len(),
            zt_inventory::MAX_TAGS
        );
    }
    Ok(tags)
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let Some(server) = args.server else {
        anyhow::bail!("give the server with --server URL (or ZEROTRACE_SERVER), or use `zerotrace-agent inventory`");
    };
    let tags = check_tags(&args.tags)?;
    let cfg = run::RunConfig {
        tags,
        server,
        enroll_secret: args.enroll_secret.filter(|s| !s.is_empty()),
        state_dir: args.state_dir,
        interval: args.interval.map(|s| Duration::from_secs(s.max(1))),
        full_report_interval: Duration::from_secs(args.full_report_interval),
        once: args.once,
        collect: collect_options(args.root),
        spool_limits: spool::SpoolLimits {
            max_reports: args.spool_max_reports.max(1),
            max_bytes: args.spool_max_mb.saturating_mul(1 << 20).max(1),
        },
        ca_cert: args.ca_cert,
        backoff_base: Duration::from_millis(args.min_backoff_ms.max(1)),
        backoff_max: Duration::from_secs(args.max_backoff.max(1)),
    };
    // Runs until killed; every write to the state directory is atomic, so SIGTERM at any
    // moment leaves whole files behind.
    let stop = AtomicBool::new(false);
    let summary = run::run(&cfg, &stop)?;
    if cfg.once && summary.remaining > 0 {
        eprintln!(
            "zerotrace-agent: {} report(s) remain in the spool; they are sent on the next run",
            summary.remaining
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
