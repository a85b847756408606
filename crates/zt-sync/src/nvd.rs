//! NVD CVE API 2.0: paging (`resultsPerPage` / `startIndex`), incremental windows
//! (`lastModStartDate` / `lastModEndDate`, at most 120 days each), the `apiKey` header and the
//! published rate limits.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Deserialize;
use zt_advisory::import::{FeedState, ImportSummary};

use crate::{
    Collected, KnowledgeTarget, RequestOptions, SourceReport, SyncClient, SyncError, SyncEvent,
};

/// NVD refuses date ranges longer than this.
pub const NVD_MAX_WINDOW_DAYS: i64 = 120;

/// Splits `[from, to)` into consecutive windows of at most 120 days.
pub fn nvd_windows(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut out = Vec::new();
    let mut start = from;
    while start < to {
        let end = (start + ChronoDuration::days(NVD_MAX_WINDOW_DAYS)).min(to);
        out.push((start, end));
        start = end;
    }
    out
}

fn nvd_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f+00:00").to_string()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageHeader {
    results_per_page: u32,
    start_index: u32,
    total_results: u32,
}

impl SyncClient {
    /// Fetches one page (waiting for the rate limiter first).
    async fn nvd_page(
        &self,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
        start_index: u32,
    ) -> Result<(PageHeader, Vec<u8>), SyncError> {
        self.nvd_limiter.until_ready().await;
        let mut query = vec![
            (
                "resultsPerPage",
                self.config.nvd_results_per_page.to_string(),
            ),
            ("startIndex", start_index.to_string()),
        ];
        if let Some((from, to)) = window {
            query.push(("lastModStartDate", nvd_time(from)));
            query.push(("lastModEndDate", nvd_time(to)));
        }
        let mut headers = Vec::new();
        if let Some(key) = &self.config.nvd_api_key {
            headers.push(("apiKey", key.clone()));
        }
        let opts = RequestOptions {
            headers,
            query,
            use_cache: false,
            forbidden_is_rate_limit: true,
            ..Default::default()
        };
        let fetched = self.fetcher.get(&self.config.nvd_url, &opts).await?;
        let header: PageHeader = serde_json::from_slice(&fetched.body).map_err(|e| {
            SyncError::Protocol(format!(
                "NVD page at startIndex {start_index} is not a CVE API 2.0 page: {e}"
            ))
        })?;
        if header.start_index != start_index {
            return Err(SyncError::Protocol(format!(
                "NVD answered startIndex {} for {start_index}",
                header.start_index
            )));
        }
        Ok((header, fetched.body))
    }
}

/// Where a first (full) download stands: the next `startIndex`, and when the download began
/// (the watermark once it is done). Stored in the feed state's cursor as
/// `full:<start_index>@<RFC 3339>`, so an interrupted first sync resumes after the last page
/// it imported instead of starting over (NVD holds over 300,000 records: at 2,000 a page and
/// 5 requests per 30 s without an API key, a full download takes a while).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FullProgress {
    pub(crate) start_index: u32,
    pub(crate) began: DateTime<Utc>,
}

impl FullProgress {
    pub(crate) fn encode(&self) -> String {
        format!("full:{}@{}", self.start_index, self.began.to_rfc3339())
    }

    pub(crate) fn decode(cursor: &str) -> Option<FullProgress> {
        let rest = cursor.strip_prefix("full:")?;
        let (index, began) = rest.split_once('@')?;
        Some(FullProgress {
            start_index: index.parse().ok()?,
            began: DateTime::parse_from_rfc3339(began)
                .ok()?
                .with_timezone(&Utc),
        })
    }
}

/// Fetches every page of one query from `start_index` on, importing every
/// `nvd_pages_per_import` pages; on a full download (`full` set) the progress is saved after
/// each import.
async fn fetch_query<T: KnowledgeTarget>(
    target: &T,
    client: &SyncClient,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    mut start_index: u32,
    mut full: Option<(&mut FeedState, DateTime<Utc>)>,
    report: &mut SourceReport,
    on_event: &(dyn Fn(SyncEvent) + Sync),
) -> Result<(), SyncError> {
    let mut collected = Collected::default();
    let mut pages = 0usize;
    let per_import = client.config.nvd_pages_per_import.max(1);
    loop {
        let (header, body) = client.nvd_page(window, start_index).await?;
        on_event(SyncEvent::NvdPage {
            start_index,
            total: header.total_results,
        });
        collected.add_document(
            &format!("{}?startIndex={start_index}", client.config.nvd_url),
            &body,
        );
        drop(body);
        pages += 1;
        let next = start_index.saturating_add(header.results_per_page);
        let done = header.results_per_page == 0 || next >= header.total_results;
        if pages % per_import == 0 || done {
            flush(target, &mut collected, report).await?;
            if let Some((state, began)) = full.as_mut() {
                if !done {
                    state.cursor = Some(
                        FullProgress {
                            start_index: next,
                            began: *began,
                        }
                        .encode(),
                    );
                    state.last_status = Some("in progress".into());
                    target.save_state(state).await?;
                }
            }
        }
        if done {
            return Ok(());
        }
        start_index = next;
    }
}

