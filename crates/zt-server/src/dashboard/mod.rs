//! The dashboard: server-rendered pages (maud), one module per view, each at its own URL with
//! its filters, sorting and page in the query string, so that links, the back button and
//! reloads simply work. The pages read the store through the same calls as the JSON API, with
//! the same authorization: the session cookie (see `routes::session`) stands for the token
//! it was opened with, and a company the viewer may not read answers 404 like a missing one.
//!
//! Our own small script (`assets/dashboard.js`) signs in and out, and keeps an open page
//! current: it listens to the company's (or the operator's) live event stream, updates the
//! summary counts from `summary` events, and on `findings.changed` / `report.processed` asks
//! the same URL again for just the view's content ([`FRAGMENT_HEADER`]) and swaps it in.
//! No third-party code; charts are SVG drawn here (`charts`).
//!
//! URLs: `/signin` (and `/signin/sso`, `/signin/sso/callback`: OpenID Connect), `/operator` (every company), and per company `/c/{company_id}` (overview)
//! with `/hosts`, `/hosts/{agent_id}`, `/software`, `/vulnerabilities`,
//! `/vulnerabilities/{vuln_id}`, `/findings`, `/add-hosts` below it. `/` sends each viewer
//! to their start: a user to their company, the operator to `/operator`.

mod add_hosts;
mod charts;
mod findings;
mod hosts;
mod layout;
mod notifications;
mod operator;
mod overview;
mod signin;
mod software;
mod sso;
mod vulns;

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use zt_store::model::{Company, CompanyId, Principal, Role};

use crate::auth;
use crate::error::ApiError;
use crate::state::AppState;

/// A request for only the view's content (the live refresh of an open page).
pub const FRAGMENT_HEADER: &str = "x-zerotrace-fragment";

const SCRIPT: &str = include_str!("../../assets/dashboard.js");
const STYLE: &str = include_str!("../../assets/dashboard.css");
const ICON: &str = include_str!("../../assets/favicon.svg");

/// The dashboard's routes (HTML and assets; not part of the JSON API or its document).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/signin", get(signin::page))
        .route("/signin/sso", get(sso::start))
        .route("/signin/sso/callback", get(sso::callback))
        .route("/operator", get(operator::page))
        .route("/switch", get(switch))
        .route("/c/{company_id}", get(overview::page))
        .route("/c/{company_id}/hosts", get(hosts::list))
        .route("/c/{company_id}/hosts/{agent_id}", get(hosts::detail))
        .route("/c/{company_id}/software", get(software::page))
        .route("/c/{company_id}/vulnerabilities", get(vulns::list))
        .route(
            "/c/{company_id}/vulnerabilities/{vuln_id}",
            get(vulns::detail),
        )
        .route("/c/{company_id}/findings", get(findings::page))
        .route("/c/{company_id}/add-hosts", get(add_hosts::page))
        .route("/c/{company_id}/notifications", get(notifications::page))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .route("/assets/favicon.svg", get(icon))
        .route("/favicon.ico", get(icon))
}

/// Who is looking: the principal behind the session cookie, and the session's CSRF token
/// (put into every page for the script's writes: sign-out).
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
}

impl Viewer {
    pub fn is_operator(&self) -> bool {
        self.principal == Principal::Operator
    }

    /// May create tokens and see how to enroll hosts: the operator and company admins.
    pub fn is_admin(&self) -> bool {
        matches!(
            self.principal,
            Principal::Operator
                | Principal::User {
                    role: Role::Admin,
                    ..
                }
        )
    }
}

/// Everything a company's page needs besides its own data.
pub struct Ctx {
    pub viewer: Viewer,
    pub company: Company,
    /// The operator's company switcher (empty for users).
    pub companies: Vec<Company>,
    /// Only the view's content is asked for (live refresh).
    pub fragment: bool,
}

impl Ctx {
    pub fn id(&self) -> CompanyId {
        self.company.id
    }

    /// The URL of one of this company's pages (`rest` starts with `/` or is empty).
    pub fn url(&self, rest: &str) -> String {
        format!("/c/{}{rest}", self.company.id)
    }

    /// The JSON API's URL of this company (`rest` starts with `/`).
    pub fn api(&self, rest: &str) -> String {
        format!("/api/v1/companies/{}{rest}", self.company.id)
    }
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub enum PageError {
    /// No session, or its token no longer valid: sign in (again).
    SignIn,
    /// Missing, or not the viewer's: exactly alike.
    NotFound,
    /// The credential may not see this.
    Forbidden(String),
    /// A bad filter or page in the URL; the message names it.
    Bad(String),
    /// Over the rate limit.
    Limited(u64),
    Internal,
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e.status {
            StatusCode::UNAUTHORIZED => PageError::SignIn,
            StatusCode::NOT_FOUND => PageError::NotFound,
            StatusCode::FORBIDDEN => PageError::Forbidden(e.message),
            StatusCode::BAD_REQUEST => PageError::Bad(match e.field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message,
            }),
            StatusCode::TOO_MANY_REQUESTS => PageError::Limited(e.retry_after.unwrap_or(1)),
            _ => PageError::Internal,
        }
    }
}

