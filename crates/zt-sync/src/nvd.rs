//! NVD CVE API 2.0: paging (`resultsPerPage` / `startIndex`), incremental windows
//! (`lastModStartDate` / `lastModEndDate`, at most 120 days each), the `apiKey` header and the
//! published rate limits.

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::Deserialize;
use zt_store::knowledge::{FeedState, ImportSummary};

use crate::{
    Collected, KnowledgeTarget, RequestOptions, SourceReport, SyncClient, SyncError, SyncEvent,
};

/// NVD refuses date ranges longer than this.
pub const NVD_MAX_WINDOW_DAYS: i64 = 120;

/// Pages of a full download imported per transaction (bounds memory on a first sync).
const PAGES_PER_IMPORT: usize = 10;

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

/// Fetches every page of one query, importing every `PAGES_PER_IMPORT` pages.
async fn fetch_query<T: KnowledgeTarget>(
    target: &T,
    client: &SyncClient,
    window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    report: &mut SourceReport,
    on_event: &(dyn Fn(SyncEvent) + Sync),
) -> Result<(), SyncError> {
    let mut start_index = 0u32;
    let mut collected = Collected::default();
    let mut pages = 0usize;
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
        pages += 1;
        let next = start_index.saturating_add(header.results_per_page);
        let done = header.results_per_page == 0 || next >= header.total_results;
        if pages % PAGES_PER_IMPORT == 0 || done {
            flush(target, &mut collected, report).await?;
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
    let cursor = previous
        .as_ref()
        .and_then(|p| p.cursor.as_deref())
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|c| c.with_timezone(&Utc));
    match cursor {
        Some(from) => {
            for window in nvd_windows(from, started) {
                fetch_query(target, client, Some(window), &mut report, on_event).await?;
                // Each finished window moves the watermark, so a failure later resumes here.
                state.cursor = Some(window.1.to_rfc3339());
                state.last_status = Some("in progress".into());
                target.save_state(&state).await?;
            }
        }
        None => {
            fetch_query(target, client, None, &mut report, on_event).await?;
        }
    }
    state.cursor = Some(started.to_rfc3339());
    state.last_success_at = Some(Utc::now());
    state.last_status = Some("ok".into());
    state.records = report.records_read;
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
    fn nvd_time_format() {
        let t = Utc.with_ymd_and_hms(2021, 8, 4, 13, 0, 0).unwrap();
        assert_eq!(nvd_time(t), "2021-08-04T13:00:00.000+00:00");
    }
}