async fn flush<T: KnowledgeTarget>(
    target: &T,
    collected: &mut Collected,
    report: &mut SourceReport,
) -> Result<(), SyncError> {
    report.records_read += collected.read;
    report.errors.append(&mut collected.errors);
    if !collected.is_empty() {
        let mut batch = std::mem::take(&mut collected.batch);
        batch.origin = "sync nvd".into();
        let s = target.import(batch).await?;
        report.summary.advisories.add(&s.advisories);
        report.summary.revision = s.revision;
    }
    collected.read = 0;
    Ok(())
}

pub(crate) async fn sync_nvd<T: KnowledgeTarget>(
    target: &T,
    client: &SyncClient,
    on_event: &(dyn Fn(SyncEvent) + Sync),
) -> Result<SourceReport, SyncError> {
    let previous = target.load_state("nvd").await?;
    let started = Utc::now();
    let mut report = SourceReport {
        feed: "nvd".into(),
        status: "ok".into(),
        records_read: 0,
        errors: Vec::new(),
        summary: ImportSummary::default(),
        failed: false,
    };
    let mut state = previous.clone().unwrap_or(FeedState {
        feed: "nvd".into(),
        ..Default::default()
    });
    state.url = Some(client.config.nvd_url.clone());
    state.last_attempt_at = Some(started);
    let cursor = previous.as_ref().and_then(|p| p.cursor.clone());
    let full = cursor.as_deref().and_then(FullProgress::decode);
    let watermark = cursor
        .as_deref()
        .filter(|_| full.is_none())
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.with_timezone(&Utc));
    // The watermark once this sync is done: changes made while a full download ran are
    // fetched by the next incremental one.
    let mut done_at = started;
    // Records a resumed first download read before it was interrupted.
    let mut read_before = 0u64;
    match (watermark, full) {
        (Some(from), _) => {
            for window in nvd_windows(from, started) {
                fetch_query(target, client, Some(window), 0, None, &mut report, on_event).await?;
                // Each finished window moves the watermark, so a failure later resumes here.
                state.cursor = Some(window.1.to_rfc3339());
                state.last_status = Some("in progress".into());
                target.save_state(&state).await?;
            }
        }
        (None, resume) => {
            let (from_index, began) = match resume {
                Some(p) => {
                    tracing::info!(
                        start_index = p.start_index,
                        "resuming the first NVD download"
                    );
                    read_before = u64::from(p.start_index);
                    (p.start_index, p.began)
                }
                None => (0, started),
            };
            done_at = began;
            fetch_query(
                target,
                client,
                None,
                from_index,
                Some((&mut state, began)),
                &mut report,
                on_event,
            )
            .await?;
        }
    }
    state.cursor = Some(done_at.to_rfc3339());
    state.last_success_at = Some(Utc::now());
    state.last_status = Some("ok".into());
    state.records = report.records_read + read_before;
    target.save_state(&state).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn windows_are_at_most_120_days_and_cover_the_range() {
        let from = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let to = Utc.with_ymd_and_hms(2024, 12, 31, 0, 0, 0).unwrap();
        let w = nvd_windows(from, to);
        assert_eq!(w.len(), 4);
        assert_eq!(w[0].0, from);
        assert_eq!(w.last().unwrap().1, to);
        for pair in w.windows(2) {
            assert_eq!(pair[0].1, pair[1].0);
        }
        assert!(w.iter().all(|(a, b)| *b - *a <= ChronoDuration::days(120)));
        assert!(nvd_windows(to, from).is_empty());
    }

    #[test]
    fn full_progress_round_trips() {
        let p = FullProgress {
            start_index: 4000,
            began: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
        };
        assert_eq!(p.encode(), "full:4000@2026-12-01T10:00:00+00:00");
        assert_eq!(FullProgress::decode(&p.encode()), Some(p));
        assert_eq!(FullProgress::decode("2026-12-01T10:00:00+00:00"), None);
        assert_eq!(FullProgress::decode("full:x@2026"), None);
    }

    #[test]
    fn nvd_time_format() {
        let t = Utc.with_ymd_and_hms(2021, 8, 4, 13, 0, 0).unwrap();
        assert_eq!(nvd_time(t), "2021-08-04T13:00:00.000+00:00");
    }
}
