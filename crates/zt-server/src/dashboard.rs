//! The first dashboard page: sign in with a token, pick a company, see its summary and its
//! findings. The page is rendered here; a small script of our own fills it from the JSON API
//! with the token kept in sessionStorage (no third-party code).

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

const SCRIPT: &str = include_str!("../assets/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard.css");

fn severity_options() -> Markup {
    html! {
        option value="" { "any severity" }
        @for s in ["critical", "high", "medium", "low", "unknown"] {
            option value=(s) { (s) }
        }
    }
}

pub async fn page() -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "ZeroTrace" }
                link rel="stylesheet" href="/assets/dashboard.css";
            }
            body {
                header {
                    h1 { "ZeroTrace" }
                    span #who {}
                    button #signout hidden { "Sign out" }
                }
                main {
                    section #signin {
                        h2 { "Sign in" }
                        p { "Paste an operator or company token. It stays in this browser tab only." }
                        form #signin-form {
                            input #token type="password" autocomplete="off" placeholder="zto_… or ztu_…" required;
                            button type="submit" { "Sign in" }
                        }
                        p #signin-error .error role="alert" {}
                    }
                    section #app hidden {
                        div .toolbar {
                            label for="company" { "Company " }
                            select #company {}
                        }
                        div #summary .cards {}
                        h2 { "Findings" }
                        form #filters .toolbar {
                            select #f-severity { (severity_options()) }
                            select #f-status {
                                option value="open" { "open" }
                                option value="resolved" { "resolved" }
                                option value="all" { "all" }
                            }
                            label { input #f-kev type="checkbox"; " KEV only" }
                            label { input #f-fixable type="checkbox"; " fixable only" }
                            input #f-q type="search" placeholder="package, CVE or host";
                            button type="submit" { "Filter" }
                            button #export type="button" { "Export CSV" }
                        }
                        table #findings {
                            thead {
                                tr {
                                    th { "Severity" } th { "Vulnerability" } th { "Package" }
                                    th { "Host" } th { "Fixed in" } th { "KEV" } th { "EPSS" } th { "First seen" }
                                }
                            }
                            tbody {}
                        }
                        p #findings-empty hidden { "No findings match." }
                        button #more hidden { "More" }
                    }
                }
                script src="/assets/dashboard.js" {}
            }
        }
    };
    Html(markup.into_string())
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}
