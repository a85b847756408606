//! The page frame (head, header with the views' navigation, the error banner, the script) and
//! the small pieces every view uses: severity badges, times, sortable headers, pagers.

use std::collections::HashMap;

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{html, Markup, DOCTYPE};
use zt_advisory::Severity;
use zt_store::model::{Principal, Role};

use super::{query, Ctx, Viewer};

/// The views of a company, in the navigation's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Hosts,
    Software,
    Vulnerabilities,
    Findings,
    AddHosts,
    Notifications,
}

impl View {
    fn label(self) -> &'static str {
        match self {
            View::Overview => "Overview",
            View::Hosts => "Hosts",
            View::Software => "Software",
            View::Vulnerabilities => "Vulnerabilities",
            View::Findings => "Findings",
            View::AddHosts => "Add hosts",
            View::Notifications => "Notifications",
        }
    }

    /// The path below `/c/{company_id}`.
    fn path(self) -> &'static str {
        match self {
            View::Overview => "",
            View::Hosts => "/hosts",
            View::Software => "/software",
            View::Vulnerabilities => "/vulnerabilities",
            View::Findings => "/findings",
            View::AddHosts => "/add-hosts",
            View::Notifications => "/notifications",
        }
    }

    /// The name the script and the switcher know the view by.
    fn key(self) -> &'static str {
        match self {
            View::Overview => "overview",
            View::Hosts => "hosts",
            View::Software => "software",
            View::Vulnerabilities => "vulnerabilities",
            View::Findings => "findings",
            View::AddHosts => "add-hosts",
            View::Notifications => "notifications",
        }
    }
}

/// Headers of every page: no caching of live data, no framing, only our own code.
pub fn secure(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::VARY,
        HeaderValue::from_static("cookie, x-zerotrace-fragment"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

fn head(title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(csrf) = csrf {
                meta name="zt-csrf" content=(csrf);
            }
            title { (title) " · ZeroTrace" }
            link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
            link rel="stylesheet" href="/assets/dashboard.css";
            script src="/assets/dashboard.js" defer {}
        }
    }
}

fn who(viewer: &Viewer) -> Markup {
    let label = match viewer.principal {
        Principal::Operator => "operator",
        Principal::User {
            role: Role::Admin, ..
        } => "company admin",
        _ => "viewer",
    };
    html! {
        span .who { (label) }
        span #live .live data-state="connecting" aria-live="polite" { "connecting…" }
        button #signout type="button" .secondary { "Sign out" }
    }
}

/// A company's page: `content` is the view's own part (all a live refresh asks for).
pub fn page(ctx: &Ctx, view: View, title: &str, content: Markup) -> Response {
    if ctx.fragment {
        return secure(Html(content.into_string()).into_response());
    }
    let company = &ctx.company;
    let mut views = vec![
        View::Overview,
        View::Hosts,
        View::Software,
        View::Vulnerabilities,
        View::Findings,
        View::Notifications,
    ];
    if ctx.viewer.is_admin() {
        views.push(View::AddHosts);
    }
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("{title} · {}", company.name), Some(&ctx.viewer.csrf)))
            body data-stream=(ctx.api("/events")) data-company=(company.id) data-view=(view.key()) {
                a .skip href="#main" { "Skip to content" }
                header .top {
                    div .topbar {
                        a .brand href="/" { "ZeroTrace" }
                        @if ctx.viewer.is_operator() {
                            a .crumb href="/operator" { "All companies" }
                            span .sep aria-hidden="true" { "›" }
                        }
                        span .company { (company.name) }
                        span .spacer {}
                        (who(&ctx.viewer))
                    }
                    div .subbar {
                        nav .views aria-label="Views of this company" {
                            @for v in &views {
                                @if *v == view {
                                    a href=(ctx.url(v.path())) aria-current="page" { (v.label()) }
                                } @else {
                                    a href=(ctx.url(v.path())) { (v.label()) }
                                }
                            }
                        }
                        @if !ctx.companies.is_empty() {
                            form .switch method="get" action="/switch" {
                                input type="hidden" name="view" value=(view.key());
                                label for="switch-company" .sr-only { "Company" }
                                select #switch-company name="company" {
                                    @for c in &ctx.companies {
                                        @if c.id == company.id {
                                            option value=(c.id) selected { (c.name) }
                                        } @else {
                                            option value=(c.id) { (c.name) }
                                        }
                                    }
                                }
                                button type="submit" .secondary { "Switch" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" {
                    div #error .banner role="alert" {}
                    div #view { (content) }
                }
            }
        }
    };
    secure(Html(markup.into_string()).into_response())
}

