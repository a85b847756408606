//! `/c/{company_id}/add-hosts`: how to put the agent on a host and enroll it into this
//! company (company admins and the operator). The enroll secret is shown only when the company
//! is created, so the commands carry a placeholder and the page says where the secret comes
//! from.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::Response;
use maud::html;

use super::layout::{self, View};
use super::{company_ctx, PageError, PageResult, Req};
use crate::state::AppState;

/// The server's address as the browser reached it (what hosts will most likely reach too).
fn server_url(state: &AppState, req: &Req) -> String {
    let host = req
        .headers
        .get("x-forwarded-host")
        .or_else(|| req.headers.get(header::HOST))
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        })
        .unwrap_or("zerotrace.example.com");
    let https = state.config.secure_cookies
        || req
            .headers
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes() == b"https");
    format!("{}://{host}", if https { "https" } else { "http" })
}

async fn render(state: &AppState, req: &Req, company_id: &str) -> PageResult<Response> {
    let ctx = company_ctx(state, req, company_id).await?;
    if !ctx.viewer.is_admin() {
        return Err(PageError::Forbidden(
            "Adding hosts is for company admins and the operator.".into(),
        ));
    }
    let server = server_url(state, req);
    let once = format!(
        "zerotrace-agent --server {server} --enroll-secret '<enroll secret of {}>' --once",
        ctx.company.name.replace('\'', "")
    );
    let env = format!(
        "ZEROTRACE_SERVER={server}\nZEROTRACE_ENROLL_SECRET=<enroll secret of {}>",
        ctx.company.name
    );
    let content = html! {
        h1 { "Add hosts to " (ctx.company.name) }
        p {
            "Each host runs " code { "zerotrace-agent" } ", a small program that lists the software "
            "installed there and reports it to this server. It enrolls once with the company's "
            strong { "enroll secret" } " and from then on uses its own identity."
        }
        section .card aria-labelledby="step-build" {
            h2 #step-build { "1. Get the agent" }
            p { "Build it from the ZeroTrace repository (one binary, no dependencies on the host):" }
            pre { code { "cargo build -p zerotrace-agent --profile release-agent\n# → target/release-agent/zerotrace-agent" } }
            p { "See what it would report, without sending anything:" }
            pre { code { "zerotrace-agent inventory" } }
        }
        section .card aria-labelledby="step-try" {
            h2 #step-try { "2. Enroll and report once" }
            pre { code { (once) } }
            p .muted { "The first report shows up on the " a href=(ctx.url("/hosts")) { "Hosts" } " page within seconds of its processing." }
        }
        section .card aria-labelledby="step-service" {
            h2 #step-service { "3. Keep it reporting (systemd)" }
            pre { code { "install -m 0755 zerotrace-agent /usr/bin/\ninstall -d -m 0700 /etc/zerotrace-agent\ncat > /etc/zerotrace-agent/agent.env <<'ENV'\n" (env) "\nENV\nchmod 0600 /etc/zerotrace-agent/agent.env\ninstall -m 0644 deploy/systemd/zerotrace-agent.service /etc/systemd/system/\nsystemctl daemon-reload\nsystemctl enable --now zerotrace-agent" } }
            p {
                "The README's section "
                a href=(concat!(env!("CARGO_PKG_REPOSITORY"), "#installing-the-agent")) rel="noopener noreferrer" { "Installing the agent" }
                " explains the options: report interval, spool when offline, a private CA ("
                code { "ZEROTRACE_CA_CERT" } "), " code { "--root" } " for mounted images."
            }
        }
        section .card aria-labelledby="step-secret" {
            h2 #step-secret { "The enroll secret" }
            p {
                "The secret (" code { "zte_…" } ") is shown once, when the operator creates the company ("
                code { "zerotrace admin company create NAME" } " or " code { "POST /api/v1/companies" }
                "); the server keeps only its hash and cannot show it again. Keep it where you keep other "
                "deployment secrets, and ask your operator if it is lost."
            }
            p {
                "Hosts need it only until they have enrolled: each then keeps its own identity in "
                code { "/var/lib/zerotrace-agent/identity.json" } ". A new secret therefore affects only hosts "
                "enrolled after it."
            }
            p .muted { "Company id: " code { (ctx.company.id) } }
        }
    };
    Ok(layout::page(&ctx, View::AddHosts, "Add hosts", content))
}

pub async fn page(
    State(state): State<AppState>,
    req: Req,
    Path(company_id): Path<String>,
) -> Response {
    render(&state, &req, &company_id)
        .await
        .unwrap_or_else(|e| req.error(e))
}
