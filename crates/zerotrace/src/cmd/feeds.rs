//! `zerotrace feeds import|sync|status`: fill and inspect the local knowledge base.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use zt_feeds::{FeedItem, FeedRecord, RecordError};
use zt_store::knowledge::{ImportCounts, ImportSummary, KnowledgeImport, KnowledgeStatus};
use zt_store::AnyStore;
use zt_sync::{RetryPolicy, Source, SyncClient, SyncConfig, SyncEvent};

use super::open_store;
use crate::GlobalArgs;

/// Inputs at least this large (bytes) get a progress bar.
const PROGRESS_THRESHOLD: u64 = 8 << 20;
/// Record errors listed in full; the rest are counted.
const ERRORS_SHOWN: usize = 50;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import feed files: OSV JSON (files, directories, the OSV bulk all.zip), NVD CVE API 2.0
    /// JSON (pages or single records, .gz), CISA KEV JSON/CSV, EPSS CSV(.gz), Alpine/Wolfi/
    /// Chainguard secdb JSON. Idempotent: importing the same data again changes nothing.
    Import(ImportArgs),
    /// Download the online feeds (NVD API 2.0, OSV bulk per ecosystem, KEV, EPSS) and import them.
    Sync(SyncArgs),
    /// Show what the knowledge base holds and when each feed was last synced.
    Status(StatusArgs),
    /// Write the whole knowledge base to a bundle FILE (a zip of JSON lines with a manifest and
    /// SHA-256 checksums) for `zerotrace feeds import FILE` on an air-gapped site.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The bundle to write (replaced when it exists).
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Files or directories (searched recursively for *.json, *.csv, *.zip, *.gz).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// List every bad record (default: the first 50).
    #[arg(long)]
    pub all_errors: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceArg {
    Nvd,
    Osv,
    Kev,
    Epss,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Sources to sync (repeatable; default: all).
    #[arg(long = "source", value_enum)]
    pub sources: Vec<SourceArg>,
    /// OSV ecosystems to download (repeatable), e.g. PyPI, npm, crates.io, Go, Debian, Alpine.
    #[arg(long = "ecosystem", default_values_t = default_ecosystems())]
    pub ecosystems: Vec<String>,
    /// NVD API key: raises NVD's rate limit from 5 to 50 requests per 30 seconds.
    #[arg(long, env = "NVD_API_KEY", hide_env_values = true)]
    pub nvd_api_key: Option<String>,
    /// Keep downloaded bulk files this long before asking the server again (seconds).
    #[arg(long, default_value_t = 3600)]
    pub cache_ttl: u64,
    /// Retries per request (exponential backoff with jitter; Retry-After honoured).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    #[arg(long, default_value = zt_sync::DEFAULT_NVD_URL)]
    pub nvd_url: String,
    #[arg(long, default_value = zt_sync::DEFAULT_OSV_URL)]
    pub osv_url: String,
    #[arg(long, default_value = zt_sync::DEFAULT_KEV_URL)]
    pub kev_url: String,
    #[arg(long, default_value = zt_sync::DEFAULT_EPSS_URL)]
    pub epss_url: String,
    /// CVE records per NVD page (NVD's largest is 2000).
    #[arg(long, default_value_t = 2000, hide = true)]
    pub nvd_results_per_page: u32,
    /// NVD pages imported per transaction; an interrupted first sync resumes after the last
    /// imported page.
    #[arg(long, default_value_t = 10, hide = true)]
    pub nvd_pages_per_import: usize,
}

fn default_ecosystems() -> Vec<String> {
    [
        "PyPI",
        "npm",
        "crates.io",
        "Go",
        "Maven",
        "RubyGems",
        "NuGet",
        "Packagist",
        "Debian",
        "Ubuntu",
        "Alpine",
        // Every RPM distribution the agent reports.
        "Red Hat",
        "Rocky Linux",
        "AlmaLinux",
        "SUSE",
        "openSUSE",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = StatusFormat::Table)]
    pub format: StatusFormat,
}