/// The operator's pages (no company chosen).
pub fn operator_page(viewer: &Viewer, fragment: bool, content: Markup) -> Response {
    if fragment {
        return secure(Html(content.into_string()).into_response());
    }
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("All companies", Some(&viewer.csrf)))
            body data-stream="/api/v1/events" data-view="operator" {
                a .skip href="#main" { "Skip to content" }
                header .top {
                    div .topbar {
                        a .brand href="/" { "ZeroTrace" }
                        span .company { "All companies" }
                        span .spacer {}
                        (who(viewer))
                    }
                }
                main #main tabindex="-1" {
                    div #error .banner role="alert" {}
                    div #view { (content) }
                }
            }
        }
    };
    secure(Html(markup.into_string()).into_response())
}

/// A page that only says what went wrong, with a way on (`retry`: the page without its
/// query, for a bad filter in the URL).
pub fn error_page(title: &str, message: &str, retry: Option<&str>) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body {
                a .skip href="#main" { "Skip to content" }
                header .top { div .topbar { a .brand href="/" { "ZeroTrace" } } }
                main #main tabindex="-1" {
                    div #error .banner role="alert" { (message) }
                    h1 { (title) }
                    @if let Some(path) = retry {
                        p { a href=(path) { "This page without filters" } }
                    }
                    p { a href="/" { "Back to the start page" } }
                }
            }
        }
    };
    Html(markup.into_string())
}

/// The sign-in page's frame.
pub fn bare_page(title: &str, content: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body data-view="signin" {
                a .skip href="#main" { "Skip to content" }
                header .top { div .topbar { a .brand href="/" { "ZeroTrace" } } }
                main #main tabindex="-1" { (content) }
            }
        }
    };
    secure(Html(markup.into_string()).into_response())
}

// --- pieces ------------------------------------------------------------------------------------

pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::None | Severity::Unknown => "unknown",
        other => other.as_str(),
    }
}

/// A severity badge (text, not only colour).
pub fn sev(s: Severity) -> Markup {
    let name = severity_name(s);
    html! { span class={ "sev sev-" (name) } { (name) } }
}

pub fn time(t: DateTime<Utc>) -> Markup {
    html! { time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M")) } }
}

/// A time, or `none` (muted) when there is none.
pub fn opt_time(t: Option<DateTime<Utc>>, none: &str) -> Markup {
    match t {
        Some(t) => time(t),
        None => html! { span .muted { (none) } },
    }
}

/// "3 h ago" and the like.
pub fn ago(t: DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_seconds().max(0);
    match secs {
        s if s < 90 => "just now".into(),
        s if s < 90 * 60 => format!("{} min ago", (s + 30) / 60),
        s if s < 36 * 3600 => format!("{} h ago", (s + 1800) / 3600),
        s => format!("{} days ago", (s + 43_200) / 86_400),
    }
}

pub fn epss(e: Option<f64>) -> String {
    e.map(|e| format!("{:.1}%", e * 100.0)).unwrap_or_default()
}

pub fn cvss(c: Option<&zt_advisory::Cvss>) -> Markup {
    match c {
        Some(c) => html! { span title=(c.vector) { (format!("{:.1}", c.score)) } },
        None => html! {},
    }
}

/// A page's current filters: rebuilds its URL with one thing changed.
pub struct Filters<'a> {
    pub base: String,
    pub params: &'a HashMap<String, String>,
    /// The names that belong to this view (others in the URL are dropped from its links).
    pub keys: &'static [&'static str],
}