impl From<zt_store::StoreError> for PageError {
    fn from(e: zt_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

pub type PageResult<T> = Result<T, PageError>;

/// The request facts every page handler needs.
pub struct Req {
    pub headers: HeaderMap,
    pub uri: Uri,
}

impl Req {
    pub fn fragment(&self) -> bool {
        self.headers.contains_key(FRAGMENT_HEADER)
    }

    /// Where to come back to after signing in.
    fn here(&self) -> String {
        self.uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into())
    }

    /// The page for an error: sign-in redirect, or a page that says what went wrong.
    pub fn error(&self, e: PageError) -> Response {
        let fragment = self.fragment();
        let bad = matches!(e, PageError::Bad(_));
        let (status, title, message) = match e {
            PageError::SignIn if fragment => {
                return (StatusCode::UNAUTHORIZED, "sign in again").into_response()
            }
            PageError::SignIn => {
                let next: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("next", &self.here())
                    .finish();
                return Redirect::to(&format!("/signin?{next}")).into_response();
            }
            PageError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page, or it is not yours to see.".to_string(),
            ),
            PageError::Forbidden(m) => (StatusCode::FORBIDDEN, "Not allowed", m),
            PageError::Bad(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            PageError::Limited(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                format!("Too many requests for this company; try again in {s} s."),
            ),
            PageError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "The server could not answer; the error is in its log.".to_string(),
            ),
        };
        let resp = if fragment {
            (status, message).into_response()
        } else {
            let retry = bad.then(|| self.uri.path());
            (status, layout::error_page(title, &message, retry)).into_response()
        };
        layout::secure(resp)
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Req {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Req {
            headers: parts.headers.clone(),
            uri: parts.uri.clone(),
        })
    }
}

/// The query string as name → value (the last one wins); a page's filters are read from it
/// and written back into its links.
pub type Params = Query<HashMap<String, String>>;

pub fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The query string parsed as the JSON API parses it (`T` is the API's query type), empty
/// values left out: a GET form sends its empty fields, which mean "any".
pub fn api_query<T: serde::de::DeserializeOwned>(req: &Req) -> PageResult<T> {
    let pairs = form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
        .filter(|(_, v)| !v.trim().is_empty());
    let kept = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let uri: Uri = format!("/?{kept}")
        .parse()
        .map_err(|_| PageError::Bad("the query string is malformed".into()))?;
    Query::<T>::try_from_uri(&uri)
        .map(|Query(v)| v)
        .map_err(|e| PageError::Bad(e.body_text()))
}

/// The viewer of a request: its session cookie's principal (pages take no bearer tokens: they
/// are for browsers).
pub async fn viewer(state: &AppState, req: &Req) -> PageResult<Viewer> {
    let session = auth::session_cookie(&req.headers).ok_or(PageError::SignIn)?;
    let token = auth::session_token(state, session)
        .await?
        .ok_or(PageError::SignIn)?;
    let principal = auth::principal_of_hash(state, token).await?;
    if matches!(
        principal,
        Principal::Agent { .. } | Principal::Enroll { .. }
    ) {
        return Err(PageError::SignIn);
    }
    state.limits.check(&principal).await?;
    Ok(Viewer {
        principal,
        csrf: auth::csrf_token(session),
    })
}

/// The viewer and the company of a company page (404 for a company not theirs).
pub async fn company_ctx(state: &AppState, req: &Req, company_id: &str) -> PageResult<Ctx> {
    let viewer = viewer(state, req).await?;
    let id = auth::company_access(state, &viewer.principal, company_id).await?;
    let company = state
        .store
        .get_company(id)
        .await?
        .ok_or(PageError::NotFound)?;
    let fragment = req.fragment();
    let companies = if viewer.is_operator() && !fragment {
        state.store.list_companies().await?
    } else {
        Vec::new()
    };
    Ok(Ctx {
        viewer,
        company,
        companies,
        fragment,
    })
}

/// `/`: the viewer's start page.
async fn home(State(state): State<AppState>, req: Req) -> Response {
    match viewer(&state, &req).await {
        Ok(v) => match v.principal {
            Principal::User { company_id, .. } => {
                Redirect::to(&format!("/c/{company_id}")).into_response()
            }
            _ => Redirect::to("/operator").into_response(),
        },
        Err(e) => req.error(e),
    }
}

/// The operator's company switcher (a plain GET form): to that company's page of the same
/// view.
async fn switch(State(state): State<AppState>, req: Req, Query(params): Params) -> Response {
    let result = async {
        let v = viewer(&state, &req).await?;
        let company =
            param(&params, "company").ok_or(PageError::Bad("company: choose a company".into()))?;
        let id = auth::company_access(&state, &v.principal, company).await?;
        let view = match param(&params, "view") {
            Some(v @ ("hosts" | "software" | "vulnerabilities" | "findings" | "add-hosts")) => {
                format!("/{v}")
            }
            _ => String::new(),
        };
        Ok::<_, PageError>(Redirect::to(&format!("/c/{id}{view}")).into_response())
    }
    .await;
    result.unwrap_or_else(|e| req.error(e))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn icon() -> Response {
    asset("image/svg+xml", ICON)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Percent-encodes one path segment (a vulnerability id may hold any character).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs, empty values left out (`?` included when not empty).
pub fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
            any = true;
        }
    }
    if any {
        format!("?{}", s.finish())
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_queries_are_encoded() {
        assert_eq!(segment("GHSA-j8r2-6x86-q33q"), "GHSA-j8r2-6x86-q33q");
        assert_eq!(segment("a/b c?"), "a%2Fb%20c%3F");
        assert_eq!(query([("q", "a b&c"), ("x", "")]), "?q=a+b%26c");
        assert_eq!(query([("x", "")]), "");
    }
}
