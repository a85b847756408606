//! `zerotrace server`: the API, the queue workers and the dashboard in one process (or the
//! API or the workers alone with `--role`).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use zt_server::{ServerConfig, ServerRole};
use zt_store::Storage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// HTTP API and dashboard only.
    Api,
    /// Queue workers and knowledge watcher only (HTTP serves health and metrics).
    Worker,
    /// Everything.
    All,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", env = "ZEROTRACE_LISTEN")]
    pub listen: SocketAddr,
    /// What this process runs.
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Queue workers in this process.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Apps' worth of reports a worker claims at once (at least one report).
    #[arg(long, default_value_t = 100)]
    pub batch_apps: u32,
    /// Pending reports in the queue above which inventories get 503 + Retry-After.
    #[arg(long, default_value_t = 50_000)]
    pub queue_bound: u64,
    /// Requests per minute per company (0: unlimited).
    #[arg(long, default_value_t = 10_000)]
    pub rate_company: u32,
    /// Requests per minute per agent (0: unlimited).
    #[arg(long, default_value_t = 100)]
    pub rate_agent: u32,
    /// Largest request body in bytes, after decompression.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub body_limit: usize,
    /// Seconds a claimed batch stays leased before another worker may take it over.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
    /// Processing attempts before a report is dead-lettered.
    #[arg(long, default_value_t = 5)]
    pub max_attempts: u32,
    /// Seconds between checks of the knowledge revision.
    #[arg(long, default_value_t = 5.0)]
    pub knowledge_poll_secs: f64,
    /// Seconds shutdown waits for in-flight batches before releasing them.
    #[arg(long, default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Report interval told to agents at enrollment, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub report_interval_secs: u64,
    /// Redis shared by API replicas: rate-limit buckets and the credential cache
    /// (redis://host:6379). Without it each process limits on its own.
    #[arg(long, env = "ZEROTRACE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (several deployments may share one Redis).
    #[arg(long, default_value = "zerotrace:", env = "ZEROTRACE_REDIS_PREFIX")]
    pub redis_prefix: String,
    /// Seconds an idle live-event stream (SSE) waits before a comment line keeps it open.
    #[arg(long, default_value_t = 15.0)]
    pub sse_heartbeat_secs: f64,
    /// Hours the event log keeps events: a client away longer reloads (`resync`).
    #[arg(long, default_value_t = 24.0)]
    pub event_retention_hours: f64,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first);
    /// `systemctl reload` / SIGHUP reads it and the key again.
    #[arg(
        long,
        env = "ZEROTRACE_TLS_CERT",
        requires = "tls_key",
        value_name = "PEM"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "ZEROTRACE_TLS_KEY",
        requires = "tls_cert",
        value_name = "PEM"
    )]
    pub tls_key: Option<PathBuf>,
    /// Proxies in front of this server (nginx) whose X-Forwarded-For names the client:
    /// addresses or CIDR ranges, comma-separated. Without it the header is ignored.
    #[arg(long, env = "ZEROTRACE_TRUSTED_PROXIES", value_name = "CIDR,...",
          value_parser = parse_trusted_proxies)]
    pub trusted_proxies: Option<zt_server::TrustedProxies>,
    /// Hours a dashboard session lasts after sign-in.
    #[arg(long, default_value_t = 12.0)]
    pub session_hours: f64,
    /// Marks the dashboard's session cookie Secure: set it when browsers reach the server
    /// over HTTPS (a TLS proxy in front of it, or the server's own TLS).
    #[arg(long, env = "ZEROTRACE_SECURE_COOKIES")]
    pub secure_cookies: bool,
    /// Milliseconds after which a waiting report is claimed before newer ones (oldest
    /// first); younger ones are claimed newest first.
    #[arg(long, default_value_t = 1000)]
    pub claim_overdue_ms: u64,
    /// Hours without a report after which an agent shows as stale (default: three report
    /// intervals).
    #[arg(long)]
    pub stale_after_hours: Option<f64>,
    /// Fault injection for tests: workers hold each claimed batch this long first. Only in
    /// debug builds (the tests'): a release binary has no such flag.
    #[cfg(debug_assertions)]
    #[arg(long, hide = true)]
    pub hold_after_claim_ms: Option<u64>,
    /// Requests per minute of a company's users (tokens and dashboard sessions), apart from
    /// its agents' (--rate-company) so that neither can starve the other (0: unlimited).
    #[arg(long, default_value_t = 6_000)]
    pub rate_company_users: u32,
    /// Failed authentications (answers 401) per minute per client address before the
    /// address is refused with 429 (0: unlimited).
    #[arg(long, default_value_t = 60)]
    pub rate_auth_failures: u32,
    /// Enroll attempts per minute per client address (0: unlimited).
    #[arg(long, default_value_t = 600)]
    pub rate_enroll: u32,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 30.0)]
    pub header_timeout_secs: f64,
    /// Seconds a client may take to send a request's body, all of it.
    #[arg(long, default_value_t = 120.0)]
    pub body_timeout_secs: f64,
    /// How often the server syncs its vulnerability feeds (e.g. 30m, 1h, 6h; KEV and EPSS at
    /// most daily). One process at a time syncs for the whole deployment.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration,
          env = "ZEROTRACE_FEEDS_SYNC_INTERVAL", value_name = "DURATION")]
    pub feeds_sync_interval: Duration,
    /// No scheduled feed sync: for air-gapped sites, which import a bundle made elsewhere by
    /// `zerotrace feeds export` with `zerotrace feeds import`.
    #[arg(long, env = "ZEROTRACE_OFFLINE")]
    pub offline: bool,
    /// The scheduled sync's sources, as `zerotrace feeds sync` takes them.
    #[command(flatten)]
    pub feeds: super::feeds::SyncArgs,
    /// Allows notification destinations on loopback, link-local and private networks
    /// (refused by default: a rule must not make the server call into its own network).
    #[arg(long, env = "ZEROTRACE_ALLOW_PRIVATE_WEBHOOKS")]
    pub allow_private_webhooks: bool,
    /// Seconds one notification attempt may take (connect, send, answer).
    #[arg(long, default_value_t = 10.0)]
    pub notify_timeout_secs: f64,
    /// Attempts before a notification is dead.
    #[arg(long, default_value_t = 8)]
    pub notify_max_attempts: u32,
    /// Seconds before a notification's first retry; doubled per attempt, with jitter.
    #[arg(long, default_value_t = 5.0)]
    pub notify_retry_base_secs: f64,
    /// Notifications of one rule (one destination) sent at once by this process: a
    /// destination that is down holds this many sends, never the others'.
    #[arg(long, default_value_t = 4)]
    pub notify_per_destination: usize,
    /// Ingest goes first: while this process's workers are processing reports, notification
    /// sends wait at most this many seconds (then everything due is sent before they wait
    /// again); 0 sends at once.
    #[arg(long, default_value_t = 5.0)]
    pub notify_defer_during_ingest_secs: f64,
    /// Seconds between the scans for SLA crossings (`sla.due_soon`, `sla.overdue`), stale
    /// agents and stale knowledge sources.
    #[arg(long, default_value_t = 60.0)]
    pub notify_scan_secs: f64,
    /// Hours without a successful sync after which a knowledge source is `feed.stale` (the
    /// FeedStale alert's 48 hours).
    #[arg(long, default_value_t = 48.0)]
    pub feeds_stale_after_hours: f64,
    /// The SMTP server of e-mail notifications: smtp://host:587 (STARTTLS when offered;
    /// ?tls=required insists), smtps://host:465; user:password@ to authenticate.
    #[arg(long, env = "ZEROTRACE_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// The From of e-mail notifications.
    #[arg(
        long,
        env = "ZEROTRACE_SMTP_FROM",
        default_value = "ZeroTrace <zerotrace@localhost>"
    )]
    pub smtp_from: String,
    /// The dashboard's address as people reach it (https://zerotrace.example.com): links in
    /// notifications.
    #[arg(long, env = "ZEROTRACE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The key sealing notification secrets (32 bytes, base64); every process of one database
    /// needs the same. Default: notify.key in the data directory, created on first start.
    #[arg(long, env = "ZEROTRACE_NOTIFY_KEY", hide_env_values = true)]
    pub notify_key: Option<String>,
    /// Sign people in to the dashboard through this OpenID Connect provider (its issuer URL;
    /// the discovery document is read from <issuer>/.well-known/openid-configuration). The
    /// sign-in page then offers "Sign in with SSO".
    #[arg(long, env = "ZEROTRACE_OIDC_ISSUER", value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// The client id this server has at the provider.
    #[arg(long, env = "ZEROTRACE_OIDC_CLIENT_ID", requires = "oidc_issuer")]
    pub oidc_client_id: Option<String>,
    /// The client secret (a confidential client; without it a public client, PKCE alone).
    #[arg(long, env = "ZEROTRACE_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,
    /// The callback registered at the provider (default: --public-url followed by
    /// /signin/sso/callback).
    #[arg(long, env = "ZEROTRACE_OIDC_REDIRECT_URL", value_name = "URL")]
    pub oidc_redirect_url: Option<String>,
    /// Scopes asked for (openid is always among them).
    #[arg(long, default_value = "openid email profile")]
    pub oidc_scopes: String,
    /// The ID token claim naming the person's groups (a list of strings, or one string).
    #[arg(long, default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Maps an IdP group to a company and role: GROUP=COMPANY_ID:admin|viewer (repeatable;
    /// checked in order, the first group of the person's that is mapped wins). A person with
    /// no mapped group is refused.
    #[arg(long, value_name = "GROUP=COMPANY_ID:ROLE")]
    pub oidc_map: Vec<String>,
    /// A file of such mappings, one a line (# starts a comment), after the --oidc-map ones.
    #[arg(long, env = "ZEROTRACE_OIDC_MAP_FILE", value_name = "FILE")]
    pub oidc_map_file: Option<PathBuf>,
}