pub fn run(c: Command, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let (store, _) = open_store(global, 4).await?;
        match c {
            Command::Import(args) => import(&store, args).await,
            Command::Sync(args) => sync(&store, args, global).await,
            Command::Status(args) => status(&store, args).await,
            Command::Export(args) => export(&store, args).await,
        }
    })
}

/// `feeds export FILE`: every advisory (withdrawn ones too), the KEV catalog and every EPSS
/// score, at the current revision.
async fn export(store: &AnyStore, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let storage = store.storage();
    let kb = storage.load_knowledge().await?;
    let epss = storage.epss_scores().await?;
    let knowledge = KnowledgeImport {
        advisories: kb.advisories,
        kev: kb.kev,
        epss,
        origin: String::new(),
    };
    let revision = kb.revision;
    let file = args.file.clone();
    let manifest = tokio::task::spawn_blocking(move || {
        zt_feeds::bundle::write_bundle(&file, &knowledge, revision)
    })
    .await??;
    let n = |f: &str| manifest.files.get(f).map(|e| e.records).unwrap_or(0);
    println!(
        "wrote {}: knowledge revision {revision}, {} advisories, {} KEV entries, {} EPSS scores",
        args.file.display(),
        n("advisories.jsonl"),
        n("kev.jsonl"),
        n("epss.jsonl"),
    );
    Ok(ExitCode::SUCCESS)
}

/// `feeds import BUNDLE`: checked whole, then imported in one transaction.
async fn import_bundle(store: &AnyStore, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let owned = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || zt_feeds::bundle::read_bundle(&owned)).await?;
    let (manifest, batch) = match read {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: bundle refused, nothing was imported: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let feeds = zt_store::knowledge::import_feeds(&batch);
    let origin = batch.origin.clone();
    let started = chrono::Utc::now();
    let result = store.import_knowledge(batch).await;
    let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
    if let Err(e) =
        zt_store::knowledge::record_import(&*store.storage(), &feeds, started, &origin, outcome)
            .await
    {
        eprintln!("warning: cannot record the import in the feed status: {e}");
    }
    let summary = result.context("import failed; nothing was stored")?;
    println!(
        "bundle of {} (knowledge revision {} there)",
        manifest.created_at.to_rfc3339(),
        manifest.revision
    );
    print_counts("advisories", &summary.advisories);
    print_counts("kev", &summary.kev);
    print_counts("epss", &summary.epss);
    println!("knowledge revision {}", summary.revision);
    Ok(ExitCode::SUCCESS)
}

