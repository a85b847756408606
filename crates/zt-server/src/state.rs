//! What every handler and background task shares.

use std::ops::Deref;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::Notify;
use zt_store::Storage;

use crate::auth::TokenCache;
use crate::config::ServerConfig;
use crate::ingest::IngestHandle;
use crate::matching::Matcher;
use crate::ratelimit::RateLimits;
use crate::shared::SharedState;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Storage>,
    pub config: ServerConfig,
    pub tokens: TokenCache,
    pub limits: RateLimits,
    /// Limits per client address before authentication (`preauth.rs`).
    pub preauth: crate::preauth::PreAuthLimits,
    /// Redis shared with the other replicas, when configured.
    pub shared: Option<Arc<SharedState>>,
    pub ingest: IngestHandle,
    pub matcher: Matcher,
    /// Wakes idle workers of this process when reports were queued.
    pub work_available: Arc<Notify>,
    /// The live events' fan-out to this process's SSE streams.
    pub events: Arc<crate::live::EventHub>,
    pub metrics: PrometheusHandle,
    /// Set once the match index is loaded (see `/readyz`).
    pub ready: AtomicBool,
    /// Software versions known to be in the store (rows are never deleted, so a hit is
    /// always right): spares the workers a look-up per app.
    pub known_software: parking_lot::RwLock<std::collections::HashSet<zt_inventory::SoftwareKey>>,
    /// Sends notifications and seals their secrets.
    pub notifier: Arc<crate::notify::Notifier>,
    /// When the workers last claimed reports (the dispatcher lets ingest go first).
    pub ingest_activity: crate::notify::IngestActivity,
    /// The OpenID Connect client, when people sign in through a provider.
    pub oidc: Option<crate::oidc::Oidc>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(store: Arc<dyn Storage>, config: ServerConfig) -> AppState {
        let work_available = Arc::new(Notify::new());
        let ingest =
            crate::ingest::spawn(store.clone(), config.queue_bound, work_available.clone());
        // The URL was checked when the configuration was made (`shared::check_redis_url`).
        let shared = config.redis_url.as_deref().and_then(|url| {
            match SharedState::new(url, &config.redis_prefix) {
                Ok(s) => Some(Arc::new(s)),
                Err(e) => {
                    tracing::error!(error = %e, "bad Redis URL: limits stay local");
                    None
                }
            }
        });
        AppState(Arc::new(Inner {
            tokens: TokenCache::new(Duration::from_secs(30)),
            limits: RateLimits::with_shared(
                config.rate_company_per_min,
                config.rate_agent_per_min,
                shared.clone(),
            )
            .with_users(config.rate_company_users_per_min),
            preauth: crate::preauth::PreAuthLimits::new(
                config.rate_auth_failures_per_min,
                config.rate_enroll_per_min,
                shared.clone(),
            ),
            shared,
            ingest,
            matcher: Matcher::empty(),
            work_available,
            events: Arc::new(crate::live::EventHub::default()),
            metrics: crate::telemetry::prometheus(),
            ready: AtomicBool::new(false),
            known_software: parking_lot::RwLock::new(std::collections::HashSet::new()),
            notifier: Arc::new(
                crate::notify::Notifier::new(config.notify.clone())
                    .expect("the notification sender builds (a TLS provider is installed)"),
            ),
            ingest_activity: crate::notify::IngestActivity::default(),
            oidc: config.oidc.clone().map(|c| {
                crate::oidc::Oidc::new(c)
                    .expect("the OIDC client builds (a TLS provider is installed)")
            }),
            store,
            config,
        }))
    }
}