/// The OIDC sign-in of the options, checked (None without --oidc-issuer).
fn oidc_config(args: &Args) -> anyhow::Result<Option<zt_server::oidc::OidcConfig>> {
    let Some(issuer) = args.oidc_issuer.as_deref().map(str::trim) else {
        anyhow::ensure!(
            args.oidc_map.is_empty() && args.oidc_map_file.is_none(),
            "--oidc-map and --oidc-map-file need --oidc-issuer"
        );
        return Ok(None);
    };
    let parsed = url::Url::parse(issuer).with_context(|| format!("--oidc-issuer {issuer:?}"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "https" | "http"),
        "--oidc-issuer {issuer:?}: not an http(s) URL"
    );
    let client_id = args
        .oidc_client_id
        .clone()
        .filter(|c| !c.trim().is_empty())
        .context("--oidc-issuer needs --oidc-client-id")?;
    let redirect_url = match (&args.oidc_redirect_url, &args.public_url) {
        (Some(u), _) => u.trim().to_string(),
        (None, Some(public)) => format!("{}/signin/sso/callback", public.trim_end_matches('/')),
        (None, None) => anyhow::bail!(
            "--oidc-issuer needs --public-url (or --oidc-redirect-url): the provider sends \
             browsers back to it"
        ),
    };
    url::Url::parse(&redirect_url)
        .with_context(|| format!("--oidc-redirect-url {redirect_url:?}"))?;
    let mut mappings = Vec::new();
    for m in &args.oidc_map {
        mappings.push(
            zt_server::oidc::GroupMapping::parse(m)
                .map_err(|e| anyhow::anyhow!("--oidc-map {e}"))?,
        );
    }
    if let Some(path) = &args.oidc_map_file {
        mappings.extend(
            zt_server::oidc::GroupMapping::parse_file(path)
                .map_err(|e| anyhow::anyhow!("--oidc-map-file {e}"))?,
        );
    }
    anyhow::ensure!(
        !mappings.is_empty(),
        "--oidc-issuer without --oidc-map or --oidc-map-file: nobody could sign in"
    );
    Ok(Some(zt_server::oidc::OidcConfig {
        issuer: issuer.trim_end_matches('/').to_string(),
        client_id,
        client_secret: args.oidc_client_secret.clone().filter(|s| !s.is_empty()),
        redirect_url,
        scopes: args.oidc_scopes.clone(),
        groups_claim: args.oidc_groups_claim.trim().to_string(),
        mappings,
    }))
}

