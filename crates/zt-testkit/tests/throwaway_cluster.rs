//! The private-cluster fallback really works: a child run of this test binary, forced onto it,
//! creates a database in a cluster of its own; after the child exits, the cluster is stopped
//! and its directory is gone.

use std::process::Command;

/// The child's part: only runs when the parent asks for it.
#[test]
fn child_uses_a_private_cluster() {
    if std::env::var_os("ZT_THROWAWAY_CHILD").is_none() {
        return;
    }
    let db = zt_testkit::TestDatabase::create();
    assert!(zt_testkit::TestDatabase::is_throwaway());
    let dir = zt_testkit::postgres::server()
        .unwrap()
        .cluster_dir()
        .unwrap()
        .to_path_buf();
    assert!(dir.join("data/postmaster.pid").exists());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let one: i32 = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(one, 1);
    println!("cluster-dir={}", dir.display());
}

#[test]
fn private_cluster_starts_when_forced_and_is_removed_at_exit() {
    if std::env::var_os("ZT_THROWAWAY_CHILD").is_some() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_uses_a_private_cluster",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("ZT_THROWAWAY_CHILD", "1")
        .env("ZEROTRACE_TEST_PG_THROWAWAY", "1")
        .env_remove("ZEROTRACE_TEST_PG_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = stdout
        .lines()
        .find_map(|l| l.split_once("cluster-dir=").map(|(_, d)| d.trim()))
        .unwrap_or_else(|| panic!("the child printed no cluster dir:\n{stdout}"));
    assert!(
        !std::path::Path::new(dir).exists(),
        "{dir} is still there after the child exited"
    );
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&ps.stdout).contains(dir),
        "a postgres of {dir} still runs"
    );
}
