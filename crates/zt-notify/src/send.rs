//! Delivering one message to one destination, once: the caller (the server's dispatcher)
//! decides about retries from the [`Attempt`]. Every attempt has a deadline
//! ([`SenderConfig::timeout`]), redirects are not followed, and only the first
//! [`EXCERPT_BYTES`] of a receiver's answer are kept.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lettre::message::{header::ContentType, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::guard::{parse_url, AddressPolicy, GuardedResolver};
use crate::message::{Destination, DestinationKind, Message};
use crate::render;

/// The most of a receiver's answer an attempt keeps.
pub const EXCERPT_BYTES: usize = 512;

#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub policy: AddressPolicy,
    /// Deadline of one attempt (connect, send, answer).
    pub timeout: Duration,
    /// `smtp://host:port` (STARTTLS when offered; `?tls=required` insists), `smtps://…`
    /// (TLS from the start); with `user:password@` for authentication.
    pub smtp_url: Option<String>,
    pub smtp_from: String,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub ok: bool,
    /// The HTTP status (or SMTP reply code) when the receiver answered.
    pub status: Option<u16>,
    /// The start of the receiver's answer, at most [`EXCERPT_BYTES`].
    pub excerpt: Option<String>,
    pub error: Option<String>,
    /// False when trying again cannot help (a refused destination, a 4xx other than 408/429).
    pub retryable: bool,
}

impl Attempt {
    fn failed(error: impl ToString, retryable: bool) -> Attempt {
        Attempt {
            ok: false,
            status: None,
            excerpt: None,
            error: Some(error.to_string()),
            retryable,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Sender {
    http: reqwest::Client,
    config: Arc<SenderConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl Sender {
    pub fn new(config: SenderConfig) -> Result<Sender, SenderError> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: config.policy,
            }))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!(
                "ZeroTrace-Notifications/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()?;
        Ok(Sender {
            http,
            config: Arc::new(config),
        })
    }

    pub fn config(&self) -> &SenderConfig {
        &self.config
    }

    /// One attempt to deliver `m` to `dest`.
    pub async fn send(&self, m: &Message, dest: &Destination) -> Attempt {
        match dest.kind {
            DestinationKind::Webhook => {
                let body = render::webhook_body(m);
                let mut headers = vec![
                    ("ZeroTrace-Event", m.event.as_str().to_string()),
                    ("ZeroTrace-Delivery", m.id.to_string()),
                ];
                if let Some(secret) = dest.secret.as_deref().filter(|s| !s.is_empty()) {
                    let sig = render::signature(secret, Utc::now().timestamp(), &body);
                    headers.push(("ZeroTrace-Signature", sig));
                }
                self.post(dest, body, headers).await
            }
            DestinationKind::Slack => {
                let body = serde_json::to_vec(&render::slack(m)).unwrap_or_default();
                self.post(dest, body, vec![]).await
            }
            DestinationKind::Teams => {
                let body = serde_json::to_vec(&render::teams(m)).unwrap_or_default();
                self.post(dest, body, vec![]).await
            }
            DestinationKind::Email => self.mail(m, dest).await,
        }
    }

    async fn post(
        &self,
        dest: &Destination,
        body: Vec<u8>,
        headers: Vec<(&'static str, String)>,
    ) -> Attempt {
        let Some(raw) = dest.url.as_deref() else {
            return Attempt::failed("the destination has no URL", false);
        };
        let url = match parse_url(raw) {
            Ok(u) => u,
            Err(e) => return Attempt::failed(e, false),
        };
        // IP literals never reach the resolver: check them here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            if let Err(e) = self.config.policy.permits(ip) {
                return Attempt::failed(e, false);
            }
        }
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Attempt::failed(error_chain(&e), true),
        };
        let status = resp.status();
        let mut excerpt = Vec::new();
        let mut read_error = None;
        while excerpt.len() < EXCERPT_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => {
                    read_error = Some(error_chain(&e));
                    break;
                }
            }
        }
        let excerpt = cut_excerpt(&excerpt);
        let ok = status.is_success();
        Attempt {
            ok,
            status: Some(status.as_u16()),
            excerpt: (!excerpt.is_empty()).then_some(excerpt),
            error: if ok {
                None
            } else {
                Some(read_error.unwrap_or_else(|| format!("the receiver answered {status}")))
            },
            retryable: !ok
                && (status.is_server_error()
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS),
        }
    }

    async fn mail(&self, m: &Message, dest: &Destination) -> Attempt {
        let Some(smtp) = self.config.smtp_url.as_deref() else {
            return Attempt::failed(
                "no SMTP server is configured (zerotrace server --smtp-url)",
                true,
            );
        };
        let from: Mailbox = match self.config.smtp_from.parse() {
            Ok(f) => f,
            Err(e) => return Attempt::failed(format!("--smtp-from: {e}"), false),
        };
        let (subject, text) = render::email(m);
        let mut builder = lettre::Message::builder()
            .from(from)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for to in &dest.to {
            match to.parse::<Mailbox>() {
                Ok(mb) => builder = builder.to(mb),
                Err(e) => return Attempt::failed(format!("recipient {to}: {e}"), false),
            }
        }
        let email = match builder.body(text) {
            Ok(e) => e,
            Err(e) => return Attempt::failed(e, false),
        };
        let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp) {
            Ok(t) => t.timeout(Some(self.config.timeout)).build(),
            Err(e) => return Attempt::failed(format!("--smtp-url: {e}"), false),
        };
        let sending = tokio::time::timeout(self.config.timeout, transport.send(email)).await;
        match sending {
            Ok(Ok(resp)) => Attempt {
                ok: true,
                status: resp.code().to_string().parse().ok(),
                excerpt: Some(cut_excerpt(
                    resp.message().collect::<Vec<_>>().join(" ").as_bytes(),
                )),
                error: None,
                retryable: false,
            },
            Ok(Err(e)) => Attempt {
                ok: false,
                status: e.status().and_then(|c| c.to_string().parse().ok()),
                excerpt: None,
                error: Some(error_chain(&e)),
                retryable: !e.is_permanent(),
            },
            Err(_) => Attempt::failed(
                format!(
                    "the SMTP server did not answer within {:?}",
                    self.config.timeout
                ),
                true,
            ),
        }
    }
}

/// Whether `s` is a recipient: `user@domain`, or with a name, `Name <user@domain>`.
pub fn is_email_address(s: &str) -> bool {
    s.parse::<Mailbox>().is_ok()
}

/// At most [`EXCERPT_BYTES`] of an answer, as text cut at a character boundary.
fn cut_excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(EXCERPT_BYTES)]).into_owned();
    let mut end = text.len().min(EXCERPT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_stop_at_512_bytes_on_a_character() {
        let long = "é".repeat(400); // 800 bytes
        let cut = cut_excerpt(long.as_bytes());
        assert!(cut.len() <= EXCERPT_BYTES);
        assert!(cut.chars().all(|c| c == 'é' || c == '\u{fffd}'));
        assert_eq!(cut_excerpt(b"ok"), "ok");
    }
}
