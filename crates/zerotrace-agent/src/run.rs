//! The reporting loop: enroll once, report at start and every interval, spool what the server
//! cannot take now, and deliver the spool oldest first with backoff.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{debug, error, info, warn};
use zt_collect::CollectOptions;

use crate::backoff::{spread, with_jitter, Backoff};
use crate::client::{Client, EnrollRequest, Outcome};
use crate::report::{arch, build_report, gzip_json, hostname};
use crate::spool::{Spool, SpoolLimits};
use crate::state::{Identity, ReportState, StateDir};

/// Used when neither `--interval` nor the server suggests one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub server: String,
    pub enroll_secret: Option<String>,
    pub state_dir: PathBuf,
    /// Overrides the server's suggested report interval.
    pub interval: Option<Duration>,
    /// A full report is queued at least this often even when nothing changed.
    pub full_report_interval: Duration,
    /// One collection and one delivery attempt, then exit.
    pub once: bool,
    pub collect: CollectOptions,
    pub spool_limits: SpoolLimits,
    pub ca_cert: Option<PathBuf>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// This host's tags (`--tag`, `ZEROTRACE_AGENT_TAGS`): checked, sorted, without repeats.
    pub tags: Vec<String>,
}

/// What the agent remembers of its last report to decide whether the next is needed: the
/// inventory's digest, and the tags with it (a changed tag is news for the server too).
/// Without tags it is the inventory's digest as before, so an upgraded agent does not
/// report again for nothing.
fn report_digest(apps: &[zt_inventory::App], tags: &[String]) -> [u8; 32] {
    let apps = zt_inventory::inventory_digest(apps);
    if tags.is_empty() {
        return apps;
    }
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(apps);
    for t in tags {
        h.update((t.len() as u64).to_le_bytes());
        h.update(t.as_bytes());
    }
    h.finalize().into()
}

/// What a run did (for `--once` exit codes and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub queued: usize,
    pub delivered: usize,
    pub rejected: usize,
    pub dropped: usize,
    pub remaining: usize,
}

struct Agent<'a> {
    cfg: &'a RunConfig,
    state: StateDir,
    spool: Spool,
    client: Client,
    identity: Option<Identity>,
    backoff: Backoff,
    next_send: Instant,
    reported_since_start: bool,
    summary: RunSummary,
}

/// Runs until `stop` is set (or after one round with `--once`).
pub fn run(cfg: &RunConfig, stop: &AtomicBool) -> anyhow::Result<RunSummary> {
    let state = StateDir::open(&cfg.state_dir)?;
    let spool = Spool::open(&state.spool_dir(), cfg.spool_limits)?;
    let client = Client::new(&cfg.server, cfg.ca_cert.as_deref())?;
    let mut identity = state.identity()?;
    if let Some(id) = &identity {
        if id.server.trim_end_matches('/') != cfg.server.trim_end_matches('/') {
            warn!(
                enrolled_with = %id.server,
                server = %cfg.server,
                "the identity belongs to another server; enrolling again"
            );
            identity = None;
        }
    }
    let waiting = spool.len()?;
    if waiting > 0 {
        info!(
            reports = waiting,
            "reports from an earlier run are waiting in the spool"
        );
    }
    let mut agent = Agent {
        cfg,
        state,
        spool,
        client,
        identity,
        backoff: Backoff::new(cfg.backoff_base, cfg.backoff_max),
        next_send: Instant::now(),
        reported_since_start: false,
        summary: RunSummary::default(),
    };
    let mut next_collect = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if agent.identity.is_none() && now >= agent.next_send {
            agent.enroll()?;
        }
        if now >= next_collect {
            agent.collect_and_queue()?;
            next_collect = Instant::now() + spread(agent.interval());
        }
        if agent.identity.is_some() && Instant::now() >= agent.next_send {
            agent.deliver(stop)?;
        }
        if cfg.once {
            break;
        }
        let wake = if agent.identity.is_none() || agent.spool.len()? > 0 {
            next_collect.min(agent.next_send)
        } else {
            next_collect
        };
        sleep_until(wake, stop);
    }
    agent.summary.remaining = agent.spool.len()?;
    Ok(agent.summary)
}

