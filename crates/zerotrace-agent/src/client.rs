//! The HTTP contract with the server (DESIGN.md): `POST /api/v1/enroll` and
//! `POST /api/v1/inventory`, and what each status means for the agent.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use zt_inventory::OsInfo;

use crate::backoff::parse_retry_after;

/// Largest response body read (error messages and small JSON answers only).
const MAX_RESPONSE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct EnrollRequest {
    pub enroll_secret: String,
    pub hostname: String,
    pub os: OsInfo,
    pub arch: String,
    pub agent_version: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EnrollResponse {
    pub agent_id: String,
    pub agent_token: String,
    #[serde(default)]
    pub report_interval_s: Option<u64>,
}

/// What the server made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<T> {
    /// 2xx.
    Done(T),
    /// Not now (connection failure, 429, 503, other 5xx, 408): try again later, after
    /// `retry_after` when the server said so.
    Retry {
        retry_after: Option<Duration>,
        reason: String,
    },
    /// 401/403: the token (or enroll secret) is not accepted.
    Unauthorized(String),
    /// Any other 4xx (400 invalid, 413 too large): sending the same bytes again cannot help.
    Rejected { status: u16, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub status: u16,
    pub report_id: Option<String>,
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    /// A client for the server at `base` (`https://zerotrace.example.com`), trusting the
    /// certificates in `ca_cert` (PEM) instead of the built-in roots when given.
    pub fn new(base: &str, ca_cert: Option<&Path>) -> anyhow::Result<Client> {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(format!("zerotrace-agent/{}", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            let certs = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
            if certs.is_empty() {
                anyhow::bail!("{} holds no certificate", path.display());
            }
            config = config.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        Ok(Client {
            agent: config.build().new_agent(),
            base: base.trim_end_matches('/').to_string(),
        })
    }

    pub fn enroll(&self, request: &EnrollRequest) -> Outcome<EnrollResponse> {
        let body = match serde_json::to_vec(request) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Rejected {
                    status: 0,
                    message: e.to_string(),
                }
            }
        };
        let response = self
            .agent
            .post(format!("{}/api/v1/enroll", self.base))
            .header("Content-Type", "application/json")
            .send(&body[..]);
        classify(response, |status, body| {
            serde_json::from_slice::<EnrollResponse>(body).map_err(|e| {
                format!("the server answered {status} with an unreadable enrollment: {e}")
            })
        })
    }

    /// Sends one gzip-encoded InventoryReport.
    pub fn send_inventory(&self, token: &str, gzip_body: &[u8]) -> Outcome<Accepted> {
        let response = self
            .agent
            .post(format!("{}/api/v1/inventory", self.base))
            .header("Content-Type", "application/json")
            .header("Content-Encoding", "gzip")
            .header("Authorization", format!("Bearer {token}"))
            .send(gzip_body);
        classify(response, |status, body| {
            #[derive(Deserialize)]
            struct Answer {
                report_id: Option<String>,
            }
            let report_id = serde_json::from_slice::<Answer>(body)
                .ok()
                .and_then(|a| a.report_id);
            Ok(Accepted { status, report_id })
        })
    }
}

fn classify<T>(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    on_success: impl FnOnce(u16, &[u8]) -> Result<T, String>,
) -> Outcome<T> {
    let mut response = match response {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry {
                retry_after: None,
                reason: format!("cannot reach the server: {e}"),
            }
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    let read = response
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut body);
    if let Err(e) = read {
        if (200..300).contains(&status) {
            return Outcome::Retry {
                retry_after,
                reason: format!("the answer ({status}) broke off: {e}"),
            };
        }
    }
    let message = || error_message(status, &body);
    match status {
        200..=299 => match on_success(status, &body) {
            Ok(v) => Outcome::Done(v),
            Err(reason) => Outcome::Retry {
                retry_after,
                reason,
            },
        },
        401 | 403 => Outcome::Unauthorized(message()),
        408 | 425 | 429 | 500..=599 => Outcome::Retry {
            retry_after,
            reason: message(),
        },
        _ => Outcome::Rejected {
            status,
            message: message(),
        },
    }
}

/// `{"error":{"code","message"}}` as DESIGN.md fixes it, or the start of whatever came back.
fn error_message(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) => format!("HTTP {status} {}: {}", e.error.code, e.error.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let short: String = text.chars().take(200).collect();
            format!("HTTP {status}: {}", short.trim())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{TestServer, SECRET};

    fn enroll_request(secret: &str) -> EnrollRequest {
        EnrollRequest {
            enroll_secret: secret.into(),
            hostname: "web-1".into(),
            os: OsInfo {
                id: "debian".into(),
                version_id: "12".into(),
                name: String::new(),
            },
            arch: "x86_64".into(),
            agent_version: "0.1.0".into(),
        }
    }

    fn body() -> Vec<u8> {
        let report = crate::report::build_report(
            &zt_collect::Collection {
                os: OsInfo {
                    id: "debian".into(),
                    version_id: "12".into(),
                    name: String::new(),
                },
                apps: vec![zt_inventory::App::new(
                    "bash",
                    "5.2",
                    zt_inventory::AppSource::Dpkg,
                )],
                ..Default::default()
            },
            &[],
        );
        crate::report::gzip_json(&report).unwrap()
    }

    #[test]
    fn each_status_means_what_the_contract_says() {
        let server = TestServer::start();
        let client = Client::new(&server.url(), None).unwrap();
        assert!(matches!(
            client.enroll(&enroll_request("wrong")),
            Outcome::Unauthorized(m) if m.contains("bad enroll secret")
        ));
        let Outcome::Done(enrolled) = client.enroll(&enroll_request(SECRET)) else {
            panic!("enroll failed");
        };
        assert_eq!(enrolled.report_interval_s, Some(3600));
        let token = enrolled.agent_token;

        server.script(&[
            (429, Some("7")),
            (503, Some("2")),
            (500, None),
            (413, None),
            (400, None),
        ]);
        let body = body();
        assert_eq!(
            client.send_inventory(&token, &body),
            Outcome::Retry {
                retry_after: Some(Duration::from_secs(7)),
                reason: "HTTP 429 scripted: scripted failure".into()
            }
        );
        assert!(matches!(
            client.send_inventory(&token, &body),
            Outcome::Retry { retry_after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        assert!(matches!(
            client.send_inventory(&token, &body),
            Outcome::Retry {
                retry_after: None,
                ..
            }
        ));
        assert!(matches!(
            client.send_inventory(&token, &body),
            Outcome::Rejected { status: 413, .. }
        ));
        assert!(matches!(
            client.send_inventory(&token, &body),
            Outcome::Rejected { status: 400, .. }
        ));
        let Outcome::Done(first) = client.send_inventory(&token, &body) else {
            panic!("not accepted");
        };
        assert_eq!(first.status, 202);
        assert!(first.report_id.is_some());
        let Outcome::Done(again) = client.send_inventory(&token, &body) else {
            panic!("resend not accepted");
        };
        assert_eq!((again.status, again.report_id), (200, first.report_id));
        assert_eq!(server.stored_count(), 1);
        assert!(matches!(
            client.send_inventory("not-a-token", &body),
            Outcome::Unauthorized(_)
        ));
        // A body that is not gzip is refused for good, with the server's message.
        assert!(matches!(
            client.send_inventory(&token, b"{}"),
            Outcome::Rejected { status: 400, message } if message.contains("bad gzip")
        ));
    }

    #[test]
    fn connection_refused_is_retryable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = Client::new(&format!("http://{addr}"), None).unwrap();
        assert!(matches!(
            client.send_inventory("t", b"x"),
            Outcome::Retry { retry_after: None, reason } if reason.contains("cannot reach")
        ));
        assert!(matches!(
            client.enroll(&enroll_request(SECRET)),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn bad_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate").unwrap();
        let e = Client::new("https://x", Some(&p)).err().unwrap();
        assert!(e.to_string().contains("no certificate"), "{e}");
        assert!(Client::new("https://x", Some(&dir.path().join("missing.pem"))).is_err());
    }
}
