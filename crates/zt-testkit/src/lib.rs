//! Test support shared by the workspace's tests: where the shared public data lives,
//! and (added by the storage work) throwaway databases and running the real binaries.

use std::path::PathBuf;

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    // This crate lives at <root>/crates/zt-testkit.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root exists")
}

/// `../shared/data` beside the repository root (override with `ZEROTRACE_SHARED_DATA`).
/// Panics with a clear message when it is missing: tests that need real data must not
/// silently pass without it.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("ZEROTRACE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    assert!(
        dir.is_dir(),
        "the shared test data is missing: expected it at {} (set ZEROTRACE_SHARED_DATA)",
        dir.display()
    );
    dir
}

/// A file or folder inside the shared data, e.g. `shared_path("osv/rustsec/osv-json")`.
pub fn shared_path(rel: &str) -> PathBuf {
    let p = shared_data().join(rel);
    assert!(p.exists(), "shared test data {} is missing", p.display());
    p
}
