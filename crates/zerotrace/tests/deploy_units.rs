//! The server's systemd units (deploy/systemd/) checked by the real `systemd-analyze`: every
//! setting valid, every command present (the real `zerotrace` binary installed where the units
//! expect it, in a scratch root), and the hardening scored by `systemd-analyze security`.
//! The agent's unit is checked with its package (crates/zerotrace-agent/tests/package_deb.rs).

use zt_testkit::systemd::UnitRoot;

mod common;

fn unit(name: &str) -> std::path::PathBuf {
    zt_testkit::workspace_root()
        .join("deploy/systemd")
        .join(name)
}

#[test]
fn server_units_verify_and_are_hardened() {
    let root = UnitRoot::new().expect("scratch root");
    root.install_executable(common::bin(), "/usr/bin/zerotrace")
        .unwrap();
    for name in [
        "zerotrace.service",
        "zerotrace-api@.service",
        "zerotrace-worker@.service",
        "zerotrace.target",
    ] {
        root.add_unit(&unit(name)).unwrap();
    }
    root.verify(&[
        "zerotrace.service",
        "zerotrace-api@8081.service",
        "zerotrace-worker@9101.service",
        "zerotrace.target",
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));

    // systemd's own score: 0 is fully confined, 10 is unconfined; under 2 it calls "OK".
    for service in [
        "zerotrace.service",
        "zerotrace-api@8081.service",
        "zerotrace-worker@9101.service",
    ] {
        let (score, report) = root.exposure(service).unwrap();
        assert!(score <= 2.0, "{service} exposure {score}:\n{report}");
        for setting in ["NoNewPrivileges=", "ProtectSystem=", "User=/DynamicUser="] {
            let line = report
                .lines()
                .find(|l| l.contains(setting))
                .unwrap_or_else(|| panic!("{setting} not assessed:\n{report}"));
            assert!(line.contains('✓'), "{service}: {line}");
        }
    }
}

#[test]
fn a_broken_unit_is_caught() {
    // The check itself must be able to fail: a misspelt setting and a missing binary.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(unit("zerotrace.service"))
        .unwrap()
        .replace("NoNewPrivileges=true", "NoNewPrivileges=maybe")
        .replace(
            "/usr/bin/zerotrace server",
            "/usr/bin/zerotrace-missing server",
        );
    let broken = dir.path().join("zerotrace.service");
    std::fs::write(&broken, text).unwrap();
    let root = UnitRoot::new().unwrap();
    root.add_unit(&broken).unwrap();
    let err = format!("{:#}", root.verify(&["zerotrace.service"]).unwrap_err());
    assert!(
        err.contains("Failed to parse boolean value, ignoring: maybe"),
        "{err}"
    );
    assert!(err.contains("zerotrace-missing"), "{err}");
}

#[test]
fn the_system_user_is_valid_for_systemd_sysusers() {
    let root = UnitRoot::new().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    for f in ["passwd", "group"] {
        std::fs::write(root.path().join("etc").join(f), "").unwrap();
    }
    let out = std::process::Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .arg("--dry-run")
        .arg(unit("zerotrace.sysusers"))
        .output()
        .expect("systemd-sysusers runs");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Creating user 'zerotrace'"), "{text}");
}