impl Filters<'_> {
    fn get(&self, k: &str) -> &str {
        self.params.get(k).map(|s| s.trim()).unwrap_or("")
    }

    /// The URL with `changes` applied (an empty value removes the name); the cursor is
    /// dropped unless set by `changes` (a new filter or order starts at the first page).
    pub fn with(&self, changes: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = Vec::new();
        for k in self.keys {
            if *k == "cursor" {
                continue;
            }
            if let Some((_, v)) = changes.iter().find(|(c, _)| c == k) {
                pairs.push((k, v));
            } else {
                pairs.push((k, self.get(k)));
            }
        }
        if let Some((_, v)) = changes.iter().find(|(c, _)| *c == "cursor") {
            pairs.push(("cursor", v));
        }
        format!("{}{}", self.base, query(pairs))
    }

    /// The same filters and order for another URL (the CSV export of the API).
    pub fn api(&self, url: &str, extra: &[(&str, &str)]) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .keys
            .iter()
            .filter(|k| **k != "cursor")
            .map(|k| (*k, self.get(k)))
            .collect();
        pairs.extend_from_slice(extra);
        format!("{url}{}", query(pairs))
    }

    /// A sortable column header: a link that sorts by `key` (descending first when
    /// `desc_first`), or reverses the order when it already sorts by it.
    pub fn sort_th(&self, label: &str, key: &str, current: &Sort, desc_first: bool) -> Markup {
        let active = current.key == key;
        let next_desc = if active { !current.desc } else { desc_first };
        let href = self.with(&[
            ("sort", key),
            ("order", if next_desc { "desc" } else { "asc" }),
        ]);
        let aria = if !active {
            "none"
        } else if current.desc {
            "descending"
        } else {
            "ascending"
        };
        html! {
            th scope="col" aria-sort=(aria) {
                a .sort href=(href) {
                    (label)
                    @if active {
                        span .arrow aria-hidden="true" { @if current.desc { " ▼" } @else { " ▲" } }
                    }
                }
            }
        }
    }
}

/// A table's order: a column and its direction.
#[derive(Debug, Clone)]
pub struct Sort {
    pub key: String,
    pub desc: bool,
}

impl Sort {
    /// From `sort`/`order` of the URL. `keys` are the view's sorts with their natural
    /// direction (true: descending), the first being the default; without `order` a sort goes
    /// its natural way.
    pub fn parse(
        params: &HashMap<String, String>,
        keys: &[(&str, bool)],
    ) -> Result<Sort, super::PageError> {
        let key = super::param(params, "sort").unwrap_or(keys[0].0);
        let Some((key, natural)) = keys.iter().find(|(k, _)| *k == key) else {
            return Err(super::PageError::Bad(format!(
                "sort: one of {}",
                keys.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            )));
        };
        let desc = match super::param(params, "order") {
            None => *natural,
            Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(super::PageError::Bad("order: asc or desc".into())),
        };
        Ok(Sort {
            key: key.to_string(),
            desc,
        })
    }

    /// The store's direction.
    pub fn order(&self) -> Option<zt_store::model::SortOrder> {
        Some(if self.desc {
            zt_store::model::SortOrder::Desc
        } else {
            zt_store::model::SortOrder::Asc
        })
    }

    /// A sortable column header of `keys` (see [`Sort::parse`]), or a plain one when `key`
    /// is not among them.
    pub fn th(&self, filters: &Filters, keys: &[(&str, bool)], label: &str, key: &str) -> Markup {
        match keys.iter().find(|(k, _)| *k == key) {
            Some((_, natural)) => filters.sort_th(label, key, self, *natural),
            None => html! { th scope="col" { (label) } },
        }
    }
}

