//! `zerotrace-agent inventory` as a user runs it.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zerotrace-agent"))
}

fn inventory_json(args: &[&str]) -> (serde_json::Value, std::process::Output) {
    let out = agent().arg("inventory").args(args).output().unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (v, out)
}

/// Done means: on a Debian machine, the dpkg apps are exactly what `dpkg-query -W` lists as
/// installed, with the same versions, source names and source versions, and the OS is read from
/// os-release.
#[test]
fn lists_exactly_what_dpkg_query_lists() {
    let query = Command::new("dpkg-query")
        .args([
            "-W",
            "-f",
            "${Package}\t${Version}\t${source:Package}\t${source:Version}\t${Architecture}\t${db:Status-Status}\n",
        ])
        .output();
    let query = match query {
        Ok(q) if q.status.success() => q,
        other => {
            eprintln!(
                "\n*** SKIPPED: dpkg-query is not available on this host ({:?}); \
                 the dpkg comparison did not run ***\n",
                other.map(|o| o.status)
            );
            return;
        }
    };
    let mut expected: Vec<String> = String::from_utf8(query.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let (rest, state) = l.rsplit_once('\t')?;
            zt_collect::dpkg::status_is_installed(&format!("install ok {state}"))
                .then(|| rest.to_string())
        })
        .collect();
    expected.sort();

    let (report, out) = inventory_json(&["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = zt_inventory::parse_report(&serde_json::to_vec(&report).unwrap()).unwrap();
    let mut got: Vec<String> = report
        .apps
        .iter()
        .filter(|a| a.source == zt_inventory::AppSource::Dpkg)
        .map(|a| {
            format!(
                "{}\t{}\t{}\t{}\t{}",
                a.name,
                a.version,
                a.source_name.as_deref().unwrap_or(""),
                a.source_version.as_deref().unwrap_or(""),
                a.arch.as_deref().unwrap_or("")
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);

    let os = zt_collect::os_release::parse(&std::fs::read_to_string("/etc/os-release").unwrap());
    assert_eq!(report.host.os, os);
    if os.id == "debian" {
        eprintln!(
            "this host: {} {} ({} dpkg packages)",
            os.id,
            os.version_id,
            got.len()
        );
    }
}

#[test]
fn inventory_of_a_mounted_root_in_both_formats() {
    let root = tempfile::tempdir().unwrap();
    let db = root.path().join("lib/apk/db");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(
        zt_testkit::shared_path("inventories/apk/trivy-apk.installed"),
        db.join("installed"),
    )
    .unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/os-release"),
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.4.6\nPRETTY_NAME=\"Alpine Linux v3.4\"\n",
    )
    .unwrap();
    let r = root.path().to_str().unwrap();

    let (json, out) = inventory_json(&["--root", r]);
    assert!(out.status.success());
    let apps = json["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 15);
    assert_eq!(json["host"]["os"]["id"], "alpine");
    let musl = apps.iter().find(|a| a["name"] == "musl").unwrap();
    assert_eq!(
        musl["purl"],
        "pkg:apk/alpine/musl@1.1.14-r10?arch=x86_64&distro=3.4.6"
    );
    // The deliberately invalid entry is reported on stderr, not silently lost.
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalidPackageWithoutAVersion"));

    let (bom, out) = inventory_json(&["--root", r, "--format", "cyclonedx"]);
    assert!(out.status.success());
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["components"].as_array().unwrap().len(), 16);
}

#[test]
fn unreadable_database_fails_loudly() {
    let root = tempfile::tempdir().unwrap();
    let dpkg = root.path().join("var/lib/dpkg");
    std::fs::create_dir_all(&dpkg).unwrap();
    std::fs::write(dpkg.join("status"), "Package: a\nVersion: 1\nbroken line\n").unwrap();
    let out = agent()
        .args(["inventory", "--root", root.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("status: line 3"), "{stderr}");
}

#[test]
fn usage_errors() {
    let out = agent().output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server"));
    let out = agent()
        .args(["inventory", "--format", "xml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
