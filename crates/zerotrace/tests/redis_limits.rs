//! `--redis-url`: API replicas share their rate-limit buckets through a real Redis (see
//! zt_testkit::redis: the server at 127.0.0.1:6379 when there; keys under a prefix of this
//! test's own, removed at the end); a replica whose Redis is unreachable keeps serving and
//! limits on its own.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use zt_testkit::{ServerProcess, TestDatabase};

mod common;
use common::{bin, create_company, enroll};

const ADMIN: &str = "zto_redis-test-operator-token-0123456789abcdef";
const LIMIT: usize = 6;

fn start(
    db: &TestDatabase,
    dir: &Path,
    name: &str,
    redis_url: &str,
    prefix: &str,
) -> ServerProcess {
    let limit = LIMIT.to_string();
    ServerProcess::start(
        bin(),
        &[
            "--data-dir",
            dir.to_str().unwrap(),
            "--database-url",
            &db.url,
            "--partitions",
            "2",
            "server",
            "--role",
            "api",
            "--listen",
            "127.0.0.1:0",
            "--rate-agent",
            &limit,
            "--redis-url",
            redis_url,
            "--redis-prefix",
            prefix,
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN), ("ZEROTRACE_LOG", "info")],
        dir,
        name,
    )
    .expect("server starts")
}

/// Removes this test's keys whatever happens to the test.
struct Keys(String);

impl Drop for Keys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(zt_testkit::redis::redis_url()) else {
            return;
        };
        let Ok(mut conn) = client.get_connection() else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

/// A new company with one enrolled agent; returns the agent's token.
async fn new_agent(http: &reqwest::Client, url: &str) -> String {
    let name = format!("c-{}", uuid::Uuid::new_v4());
    let company = create_company(http, url, ADMIN, &name).await;
    enroll(http, url, company["enroll_secret"].as_str().unwrap(), "h").await
}

/// Agent requests alternating between `urls` until one answers 429; how many passed.
async fn requests_until_limited(http: &reqwest::Client, urls: &[&str], token: &str) -> usize {
    for i in 0..4 * LIMIT {
        let r = http
            .get(format!(
                "{}/api/v1/reports/{}",
                urls[i % urls.len()],
                uuid::Uuid::new_v4()
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().contains_key("retry-after"));
            return i;
        }
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    panic!("never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_rate_limits_through_redis_and_fall_back_without_it() {
    let db = TestDatabase::create();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("zt-test-{}:", uuid::Uuid::new_v4().simple());
    let _cleanup = Keys(prefix.clone());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    let redis_url = zt_testkit::redis::redis_url();
    let a = start(&db, dir.path(), "api-a", &redis_url, &prefix);
    let b = start(&db, dir.path(), "api-b", &redis_url, &prefix);
    let token = new_agent(&http, &a.url).await;
    // One bucket for both replicas: the limit holds across them, not per process.
    assert_eq!(
        requests_until_limited(&http, &[&a.url, &b.url], &token).await,
        LIMIT
    );
    // The buckets (and the shared credential cache) are in Redis under our prefix.
    let client = redis::Client::open(redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{prefix}rl:agent:"))),
        "{keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.starts_with(&format!("{prefix}tok:"))),
        "{keys:?}"
    );

    // Without Redis (nothing listens on port 1) a replica still serves and limits on its own.
    let alone = start(&db, dir.path(), "api-alone", "redis://127.0.0.1:1", &prefix);
    let token = new_agent(&http, &alone.url).await;
    assert_eq!(
        requests_until_limited(&http, &[&alone.url], &token).await,
        LIMIT
    );
    assert!(
        alone.stderr().contains("Redis is unreachable"),
        "{}",
        alone.stderr()
    );
}