/// Writes `secret` to `path`, readable and writable by this user only (created so: the
/// secret is never in a file others may read, not even for a moment).
fn write_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // An older file keeps its mode on open: make sure.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    writeln!(file, "{secret}")?;
    file.sync_all()
}

fn parse_trusted_proxies(list: &str) -> Result<zt_server::TrustedProxies, String> {
    zt_server::TrustedProxies::parse(list)
}

pub fn run(args: Args, global: &crate::GlobalArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args, global))
}

async fn serve(args: Args, global: &crate::GlobalArgs) -> anyhow::Result<ExitCode> {
    if let Some(url) = &args.redis_url {
        zt_server::shared::check_redis_url(url).context("--redis-url")?;
    }
    // A bad certificate stops the start, before the store is opened.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(zt_server::TlsCertificate::load(cert, key)?),
        _ => None,
    };
    // Every worker may hold a connection for its batch; the API needs a few more.
    let connections = match args.role {
        Role::Api => 16,
        Role::Worker | Role::All => u32::try_from(args.workers).unwrap_or(64).min(64) + 8,
    };
    let (store, database) = super::open_store(global, connections).await?;
    let store: Arc<dyn Storage> = store.storage();

    let admin_env = std::env::var("ZEROTRACE_ADMIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let new_operator_token = match admin_env {
        Some(_) => None,
        None => zt_server::accounts::init_operator_token(&*store).await?,
    };
    // Shown on a terminal only: a service's stdout ends up in journals and log collectors
    // that keep it forever. Otherwise it goes to a file only this user can read.
    let token_file = match &new_operator_token {
        Some(token) if !std::io::stdout().is_terminal() => {
            let path = super::data_dir(global)?.join("operator-token");
            write_secret_file(&path, token)
                .with_context(|| format!("writing the operator token to {}", path.display()))?;
            tracing::info!(path = %path.display(), "operator token written (mode 0600)");
            Some(path)
        }
        _ => None,
    };

    let notify_key = match &args.notify_key {
        Some(k) => zt_notify::SecretKey::from_base64(k).context("--notify-key")?,
        None => {
            let dir = super::data_dir(global)?;
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("creating the data directory {}", dir.display()))?;
            zt_notify::SecretKey::load_or_create(&dir.join("notify.key"))?
        }
    };
    if let Some(url) = &args.public_url {
        zt_notify::guard::parse_url(url).context("--public-url")?;
    }
    let oidc = oidc_config(&args)?;
    let role = match args.role {
        Role::Api => ServerRole::Api,
        Role::Worker => ServerRole::Worker,
        Role::All => ServerRole::All,
    };
    let feeds_sync = if args.offline {
        None
    } else {
        let (sources, client) = super::feeds::sync_setup(&args.feeds, global)?;
        Some(zt_server::feeds::ScheduledSync {
            interval: args.feeds_sync_interval.max(Duration::from_secs(1)),
            sources,
            client,
        })
    };
    let config = ServerConfig {
        role,
        workers: args.workers.max(1),
        batch_apps: args.batch_apps.max(1),
        queue_bound: args.queue_bound,
        rate_company_per_min: args.rate_company,
        rate_agent_per_min: args.rate_agent,
        body_limit: args.body_limit,
        lease: Duration::from_secs(args.lease_secs.max(1)),
        max_attempts: args.max_attempts.max(1),
        knowledge_poll: Duration::from_secs_f64(args.knowledge_poll_secs.clamp(0.05, 3600.0)),
        shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
        report_interval_s: args.report_interval_secs,
        admin_token_env: admin_env.as_deref().map(zt_server::auth::hash_token),
        #[cfg(debug_assertions)]
        hold_after_claim: args.hold_after_claim_ms.map(Duration::from_millis),
        redis_url: args.redis_url.clone(),
        redis_prefix: args.redis_prefix.clone(),
        sse_heartbeat: Duration::from_secs_f64(args.sse_heartbeat_secs.clamp(0.05, 3600.0)),
        event_retention: Duration::from_secs_f64(
            (args.event_retention_hours * 3600.0).clamp(1.0, 400.0 * 86400.0),
        ),
        trusted_proxies: args.trusted_proxies.clone().unwrap_or_default(),
        tls: tls.is_some(),
        session_ttl: Duration::from_secs_f64(
            (args.session_hours * 3600.0).clamp(60.0, 400.0 * 86400.0),
        ),
        secure_cookies: args.secure_cookies,
        claim_overdue_after: Duration::from_millis(args.claim_overdue_ms),
        stale_after: args
            .stale_after_hours
            .map(|h| Duration::from_secs_f64((h * 3600.0).clamp(1.0, 3650.0 * 86400.0))),
        rate_company_users_per_min: args.rate_company_users,
        rate_auth_failures_per_min: args.rate_auth_failures,
        rate_enroll_per_min: args.rate_enroll,
        header_timeout: Duration::from_secs_f64(args.header_timeout_secs.clamp(0.1, 3600.0)),
        body_timeout: Duration::from_secs_f64(args.body_timeout_secs.clamp(0.1, 86400.0)),
        feeds_sync,
        notify: zt_server::notify::NotifyConfig {
            allow_private: args.allow_private_webhooks,
            timeout: Duration::from_secs_f64(args.notify_timeout_secs.clamp(0.1, 600.0)),
            max_attempts: args.notify_max_attempts.max(1),
            retry_base: Duration::from_secs_f64(args.notify_retry_base_secs.clamp(0.01, 3600.0)),
            per_destination: args.notify_per_destination.max(1),
            scan_interval: Duration::from_secs_f64(args.notify_scan_secs.clamp(0.1, 86400.0)),
            defer_during_ingest: Duration::from_secs_f64(
                args.notify_defer_during_ingest_secs.clamp(0.0, 3600.0),
            ),
            feeds_stale_after: Duration::from_secs_f64(
                (args.feeds_stale_after_hours * 3600.0).clamp(1.0, 3650.0 * 86400.0),
            ),
            smtp_url: args.smtp_url.clone(),
            smtp_from: args.smtp_from.clone(),
            public_url: args.public_url.clone(),
            key: Some(notify_key),
            ..Default::default()
        },
        oidc,
        ..ServerConfig::default()
    };

    // Before the "listening" line: a SIGHUP sent once the server is up must find the handler
    // in place, or its default action ends the process.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    {
        // Plain lines on stdout: people read them, and tests and scripts parse them.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "zerotrace server {} ({:?}), database {database}",
            env!("CARGO_PKG_VERSION"),
            args.role,
        )?;
        match (&new_operator_token, &token_file, admin_env.is_some()) {
            (Some(_), Some(path), _) => writeln!(
                out,
                "operator token: written to {} (readable by this user only; shown nowhere else)",
                path.display()
            )?,
            (Some(t), None, _) => writeln!(out, "operator token (shown once, store it now): {t}")?,
            (None, _, true) => writeln!(out, "operator token: from ZEROTRACE_ADMIN_TOKEN")?,
            (None, _, false) => {}
        }
        if role.runs_api() {
            writeln!(out, "dashboard: {scheme}://{addr}/")?;
        }
        // Last: scripts and tests wait for this line.
        writeln!(out, "listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    #[cfg(unix)]
    tokio::spawn(reload_on_hangup(hangups, tls.clone()));
    zt_server::serve_with_tls(store, config, listener, tls, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// SIGHUP (`systemctl reload`) reads the TLS certificate and key again; a process without
/// TLS has nothing to reload, but must not die of the signal's default action either.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    tls: Option<zt_server::TlsCertificate>,
) {
    while hangups.recv().await.is_some() {
        match &tls {
            Some(cert) => match cert.reload() {
                Ok(loaded) => tracing::info!(
                    cert = %cert.cert_path().display(),
                    chain = loaded.chain,
                    "TLS certificate reloaded: new connections use it"
                ),
                Err(e) => tracing::error!(
                    error = %e,
                    "TLS certificate not reloaded: the one loaded before stays in use"
                ),
            },
            None => tracing::info!("SIGHUP: no TLS certificate to reload"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