async fn import(store: &AnyStore, args: ImportArgs) -> anyhow::Result<ExitCode> {
    if let Some(bundle) = args.paths.iter().find(|p| zt_feeds::bundle::is_bundle(p)) {
        if args.paths.len() > 1 {
            eprintln!(
                "error: {} is a knowledge bundle: import it alone",
                bundle.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        return import_bundle(store, bundle).await;
    }
    let started = Instant::now();
    let files = zt_feeds::list_inputs(&args.paths)?;
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let bar = if total_bytes >= PROGRESS_THRESHOLD || files.len() >= 1000 {
        let bar = ProgressBar::new(total_bytes);
        bar.set_style(
            ProgressStyle::with_template("{spinner} reading {bar:30} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut batch = KnowledgeImport {
        origin: import_origin(&args.paths),
        ..Default::default()
    };
    let mut errors: Vec<RecordError> = Vec::new();
    let mut skipped_files: Vec<(String, String)> = Vec::new();
    let mut read = 0u64;
    for file in &files {
        zt_feeds::read_file(file, &mut |item| match item {
            FeedItem::Record(r) => {
                read += 1;
                match r {
                    FeedRecord::Advisory(a) => batch.advisories.push(*a),
                    FeedRecord::Kev(k) => batch.kev.push(k),
                    FeedRecord::Epss(e) => batch.epss.push(e),
                }
            }
            FeedItem::Error(e) => errors.push(e),
            FeedItem::SkippedFile { file, reason } => skipped_files.push((file, reason)),
        });
        bar.inc(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0));
        bar.set_message(format!("{read} records"));
    }
    bar.set_message("writing");
    let feeds = zt_store::knowledge::import_feeds(&batch);
    let origin = batch.origin.clone();
    let import_started = chrono::Utc::now();
    let summary = if read > 0 {
        let result = store.import_knowledge(batch).await;
        // Every import shows in `feeds status` and `GET /api/v1/feeds`, a failed one with its
        // error (and its last success kept).
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        if let Err(e) = zt_store::knowledge::record_import(
            &*store.storage(),
            &feeds,
            import_started,
            &origin,
            outcome,
        )
        .await
        {
            eprintln!("warning: cannot record the import in the feed status: {e}");
        }
        result.context("import failed; nothing was stored")?
    } else {
        ImportSummary::default()
    };
    bar.finish_and_clear();

    println!(
        "read {read} records from {} file(s) in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    print_counts("advisories", &summary.advisories);
    print_counts("kev", &summary.kev);
    print_counts("epss", &summary.epss);
    for (file, reason) in &skipped_files {
        println!("skipped file {file}: {reason}");
    }
    if !errors.is_empty() {
        println!("skipped {} bad record(s):", errors.len());
        let shown = if args.all_errors {
            errors.len()
        } else {
            ERRORS_SHOWN
        };
        for e in errors.iter().take(shown) {
            println!("  {e}");
        }
        if errors.len() > shown {
            println!(
                "  … and {} more (--all-errors lists them)",
                errors.len() - shown
            );
        }
    }
    println!("knowledge revision {}", summary.revision);
    if read == 0 {
        eprintln!("error: nothing could be read from the given paths");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// "import a b c" for the import log, shortened when many paths were given.
fn import_origin(paths: &[PathBuf]) -> String {
    let all = paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    if all.chars().count() <= 160 {
        return format!("import {all}");
    }
    let head: String = all.chars().take(120).collect();
    format!("import {head}… ({} paths)", paths.len())
}

fn print_counts(kind: &str, c: &ImportCounts) {
    if c.received == 0 {
        return;
    }
    println!(
        "{kind}: {} new, {} updated, {} unchanged, {} skipped ({} older than stored, {} duplicate in input)",
        c.new,
        c.updated,
        c.unchanged,
        c.skipped(),
        c.skipped_older,
        c.skipped_duplicate
    );
    if c.removed > 0 {
        println!("{kind}: {} withdrawn upstream, removed", c.removed);
    }
}

/// The sources and client configuration `args` name (shared with `zerotrace server`'s
/// scheduled sync).
pub fn sync_setup(
    args: &SyncArgs,
    global: &GlobalArgs,
) -> anyhow::Result<(Vec<Source>, SyncConfig)> {
    let wanted = if args.sources.is_empty() {
        vec![
            SourceArg::Nvd,
            SourceArg::Osv,
            SourceArg::Kev,
            SourceArg::Epss,
        ]
    } else {
        args.sources.clone()
    };
    let mut sources = Vec::new();
    for s in wanted {
        match s {
            SourceArg::Nvd => sources.push(Source::Nvd),
            SourceArg::Osv => {
                sources.extend(args.ecosystems.iter().map(|e| Source::Osv(e.clone())))
            }
            SourceArg::Kev => sources.push(Source::Kev),
            SourceArg::Epss => sources.push(Source::Epss),
        }
    }
    let cache_dir = super::data_dir(global)?.join("cache").join("feeds");
    let config = SyncConfig {
        nvd_url: args.nvd_url.clone(),
        osv_url: args.osv_url.clone(),
        kev_url: args.kev_url.clone(),
        epss_url: args.epss_url.clone(),
        nvd_api_key: args.nvd_api_key.clone().filter(|k| !k.trim().is_empty()),
        nvd_results_per_page: args.nvd_results_per_page,
        nvd_pages_per_import: args.nvd_pages_per_import.max(1),
        cache_dir: Some(cache_dir),
        cache_ttl: Duration::from_secs(args.cache_ttl),
        retry: RetryPolicy {
            max_retries: args.retries,
            ..Default::default()
        },
        ..Default::default()
    };
    Ok((sources, config))
}

async fn sync(store: &AnyStore, args: SyncArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (sources, config) = sync_setup(&args, global)?;
    let client = SyncClient::new(config)?;
    let spinner = ProgressBar::new_spinner();
    spinner.enable_steady_tick(Duration::from_millis(200));
    let on_event = |e: SyncEvent| match e {
        SyncEvent::Started { feed } => spinner.set_message(format!("{feed}: downloading")),
        SyncEvent::Fetched { feed, bytes, .. } => {
            spinner.set_message(format!("{feed}: importing {bytes} bytes"))
        }
        SyncEvent::NvdPage { start_index, total } => {
            spinner.set_message(format!("nvd: {start_index}/{total} records"))
        }
    };
    let storage = store.storage();
    let target = zt_server::feeds::StoreTarget(&*storage);
    let reports = zt_sync::sync(&target, &client, &sources, &on_event).await;
    spinner.finish_and_clear();
    let mut failed = 0;
    for r in &reports {
        let t = r.summary.total();
        println!(
            "{}: {} — read {}, {} new, {} updated, {} unchanged, {} skipped, {} bad record(s)",
            r.feed,
            r.status,
            r.records_read,
            t.new,
            t.updated,
            t.unchanged,
            t.skipped(),
            r.errors.len()
        );
        for e in r.errors.iter().take(10) {
            println!("  {e}");
        }
        failed += r.failed as usize;
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn status(store: &AnyStore, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let s = store.knowledge_status().await?;
    match args.format {
        StatusFormat::Json => println!("{}", serde_json::to_string_pretty(&s)?),
        StatusFormat::Table => print_status(&s),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &KnowledgeStatus) {
    let changed = s
        .changed_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "never".into());
    println!("knowledge revision {} (last change: {changed})", s.revision);
    let total: u64 = s.advisories_by_source.iter().map(|(_, n)| n).sum();
    println!("advisories: {total} ({} withdrawn)", s.withdrawn);
    for (source, n) in &s.advisories_by_source {
        println!("  {source}: {n}");
    }
    println!("kev: {} entries", s.kev);
    match s.epss_date {
        Some(d) => println!("epss: {} scores (score date {d})", s.epss),
        None => println!("epss: {} scores", s.epss),
    }
    if !s.feeds.is_empty() {
        let mut table = comfy_table::Table::new();
        table.set_header([
            "feed",
            "last success",
            "last attempt",
            "records",
            "status",
            "error",
        ]);
        for f in &s.feeds {
            let t = |x: Option<chrono::DateTime<chrono::Utc>>| {
                x.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(|| "-".into())
            };
            table.add_row([
                f.feed.clone(),
                t(f.last_success_at),
                t(f.last_attempt_at),
                f.records.to_string(),
                match f.error() {
                    Some(_) => "error".to_string(),
                    None => f.last_status.clone().unwrap_or_default(),
                },
                f.error().unwrap_or("").to_string(),
            ]);
        }
        println!("{table}");
    }
    if !s.recent_imports.is_empty() {
        println!("recent imports:");
        for i in s.recent_imports.iter().take(5) {
            let t = i.summary.total();
            println!(
                "  {} {} — {} new, {} updated, {} unchanged",
                i.finished_at.format("%Y-%m-%d %H:%M:%S"),
                i.origin,
                t.new,
                t.updated,
                t.unchanged
            );
        }
    }
}
