//! CSV exports, one way for every table the API shows: the rows stream out page by page (the
//! response body is a stream of pages, never the whole file in memory), and every cell is
//! made safe for spreadsheets first.
//!
//! Hostnames, package names and versions come from agents, so a cell may begin with `=`,
//! `+`, `-`, `@`, a tab or a carriage return, which Excel, LibreOffice and Google Sheets take
//! for a formula (CSV injection). Such a cell is prefixed with a single quote, as OWASP
//! advises ("CSV Injection"); the quote shows, the formula never runs.

use std::borrow::Cow;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use zt_store::model::{Page, PageRequest};

use crate::error::{ApiError, ApiResult};

/// Rows fetched per page of an export.
pub const EXPORT_PAGE: u32 = 1000;

/// A cell as written: prefixed with `'` when a spreadsheet would read it as a formula.
pub fn neutralize(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// One CSV record (a header or a row), cells neutralized, line ended.
pub fn record<S: AsRef<str>>(cells: &[S]) -> Bytes {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(256));
    // Writing to memory cannot fail.
    let _ = w.write_record(cells.iter().map(|c| neutralize(c.as_ref()).into_owned()));
    Bytes::from(w.into_inner().unwrap_or_default())
}

/// A table that can be exported: its header and how one item becomes a row.
pub trait CsvRow {
    fn header() -> &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

/// A streamed CSV response of everything `fetch` pages through, from `page.cursor` on:
/// with `page.limit` set, that many rows at most (one page); without, every row. The first
/// page is read before answering, so that a bad cursor or a failing store still gets its
/// error status; a failure later ends the body early (the client sees a truncated
/// download, and the error is logged).
pub async fn csv_response<T, F, Fut>(
    filename: &str,
    page: PageRequest,
    mut fetch: F,
) -> ApiResult<Response>
where
    T: CsvRow + Send + 'static,
    F: FnMut(PageRequest) -> Fut + Send + 'static,
    Fut: Future<Output = ApiResult<Page<T>>> + Send + 'static,
{
    let single = page.limit != 0;
    let first_request = PageRequest {
        limit: if single { page.limit } else { EXPORT_PAGE },
        cursor: page.cursor,
    };
    let first = fetch(first_request).await?;
    let mut head = record(T::header()).to_vec();
    for item in &first.items {
        head.extend_from_slice(&record(&item.cells()));
    }
    let next = if single { None } else { first.next_cursor };
    let rest = futures::stream::unfold((next, fetch), |(cursor, mut fetch)| async move {
        let cursor = cursor?;
        let req = PageRequest {
            limit: EXPORT_PAGE,
            cursor: Some(cursor),
        };
        match fetch(req).await {
            Ok(page) => {
                let mut chunk = Vec::with_capacity(page.items.len() * 128);
                for item in &page.items {
                    chunk.extend_from_slice(&record(&item.cells()));
                }
                Some((
                    Ok::<Bytes, std::io::Error>(Bytes::from(chunk)),
                    (page.next_cursor, fetch),
                ))
            }
            Err(e) => {
                tracing::warn!(error = ?e, "a CSV export failed part way; the download is cut");
                Some((Err(std::io::Error::other("export failed")), (None, fetch)))
            }
        }
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The `format` of a list: JSON (default) or CSV.
pub fn wants_csv(format: Option<&str>) -> ApiResult<bool> {
    match format {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::invalid_request("format", "json or csv")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_quoted_and_others_kept() {
        for bad in [
            "=1+1",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"http://x\")",
        ] {
            assert_eq!(neutralize(bad), format!("'{bad}"), "{bad:?}");
        }
        for ok in ["", "web-1", "1.2.3", "a=b", " =x", "'quoted"] {
            assert_eq!(neutralize(ok), ok);
        }
        let line = record(&["=cmd|' /C calc'!A0", "ok", "a,b"]);
        assert_eq!(&line[..], b"'=cmd|' /C calc'!A0,ok,\"a,b\"\n");
    }
}
