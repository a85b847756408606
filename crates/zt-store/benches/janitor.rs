//! The janitor's transactions on a loaded store, timed one by one: every company's trend
//! point, then retention with everything due (finished queue entries and report records,
//! resolved findings, the event log), as the server's janitor runs them. Prints, per task, how
//! many transactions ran, the rows they deleted and their p50/p95/max duration: the goal is
//! that none holds the store (SQLite: the single writer) longer than 50 ms.
//!
//! Run it on a store a load left behind (it deletes that store's history):
//!
//! ```sh
//! ZT_BENCH_SQLITE=/path/to/zerotrace.db cargo bench -p zt-store --bench janitor
//! ZT_BENCH_PG_URL=postgres://postgres@127.0.0.1:5432/zt_bench cargo bench -p zt-store --bench janitor
//! ```
//!
//! `bench/dashboard.sh` loads a fleet, measures the reads, then runs this.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;
use zt_store::{PgOptions, PgStore, SqliteStore, Storage};

/// (task, rows, ms) of every upkeep transaction.
type Timings = Arc<Mutex<Vec<(String, u64, f64)>>>;

struct Collect(Timings);

#[derive(Default)]
struct Fields {
    task: String,
    rows: u64,
    ms: f64,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "task" {
            self.task = value.to_string();
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "rows" {
            self.rows = value;
        }
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "ms" {
            self.ms = value;
        }
    }
    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: tracing::Subscriber> Layer<S> for Collect {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() == "zerotrace::janitor" {
            let mut f = Fields::default();
            event.record(&mut f);
            if let Ok(mut t) = self.0.lock() {
                t.push((f.task, f.rows, f.ms));
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let timings: Timings = Arc::default();
    let subscriber = tracing_subscriber::registry().with(
        Collect(timings.clone()).with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target("zerotrace::janitor", tracing::Level::DEBUG),
        ),
    );
    tracing::subscriber::set_global_default(subscriber)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let store: Arc<dyn Storage> = if let Ok(path) = std::env::var("ZT_BENCH_SQLITE") {
            Arc::new(SqliteStore::open(std::path::Path::new(&path)).await?)
        } else if let Ok(url) = std::env::var("ZT_BENCH_PG_URL") {
            Arc::new(PgStore::connect(&url, &PgOptions::default()).await?)
        } else {
            eprintln!(
                "set ZT_BENCH_SQLITE=<zerotrace.db> or ZT_BENCH_PG_URL=<url> (see the file's docs)"
            );
            return Ok::<(), anyhow::Error>(());
        };
        let now = Utc::now();
        let today = now.date_naive();
        println!("janitor transactions on the {} store:", store.backend());
        store
            .record_trends(now, today - chrono::Duration::days(400))
            .await?;
        // Everything due: what a retention pass deletes after a long time.
        let later = now + chrono::Duration::minutes(1);
        store.purge_finished(later).await?;
        store.purge_history(later).await?;
        store.prune_events(later).await?;
        let mut by_task: BTreeMap<String, (Vec<f64>, u64)> = BTreeMap::new();
        for (task, rows, ms) in timings.lock().map(|t| t.clone()).unwrap_or_default() {
            let e = by_task.entry(task).or_default();
            e.0.push(ms);
            e.1 += rows;
        }
        println!(
            "{:<26} {:>8} {:>10} {:>9} {:>9} {:>9}",
            "task", "txns", "rows", "p50 ms", "p95 ms", "max ms"
        );
        for (task, (mut ms, rows)) in by_task {
            ms.sort_by(|a, b| a.total_cmp(b));
            let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
            println!(
                "{:<26} {:>8} {:>10} {:>9.2} {:>9.2} {:>9.2}",
                task,
                ms.len(),
                rows,
                at(0.5),
                at(0.95),
                at(1.0)
            );
        }
        Ok(())
    })
}