/// Links to the first and the next page of a list.
pub fn pager(filters: &Filters, next_cursor: Option<&str>, shown: usize) -> Markup {
    let on_later_page = !filters.get("cursor").is_empty();
    html! {
        @if on_later_page || next_cursor.is_some() {
            nav .pager aria-label="Pages" {
                @if on_later_page {
                    a href=(filters.with(&[])) { "« First page" }
                }
                span .muted { (shown) " shown" }
                @if let Some(c) = next_cursor {
                    a href=(filters.with(&[("cursor", c)])) rel="next" { "Next page »" }
                }
            }
        }
    }
}

/// A table. At 1280 px it scrolls sideways inside its frame if it must; at phone width
/// (dashboard.css) each row is a card of its cells, each cell named by its `data-label` (every
/// view's cells carry their column's name), so nothing of a row is beyond the screen's edge.
pub fn table(caption: &str, head: Markup, rows: Markup) -> Markup {
    html! {
        div .table-wrap tabindex="0" role="region" aria-label=(caption) {
            table {
                caption .sr-only { (caption) }
                thead { tr { (head) } }
                tbody { (rows) }
            }
        }
    }
}

pub fn empty(message: &str) -> Markup {
    html! { p .empty { (message) } }
}

pub fn csv_link(url: &str) -> Markup {
    html! { a .button.secondary href=(url) download { "Export CSV" } }
}

/// A checkbox of a GET filter form.
pub fn check(name: &str, label: &str, on: bool) -> Markup {
    html! {
        label .check {
            @if on { input type="checkbox" name=(name) value="true" checked; }
            @else { input type="checkbox" name=(name) value="true"; }
            " " (label)
        }
    }
}

/// A select of a GET filter form.
pub fn select(name: &str, label: &str, options: &[(&str, &str)], current: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        label for=(id) { (label) }
        select id=(id) name=(name) {
            @for (value, text) in options {
                @if *value == current {
                    option value=(value) selected { (text) }
                } @else {
                    option value=(value) { (text) }
                }
            }
        }
    }
}

pub fn search(name: &str, label: &str, value: &str, placeholder: &str) -> Markup {
    let id = format!("f-{name}");
    html! {
        label for=(id) { (label) }
        input id=(id) type="search" name=(name) value=(value) placeholder=(placeholder) maxlength="200";
    }
}

/// The severity filter's options.
pub const SEVERITY_OPTIONS: [(&str, &str); 6] = [
    ("", "any severity"),
    ("critical", "critical"),
    ("high", "high"),
    ("medium", "medium"),
    ("low", "low"),
    ("unknown", "unknown"),
];

/// A number with thin grouping (12 345).
pub fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(n(0), "0");
        assert_eq!(n(999), "999");
        assert_eq!(n(1000), "1\u{202f}000");
        assert_eq!(n(1234567), "1\u{202f}234\u{202f}567");
    }

    #[test]
    fn filter_links_keep_the_view_and_reset_the_page() {
        let params: HashMap<String, String> = [
            ("q", "ssl"),
            ("cursor", "abc"),
            ("other", "x"),
            ("sort", "risk"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let f = Filters {
            base: "/c/1/hosts".into(),
            params: &params,
            keys: &["q", "sort", "order", "cursor"],
        };
        assert_eq!(f.with(&[]), "/c/1/hosts?q=ssl&sort=risk");
        assert_eq!(
            f.with(&[("cursor", "n2")]),
            "/c/1/hosts?q=ssl&sort=risk&cursor=n2"
        );
        assert_eq!(
            f.with(&[("sort", "os"), ("order", "asc")]),
            "/c/1/hosts?q=ssl&sort=os&order=asc"
        );
        assert_eq!(
            f.api("/api/x", &[("format", "csv")]),
            "/api/x?q=ssl&sort=risk&format=csv"
        );
    }
}