impl Agent<'_> {
    fn interval(&self) -> Duration {
        self.cfg
            .interval
            .or_else(|| {
                self.identity
                    .as_ref()
                    .filter(|i| i.report_interval_s > 0)
                    .map(|i| Duration::from_secs(i.report_interval_s))
            })
            .unwrap_or(DEFAULT_INTERVAL)
    }

    fn retry_later(&mut self, retry_after: Option<Duration>) -> Duration {
        let fallback = self.backoff.next_delay();
        let delay = retry_after.map(with_jitter).unwrap_or(fallback);
        self.next_send = Instant::now() + delay;
        delay
    }

    fn enroll(&mut self) -> anyhow::Result<()> {
        let Some(secret) = self.cfg.enroll_secret.clone() else {
            anyhow::bail!(
                "this agent is not enrolled: give the company's enroll secret with --enroll-secret \
                 (or ZEROTRACE_ENROLL_SECRET)"
            );
        };
        let request = EnrollRequest {
            enroll_secret: secret,
            hostname: hostname(),
            os: zt_collect::os_release::collect(&self.cfg.collect),
            arch: arch(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        match self.client.enroll(&request) {
            Outcome::Done(answer) => {
                let identity = Identity {
                    server: self.cfg.server.clone(),
                    agent_id: answer.agent_id,
                    agent_token: answer.agent_token,
                    report_interval_s: answer.report_interval_s.unwrap_or(0),
                };
                self.state.save_identity(&identity)?;
                info!(agent_id = %identity.agent_id, interval_s = identity.report_interval_s, "enrolled");
                self.identity = Some(identity);
                // The backoff is reset by a delivery, not here: a server that enrolls and then
                // refuses the token must not be hit in a tight loop.
                self.next_send = Instant::now();
                Ok(())
            }
            Outcome::Retry {
                retry_after,
                reason,
            } => {
                if self.cfg.once {
                    anyhow::bail!("cannot enroll now: {reason}");
                }
                let delay = self.retry_later(retry_after);
                warn!(
                    retry_in_s = delay.as_secs_f64(),
                    "cannot enroll now: {reason}"
                );
                Ok(())
            }
            Outcome::Unauthorized(message) => {
                anyhow::bail!("the server refused the enroll secret: {message}")
            }
            Outcome::Rejected { status, message } => {
                anyhow::bail!("the server refused the enrollment ({status}): {message}")
            }
        }
    }

    fn collect_and_queue(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let collection = zt_collect::collect(&self.cfg.collect);
        for warning in &collection.warnings {
            warn!("{warning}");
        }
        if !collection.errors.is_empty() {
            for e in &collection.errors {
                error!("{e}");
            }
            error!(
                "the inventory is incomplete ({} sources unreadable); not reporting it, so the \
                 server keeps the last complete one",
                collection.errors.len()
            );
            return Ok(());
        }
        let digest = hex::encode(report_digest(&collection.apps, &self.cfg.tags));
        let previous = self.state.report_state()?;
        let now = chrono::Utc::now().timestamp();
        let full_due = previous.last_full_report_at.is_none_or(|t| {
            now.saturating_sub(t) >= self.cfg.full_report_interval.as_secs() as i64
        });
        let reason = if !self.reported_since_start {
            "start"
        } else if previous.last_digest.as_deref() != Some(digest.as_str()) {
            "changed"
        } else if full_due {
            "periodic"
        } else {
            debug!(
                apps = collection.apps.len(),
                "inventory unchanged; nothing to report"
            );
            return Ok(());
        };
        let report = build_report(&collection, &self.cfg.tags);
        let body = gzip_json(&report)?;
        let dropped = self
            .spool
            .push(report.report_id, &body)
            .context("cannot spool the report")?;
        for old in &dropped {
            error!(
                report_id = %old.report_id,
                bytes = old.size,
                max_reports = self.cfg.spool_limits.max_reports,
                max_bytes = self.cfg.spool_limits.max_bytes,
                "spool full: dropped the oldest undelivered report (newer reports carry the full inventory)"
            );
        }
        self.summary.dropped += dropped.len();
        self.summary.queued += 1;
        self.state.save_report_state(&ReportState {
            last_digest: Some(digest),
            last_full_report_at: Some(now),
        })?;
        self.reported_since_start = true;
        info!(
            report_id = %report.report_id,
            apps = report.apps.len(),
            gzip_bytes = body.len(),
            collect_ms = started.elapsed().as_millis() as u64,
            reason,
            "report queued"
        );
        Ok(())
    }

    /// Sends spooled reports oldest first until the spool is empty or the server says wait.
    fn deliver(&mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        while let Some(entry) = self.spool.oldest()? {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let Some(identity) = self.identity.clone() else {
                return Ok(());
            };
            let body = entry.read()?;
            match self.client.send_inventory(&identity.agent_token, &body) {
                Outcome::Done(accepted) => {
                    self.spool.remove(&entry)?;
                    self.backoff.reset();
                    self.summary.delivered += 1;
                    info!(
                        report_id = %entry.report_id,
                        status = accepted.status,
                        "report delivered"
                    );
                }
                Outcome::Retry {
                    retry_after,
                    reason,
                } => {
                    let delay = self.retry_later(retry_after);
                    warn!(
                        report_id = %entry.report_id,
                        spooled = self.spool.len()?,
                        retry_in_s = delay.as_secs_f64(),
                        "report not delivered, kept in the spool: {reason}"
                    );
                    return Ok(());
                }
                Outcome::Unauthorized(message) => {
                    warn!("the server refused the agent token ({message}); enrolling again");
                    self.state.forget_identity()?;
                    self.identity = None;
                    if self.backoff.failures() == 0 {
                        // First refusal: enroll again right away (the server may have been reset).
                        self.backoff.next_delay();
                        self.next_send = Instant::now();
                    } else {
                        self.retry_later(None);
                    }
                    return Ok(());
                }
                Outcome::Rejected { status, message } => {
                    let kept = self.spool.reject(&entry)?;
                    self.summary.rejected += 1;
                    error!(
                        report_id = %entry.report_id,
                        status,
                        kept = %kept.display(),
                        "the server refused the report for good: {message}"
                    );
                }
            }
        }
        Ok(())
    }
}

fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{TestServer, SECRET};
    use std::sync::Arc;

    /// A file system root with an os-release and a dpkg status of `n` packages.
    fn root(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/os-release"),
            "ID=debian\nVERSION_ID=\"12\"\n",
        )
        .unwrap();
        set_packages(dir.path(), n);
        dir
    }

    fn set_packages(root: &std::path::Path, n: usize) {
        std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
        let status: String = (0..n)
            .map(|i| format!("Package: pkg{i}\nStatus: install ok installed\nVersion: 1.{i}\n\n"))
            .collect();
        std::fs::write(root.join("var/lib/dpkg/status"), status).unwrap();
    }

    fn config(server: &str, root: &std::path::Path, state: &std::path::Path) -> RunConfig {
        RunConfig {
            server: server.into(),
            enroll_secret: Some(SECRET.into()),
            state_dir: state.into(),
            interval: Some(Duration::from_millis(300)),
            full_report_interval: Duration::ZERO,
            once: false,
            collect: CollectOptions::under_root(root),
            spool_limits: SpoolLimits::default(),
            ca_cert: None,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            tags: Vec::new(),
        }
    }

    /// Runs the loop in a thread; returns a stopper that joins it.
    fn spawn(
        cfg: RunConfig,
    ) -> (
        Arc<AtomicBool>,
        std::thread::JoinHandle<anyhow::Result<RunSummary>>,
    ) {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        (stop, std::thread::spawn(move || run(&cfg, &s)))
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn once_enrolls_reports_and_leaves_nothing_behind() {
        let server = TestServer::start();
        let root = root(3);
        let state = tempfile::tempdir().unwrap();
        let mut cfg = config(&server.url(), root.path(), state.path());
        cfg.once = true;
        let summary = run(&cfg, &AtomicBool::new(false)).unwrap();
        assert_eq!(
            summary,
            RunSummary {
                queued: 1,
                delivered: 1,
                ..RunSummary::default()
            }
        );
        assert_eq!(server.stored_count(), 1);
        // A second run reuses the identity: no new enrollment.
        run(&cfg, &AtomicBool::new(false)).unwrap();
        let s = server.shared.lock().unwrap();
        assert_eq!(s.enrollments, 1);
        assert_eq!(s.stored.len(), 2);
        assert!(s.bad_requests.is_empty(), "{:?}", s.bad_requests);
    }

    #[test]
    fn wrong_secret_is_fatal_and_clear() {
        let server = TestServer::start();
        let root = root(1);
        let state = tempfile::tempdir().unwrap();
        let mut cfg = config(&server.url(), root.path(), state.path());
        cfg.enroll_secret = Some("wrong".into());
        let e = run(&cfg, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("refused the enroll secret"), "{e}");
        cfg.enroll_secret = None;
        let e = run(&cfg, &AtomicBool::new(false)).unwrap_err();
        assert!(e.to_string().contains("not enrolled"), "{e}");
    }

    #[test]
    fn honours_retry_after_and_backs_off_on_errors() {
        let server = TestServer::start();
        server.script(&[(429, Some("1")), (503, None), (500, None)]);
        let root = root(2);
        let state = tempfile::tempdir().unwrap();
        let mut cfg = config(&server.url(), root.path(), state.path());
        cfg.interval = Some(Duration::from_secs(3600));
        let (stop, handle) = spawn(cfg);
        wait_for("delivery", || server.stored_count() == 1);
        stop.store(true, Ordering::Relaxed);
        let summary = handle.join().unwrap().unwrap();
        assert_eq!(
            (summary.queued, summary.delivered, summary.remaining),
            (1, 1, 0)
        );
        let s = server.shared.lock().unwrap();
        let statuses: Vec<u16> = s.attempts.iter().map(|a| a.2).collect();
        assert_eq!(statuses, [429, 503, 500, 202]);
        // Every attempt carried the same report.
        assert!(s.attempts.iter().all(|a| a.0 == s.attempts[0].0));
        // Retry-After: 1 was waited out before the next attempt.
        let gap = s.attempts[1].1 - s.attempts[0].1;
        assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    }

    #[test]
    fn outage_spools_reports_and_delivers_each_once_in_order() {
        let mut server = TestServer::start();
        let root = root(5);
        let state = tempfile::tempdir().unwrap();
        let cfg = config(&server.url(), root.path(), state.path());
        let spool_dir = state.path().join("spool");
        let (stop, handle) = spawn(cfg);
        wait_for("the first report", || server.stored_count() >= 1);
        server.stop();
        let count_spooled = || {
            std::fs::read_dir(&spool_dir)
                .map(|d| d.count())
                .unwrap_or(0)
        };
        wait_for("reports piling up in the spool", || count_spooled() >= 4);
        server.restart();
        wait_for("the spool to drain", || {
            count_spooled() == 0 && server.stored_count() >= 5
        });
        stop.store(true, Ordering::Relaxed);
        let summary = handle.join().unwrap().unwrap();
        let s = server.shared.lock().unwrap();
        assert!(s.stored.values().all(|&n| n == 1));
        assert_eq!(summary.dropped, 0);
        assert_eq!(
            s.stored.len(),
            summary.queued - summary.remaining,
            "every queued report arrived once: {summary:?}"
        );
        // Spooled reports were delivered oldest first: collection times ascend.
        assert!(s.stored_order.len() >= 5);
        assert!(s.bad_requests.is_empty(), "{:?}", s.bad_requests);
    }

    #[test]
    fn full_spool_drops_the_oldest_and_counts_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let root = root(1);
        let state = tempfile::tempdir().unwrap();
        // Pretend an earlier run enrolled, so reports are made while the server is away.
        let sd = crate::state::StateDir::open(state.path()).unwrap();
        sd.save_identity(&Identity {
            server: format!("http://{addr}"),
            agent_id: "a".into(),
            agent_token: "t".into(),
            report_interval_s: 1,
        })
        .unwrap();
        let mut cfg = config(&format!("http://{addr}"), root.path(), state.path());
        cfg.interval = Some(Duration::from_millis(100));
        cfg.spool_limits = SpoolLimits {
            max_reports: 2,
            max_bytes: 1 << 20,
        };
        let (stop, handle) = spawn(cfg);
        let spool = Spool::open(&state.path().join("spool"), SpoolLimits::default()).unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(800) {
            assert!(spool.len().unwrap() <= 2);
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let summary = handle.join().unwrap().unwrap();
        assert!(summary.queued >= 4, "{summary:?}");
        assert_eq!(summary.remaining, 2);
        assert_eq!(summary.dropped, summary.queued - 2);
    }

    #[test]
    fn unchanged_inventory_is_not_resent_until_it_changes() {
        let server = TestServer::start();
        let root = root(2);
        let state = tempfile::tempdir().unwrap();
        let mut cfg = config(&server.url(), root.path(), state.path());
        cfg.interval = Some(Duration::from_millis(100));
        cfg.full_report_interval = Duration::from_secs(3600);
        let (stop, handle) = spawn(cfg);
        wait_for("the start report", || server.stored_count() == 1);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            server.stored_count(),
            1,
            "unchanged inventory was sent again"
        );
        set_packages(root.path(), 3);
        wait_for("the changed report", || server.stored_count() == 2);
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
    }

    #[test]
    fn rejected_report_is_set_aside_and_revoked_token_re_enrolls() {
        let server = TestServer::start();
        let root = root(1);
        let state = tempfile::tempdir().unwrap();
        let mut cfg = config(&server.url(), root.path(), state.path());
        cfg.once = true;
        server.script(&[(413, None)]);
        let summary = run(&cfg, &AtomicBool::new(false)).unwrap();
        assert_eq!((summary.rejected, summary.remaining), (1, 0));
        assert_eq!(
            std::fs::read_dir(state.path().join("spool/rejected"))
                .unwrap()
                .count(),
            1
        );

        server.revoke_tokens();
        cfg.once = false;
        let (stop, handle) = spawn(cfg);
        wait_for("delivery after re-enrolling", || server.stored_count() == 1);
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap().unwrap();
        assert_eq!(server.shared.lock().unwrap().enrollments, 2);
    }
}
