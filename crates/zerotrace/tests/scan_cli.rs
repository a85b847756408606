//! `zerotrace scan` end to end: `feeds import` of the real shared data into a data directory,
//! then scans of real SBOMs and inventories through the binary, in every output format, with
//! the exit codes users' pipelines rely on.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use zt_testkit::shared_path;

fn run(data_dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zerotrace"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("ZEROTRACE_DATABASE_URL")
        .env("ZEROTRACE_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run zerotrace");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().expect("wait for zerotrace")
}

/// A data directory holding the knowledge base of the shared OSV sets, NVD records, KEV and
/// EPSS, imported once for this test binary with the real `feeds import`.
fn knowledge_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let feeds: Vec<PathBuf> = [
            "osv/rustsec/osv-json",
            "osv/golang-vulndb/data/osv",
            "osv/pypa/vulns",
            "osv/debian-security-tracker/osv-like",
            "osv/alpine-secdb/json-2020",
            "osv/ubuntu",
            "osv/ghsa-sample",
            "nvd",
            "kev/known_exploited_vulnerabilities.json",
            "epss/epss-snapshot-2026-08-16.csv.gz",
        ]
        .iter()
        .map(|p| shared_path(p))
        .collect();
        let mut args = vec!["feeds".to_string(), "import".to_string()];
        args.extend(feeds.iter().map(|p| p.display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(dir.path(), &args, None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

fn scan(args: &[&str]) -> Output {
    let mut full = vec!["scan"];
    full.extend_from_slice(args);
    run(knowledge_dir(), &full, None)
}

fn stdout_json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn path(rel: &str) -> String {
    shared_path(rel).display().to_string()
}

/// (package name, version, vulnerability id) of every finding.
fn triples(report: &Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["package"]["name"].as_str().unwrap().to_string(),
                f["package"]["version"].as_str().unwrap().to_string(),
                f["vulnerability"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn json_report_of_a_real_python_sbom() {
    // cyclonedx-py's SBOM of a Debian 12 system Python. Checked by hand against pypa:
    // cryptography 38.0.4: PYSEC-2023-254 (= CVE-2023-49083, fixed 41.0.6) and PYSEC-2023-11
    // (= CVE-2023-23931, fixed 39.0.1); pip 23.0.1: PYSEC-2023-228 (fixed 23.3);
    // pygments 2.14.0: PYSEC-2023-117 (fixed 2.15.1).
    let out = scan(&[
        "--format",
        "json",
        &path("sboms/cyclonedx-py-system-python3.cdx.json"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    let mut got = triples(&report);
    got.sort();
    let want: Vec<(String, String, String)> = [
        ("cryptography", "38.0.4", "CVE-2023-23931"),
        ("cryptography", "38.0.4", "CVE-2023-49083"),
        ("pip", "23.0.1", "CVE-2023-5752"),
        ("pygments", "2.14.0", "CVE-2022-40896"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    // The DESIGN.md shape.
    let f = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["vulnerability"]["id"] == "CVE-2023-49083")
        .unwrap();
    assert_eq!(f["package"]["ecosystem"], "PyPI");
    assert_eq!(f["package"]["source"], "pypi");
    let v = &f["vulnerability"];
    assert_eq!(
        v["aliases"],
        serde_json::json!(["GHSA-jfhm-5ghh-2f97", "PYSEC-2023-254"])
    );
    assert_eq!(v["severity"], "high");
    assert_eq!(v["cvss"]["version"], "3.1");
    assert_eq!(v["cvss"]["score"], 7.5);
    assert!(v["cvss"]["vector"]
        .as_str()
        .unwrap()
        .starts_with("CVSS:3.1/"));
    assert_eq!(v["fixed_versions"], serde_json::json!(["41.0.6"]));
    assert_eq!(v["kev"], false);
    assert!(v["epss"].is_f64());
    assert!(v["summary"].as_str().unwrap().contains("cryptography"));
    assert_eq!(f["match"]["method"], "osv-range");
    assert_eq!(f["match"]["confidence"], "high");
    // Most severe first.
    assert_eq!(report["findings"][0]["vulnerability"]["severity"], "high");
}

#[test]
fn fail_on_sets_the_exit_code() {
    let sbom = path("sboms/cyclonedx-py-system-python3.cdx.json");
    // One high (CVE-2023-49083), no critical.
    assert_eq!(
        scan(&["--format", "json", "--fail-on", "high", &sbom])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        scan(&["--format", "json", "--fail-on", "HIGH", &sbom])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        scan(&["--format", "json", "--fail-on", "critical", &sbom])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        scan(&["--format", "json", "--fail-on", "unknown", &sbom])
            .status
            .code(),
        Some(1)
    );
    // A bad severity is a usage error, not a finding.
    let bad = scan(&["--fail-on", "urgent", &sbom]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("urgent"));
}

#[test]
fn informational_notices_do_not_fail_the_build() {
    // ansi_term 0.12.1: only RUSTSEC-2021-0139 (unmaintained).
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("Cargo.lock");
    std::fs::write(
        &lock,
        "version = 4\n\n[[package]]\nname = \"ansi_term\"\nversion = \"0.12.1\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
    )
    .unwrap();
    let out = scan(&[
        "--format",
        "json",
        "--fail-on",
        "unknown",
        lock.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report = stdout_json(&out);
    assert_eq!(
        triples(&report),
        [(
            "ansi_term".into(),
            "0.12.1".into(),
            "RUSTSEC-2021-0139".into()
        )]
    );
    assert_eq!(
        report["findings"][0]["vulnerability"]["informational"],
        true
    );
    let table = scan(&[lock.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("informational"), "{text}");
    assert!(
        text.contains("0 vulnerabilities in 0 of 1 packages; 1 informational notices"),
        "{text}"
    );
}

#[test]
fn trivy_sbom_findings_are_one_per_package_and_vulnerability() {
    let out = scan(&[
        "--format",
        "json",
        &path("sboms/trivy-legacy-rootfs.cdx.json"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    let got = triples(&report);
    let distinct: std::collections::BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(distinct.len(), got.len(), "duplicate findings");
    // GO-2025-4135 (golang.org/x/crypto: introduced 0, fixed 0.45.0) for the module at
    // v0.35.0; RUSTSEC and PYSEC findings are checked in zt-match's tests.
    assert!(distinct.contains(&(
        "golang.org/x/crypto".into(),
        "v0.35.0".into(),
        "CVE-2025-47914".into()
    )));
    assert!(distinct.contains(&(
        "setuptools".into(),
        "65.5.0".into(),
        "CVE-2022-40897".into()
    )));
    // No Debian package is judged by upstream data.
    for f in report["findings"].as_array().unwrap() {
        assert_ne!(f["package"]["source"], "dpkg", "{f}");
    }
}

#[test]
fn sarif_report() {
    let out = scan(&[
        "--format",
        "sarif",
        &path("sboms/cyclonedx-py-system-python3.cdx.json"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let sarif = stdout_json(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "zerotrace");
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let results = run["results"].as_array().unwrap();
    assert_eq!(rules.len(), 4);
    assert_eq!(results.len(), 4);
    for r in results {
        let index = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], r["ruleId"]);
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .ends_with("cyclonedx-py-system-python3.cdx.json")
        );
    }
    let high = rules.iter().find(|r| r["id"] == "CVE-2023-49083").unwrap();
    assert_eq!(high["properties"]["security-severity"], "7.5");
    assert_eq!(high["defaultConfiguration"]["level"], "error");
}

#[test]
fn cyclonedx_report() {
    let out = scan(&[
        "--format",
        "cyclonedx",
        &path("sboms/cyclonedx-py-system-python3.cdx.json"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let bom = stdout_json(&out);
    assert_eq!(bom["bomFormat"], "CycloneDX");
    let refs: std::collections::BTreeSet<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["bom-ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 29);
    let vulns = bom["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 4);
    for v in vulns {
        for a in v["affects"].as_array().unwrap() {
            assert!(refs.contains(a["ref"].as_str().unwrap()), "{a}");
        }
    }
}

#[test]
fn distro_override_for_an_apk_database() {
    // trivy's apk installed db does not say its release. Read as Alpine v3.9 (secdb: musl
    // fixed in 1.1.20-r5 → CVE-2019-14697 for musl 1.1.14-r10).
    let db = path("inventories/apk/trivy-apk.installed");
    let out = scan(&["--format", "json", "--distro", "alpine:3.9", &db]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout_json(&out);
    assert!(triples(&report).contains(&(
        "musl".into(),
        "1.1.14-r10".into(),
        "CVE-2019-14697".into()
    )));
    assert_eq!(report["findings"][0]["package"]["ecosystem"], "Alpine:v3.9");
    // Without it the release is unknown: a warning, and no release's records apply.
    let plain = run(knowledge_dir(), &["scan", "--format", "json", &db], None);
    assert_eq!(plain.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&plain.stderr).contains("--distro"));
    assert!(triples(&stdout_json(&plain)).is_empty());
    // A --distro that names nothing known is an error.
    assert_eq!(scan(&["--distro", "plan9", &db]).status.code(), Some(2));
}

#[test]
fn real_dpkg_status_and_stdin() {
    // The Debian 12.11 host: the release is guessed from package versions (base-files
    // 12.4+deb12u11) and only Debian:12 records apply; the shared data has none for these.
    let status = std::fs::read(shared_path("inventories/dpkg/debian-12.11-host.status")).unwrap();
    let out = run(
        knowledge_dir(),
        &["scan", "--format", "json", "--fail-on", "low", "-"],
        Some(&status),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(triples(&stdout_json(&out)).is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("guessed debian 12"));
}

#[test]
fn spdx_and_agent_report_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let spdx = dir.path().join("app.spdx.json");
    std::fs::write(
        &spdx,
        r#"{"spdxVersion":"SPDX-2.3","dataLicense":"CC0-1.0","SPDXID":"SPDXRef-DOCUMENT","name":"app","packages":[
        {"SPDXID":"SPDXRef-requests","name":"requests","versionInfo":"2.30.0","externalRefs":[
          {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:pypi/requests@2.30.0"}]}]}"#,
    )
    .unwrap();
    let out = scan(&["--format", "json", spdx.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // GHSA-j8r2-6x86-q33q / PYSEC-2023-74: one finding for CVE-2023-32681.
    let got = triples(&stdout_json(&out));
    assert_eq!(
        got.iter().filter(|t| t.2 == "CVE-2023-32681").count(),
        1,
        "{got:?}"
    );

    let report = dir.path().join("report.json");
    std::fs::write(
        &report,
        r#"{"report_id":"7d8a6b1e-2f0c-4c1e-9a55-0b7f1d3e2a10","collected_at":"2026-11-26T10:00:00Z",
        "host":{"hostname":"ws-1","os":{"id":"windows","version_id":"10.0.19045","name":"Windows 10"},"arch":"x86_64"},
        "apps":[{"name":"PuTTY release 0.80 (64-bit)","version":"0.80.0.0","source":"windows","vendor":"Simon Tatham"},
                {"name":"Google Chrome","version":"116.0.5845.141","source":"windows","vendor":"Google LLC"}]}"#,
    )
    .unwrap();
    let out = scan(&[
        "--format",
        "json",
        "--fail-on",
        "high",
        report.to_str().unwrap(),
    ]);
    // CVE-2023-4863 (Chrome < 116.0.5845.187, CVSS 8.8, KEV) → exit 1.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = stdout_json(&out);
    let got = triples(&json);
    assert!(got.contains(&(
        "PuTTY release 0.80 (64-bit)".into(),
        "0.80.0.0".into(),
        "CVE-2024-31497".into()
    )));
    // CVE-2023-4863's group also holds CVE-2023-5129 (its rejected duplicate, via the Go and
    // GHSA records), so it is shown by its GHSA id with both CVEs as aliases.
    let chrome = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| {
            f["package"]["name"] == "Google Chrome"
                && f["vulnerability"]["aliases"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == "CVE-2023-4863")
        })
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(chrome["vulnerability"]["kev"], true);
    assert_eq!(chrome["match"]["method"], "nvd-cpe");
    assert_eq!(chrome["match"]["confidence"], "medium");
}

#[test]
fn bad_input_is_exit_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // A real SBOM cut short.
    let real = std::fs::read(shared_path("sboms/cyclonedx-py-system-python3.cdx.json")).unwrap();
    let cut = dir.path().join("cut.cdx.json");
    std::fs::write(&cut, &real[..real.len() / 2]).unwrap();
    let out = scan(&[cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.cdx.json:"), "{err}");
    assert!(err.contains("line"), "{err}");

    let garbage = dir.path().join("notes.txt");
    std::fs::write(&garbage, "just some words\n").unwrap();
    let out = scan(&[garbage.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt"));

    let out = scan(&[dir.path().join("missing.json").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));

    // An empty data directory: no knowledge base is an error, not "no findings".
    let empty = tempfile::tempdir().unwrap();
    let sbom = path("sboms/cyclonedx-py-system-python3.cdx.json");
    let out = run(empty.path(), &["scan", &sbom], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("feeds import"));
}

#[test]
fn table_report_and_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.txt");
    let out = scan(&[
        "-o",
        file.to_str().unwrap(),
        &path("sboms/cyclonedx-py-system-python3.cdx.json"),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("CVE-2023-49083"), "{text}");
    assert!(text.contains("osv-range (high)"), "{text}");
    assert!(
        text.contains("4 vulnerabilities in 3 of 29 packages (1 high, 1 low, 2 unknown)"),
        "{text}"
    );
}

#[test]
fn vex_documents_remove_the_findings_they_cover() {
    // The system Python's SBOM has cryptography 38.0.4 with CVE-2023-49083 and CVE-2023-23931
    // (see json_report_of_a_real_python_sbom). An OpenVEX statement (by the PYSEC alias) and
    // a CycloneDX one (for another version: covers nothing) are applied.
    let dir = tempfile::tempdir().unwrap();
    let openvex = dir.path().join("vendor.openvex.json");
    std::fs::write(
        &openvex,
        r#"{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.com/vex/1",
            "author": "Example vendor", "timestamp": "2026-01-01T00:00:00Z", "version": 1,
            "statements": [{"vulnerability": {"name": "PYSEC-2023-254"},
              "products": [{"@id": "pkg:pypi/cryptography@38.0.4"}],
              "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]}"#,
    )
    .unwrap();
    let cdx = dir.path().join("other.cdx.json");
    std::fs::write(
        &cdx,
        r#"{"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "vulnerabilities": [{"id": "CVE-2023-23931", "analysis": {"state": "not_affected",
              "justification": "code_not_reachable"},
              "affects": [{"ref": "pkg:pypi/cryptography@41.0.0"}]}]}"#,
    )
    .unwrap();
    let sbom = path("sboms/cyclonedx-py-system-python3.cdx.json");
    let out = scan(&[
        "--format",
        "json",
        "--vex",
        openvex.to_str().unwrap(),
        cdx.to_str().unwrap(),
        "--",
        &sbom,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = triples(&stdout_json(&out));
    got.sort();
    let want: Vec<(String, String, String)> = [
        ("cryptography", "38.0.4", "CVE-2023-23931"),
        ("pip", "23.0.1", "CVE-2023-5752"),
        ("pygments", "2.14.0", "CVE-2022-40896"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);

    // A bad document stops the scan, naming the file and the JSON path.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"@context": "https://openvex.dev/ns/v0.2.0", "statements": [
            {"vulnerability": {"name": "CVE-2023-23931"}, "status": "gone", "products": []}]}"#,
    )
    .unwrap();
    let out = scan(&["--vex", bad.to_str().unwrap(), "--", &sbom]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("statements[0].status"),
        "{err}"
    );
}
