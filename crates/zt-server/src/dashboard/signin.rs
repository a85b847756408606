//! `/signin`: trade a token for a session. The script posts the token to `POST
//! /api/v1/session` and goes on to where the viewer was headed; the token stays in the form
//! field only (never in storage, never in a URL).

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::layout::bare_page;
use super::{param, viewer, Params, Req};
use crate::state::AppState;

/// Where to go after signing in: a path of this site only (never another origin).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

pub async fn page(State(state): State<AppState>, req: Req, params: Params) -> Response {
    let next = safe_next(param(&params, "next")).to_string();
    // Signed in already: straight on.
    if viewer(&state, &req).await.is_ok() {
        return Redirect::to(&next).into_response();
    }
    bare_page(
        "Sign in",
        html! {
            section .signin {
                h1 { "Sign in" }
                p {
                    "Paste an operator token (" code { "zto_…" } ") or a company user token ("
                    code { "ztu_…" } "). The browser keeps only a session cookie that scripts cannot read; "
                    "the token itself is not stored."
                }
                form #signin-form method="post" action="/api/v1/session" data-next=(next) {
                    div #error .banner role="alert" {}
                    label for="token" { "Token" }
                    input #token name="token" type="password" autocomplete="off" spellcheck="false"
                        required autofocus;
                    button type="submit" { "Sign in" }
                }
                @if state.oidc.is_some() {
                    p .sso {
                        a #sso .button href=(format!("/signin/sso{}", if next == "/" { String::new() } else { format!("?next={}", form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()) })) {
                            "Sign in with SSO"
                        }
                    }
                }
                p .muted {
                    "No token? The operator token is printed when the server first starts (or set with "
                    code { "ZEROTRACE_ADMIN_TOKEN" } "); company tokens come from "
                    code { "zerotrace admin" } " or " code { "POST /api/v1/companies/{id}/tokens" } "."
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(safe_next(Some("/c/1/hosts?q=a")), "/c/1/hosts?q=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
