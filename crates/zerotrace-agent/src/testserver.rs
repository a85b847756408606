//! A small server implementing the agent's side of the HTTP contract (DESIGN.md), for the
//! client and loop tests: enrollment with a secret, bearer tokens, gzip bodies validated with
//! `zt_inventory::parse_report`, idempotent report ids, and scripted failures (429/503 with
//! Retry-After, 500, 413, 401). It can be stopped and restarted on the same port to play an
//! outage. The end-to-end test against the real `zerotrace server` is in tests/.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

pub const SECRET: &str = "s3cret";

/// A canned answer for the next inventory request.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub retry_after: Option<String>,
}

#[derive(Debug, Default)]
pub struct Shared {
    pub tokens: Vec<String>,
    pub enrollments: usize,
    pub script: VecDeque<Scripted>,
    /// Every inventory request with a decodable report: (report id, when, status answered).
    pub attempts: Vec<(uuid::Uuid, Instant, u16)>,
    /// Report id -> how many times it was stored (must stay 1).
    pub stored: HashMap<uuid::Uuid, usize>,
    pub stored_order: Vec<uuid::Uuid>,
    pub bad_requests: Vec<String>,
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub shared: Arc<Mutex<Shared>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self::serve(listener, Arc::default())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving (connections are refused until [`TestServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Serves again on the same port with the same state.
    pub fn restart(&mut self) {
        self.stop();
        let listener = std::net::TcpListener::bind(self.addr).unwrap();
        let shared = self.shared.clone();
        *self = Self::serve(listener, shared);
    }

    fn serve(listener: std::net::TcpListener, shared: Arc<Mutex<Shared>>) -> TestServer {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = Router::new()
                    .route("/api/v1/enroll", post(enroll))
                    .route("/api/v1/inventory", post(inventory))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestServer {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn script(&self, answers: &[(u16, Option<&str>)]) {
        let mut s = self.shared.lock().unwrap();
        for (status, ra) in answers {
            s.script.push_back(Scripted {
                status: *status,
                retry_after: ra.map(str::to_string),
            });
        }
    }

    pub fn revoke_tokens(&self) {
        self.shared.lock().unwrap().tokens.clear();
    }

    pub fn stored_count(&self) -> usize {
        self.shared.lock().unwrap().stored.len()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn enroll(State(state): State<Arc<Mutex<Shared>>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid", "not JSON");
    };
    if v["enroll_secret"] != SECRET {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad enroll secret",
        );
    }
    for field in ["hostname", "arch", "agent_version"] {
        if !v[field].is_string() {
            return error(StatusCode::BAD_REQUEST, "invalid", field);
        }
    }
    if !v["os"]["id"].is_string() {
        return error(StatusCode::BAD_REQUEST, "invalid", "os.id");
    }
    let mut s = state.lock().unwrap();
    s.enrollments += 1;
    let token = format!("tok-{}", s.enrollments);
    s.tokens.push(token.clone());
    (
        StatusCode::CREATED,
        Json(json!({"agent_id": format!("agent-{}", s.enrollments), "agent_token": token, "report_interval_s": 3600})),
    )
        .into_response()
}

async fn inventory(
    State(state): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_string();
    let mut s = state.lock().unwrap();
    if !s.tokens.contains(&token) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
    }
    if headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        != Some("gzip")
    {
        s.bad_requests.push("not gzip".into());
        return error(StatusCode::BAD_REQUEST, "invalid", "expected gzip");
    }
    let mut json_bytes = Vec::new();
    if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut json_bytes) {
        s.bad_requests.push(e.to_string());
        return error(StatusCode::BAD_REQUEST, "invalid", "bad gzip");
    }
    let report = match zt_inventory::parse_report(&json_bytes) {
        Ok(r) => r,
        Err(e) => {
            s.bad_requests.push(e.to_string());
            return error(StatusCode::BAD_REQUEST, "invalid", &e.to_string());
        }
    };
    let id = report.report_id;
    if let Some(answer) = s.script.pop_front() {
        s.attempts.push((id, Instant::now(), answer.status));
        let status = StatusCode::from_u16(answer.status).unwrap();
        let mut resp = error(status, "scripted", "scripted failure");
        if let Some(ra) = answer.retry_after {
            resp.headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        return resp;
    }
    let first = !s.stored.contains_key(&id);
    if first {
        s.stored.insert(id, 1);
        s.stored_order.push(id);
    }
    let status = if first {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    s.attempts.push((id, Instant::now(), status.as_u16()));
    (status, Json(json!({"report_id": id}))).into_response()
}
