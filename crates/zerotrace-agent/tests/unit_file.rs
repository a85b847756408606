//! The agent's systemd unit (deploy/systemd/zerotrace-agent.service) checked by the real
//! `systemd-analyze` with the real agent binary installed where the unit expects it, and its
//! start condition run by the real shell: the agent never starts before a server and an enroll
//! secret (or an earlier enrollment's identity) are configured.

use std::path::PathBuf;
use std::process::Command;

use zt_testkit::systemd::UnitRoot;

fn unit_path() -> PathBuf {
    zt_testkit::workspace_root().join("deploy/systemd/zerotrace-agent.service")
}

#[test]
fn agent_unit_verifies_and_is_hardened() {
    let root = UnitRoot::new().expect("scratch root");
    root.install_executable(
        std::path::Path::new(env!("CARGO_BIN_EXE_zerotrace-agent")),
        "/usr/bin/zerotrace-agent",
    )
    .unwrap();
    root.add_unit(&unit_path()).unwrap();
    root.verify(&["zerotrace-agent.service"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    // The agent runs as root to read every package database, confined to reading: systemd
    // scores it worse than the server (whose user is unprivileged), still "OK".
    let (score, report) = root.exposure("zerotrace-agent.service").unwrap();
    assert!(score <= 3.0, "exposure {score}:\n{report}");
    for setting in ["NoNewPrivileges=", "ProtectSystem=", "PrivateDevices="] {
        let line = report.lines().find(|l| l.contains(setting)).unwrap();
        assert!(line.contains('✓'), "{line}");
    }
}

/// The unit's ExecCondition command as the shell receives it (systemd turns `$$` into `$`),
/// with the identity file at `identity`.
fn start_condition(identity: &std::path::Path) -> String {
    let unit = std::fs::read_to_string(unit_path()).unwrap();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecCondition=/bin/sh -c '"))
        .expect("the unit has a shell ExecCondition");
    line.strip_suffix('\'')
        .expect("one quoted script")
        .replace("$$", "$")
        .replace(
            "/var/lib/zerotrace-agent/identity.json",
            identity.to_str().unwrap(),
        )
}

#[test]
fn agent_does_not_start_until_configured() {
    let dir = tempfile::tempdir().unwrap();
    let identity = dir.path().join("identity.json");
    let script = start_condition(&identity);
    let starts = |env: &[(&str, &str)]| {
        let out = Command::new("/bin/sh")
            .args(["-c", &script])
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, why) = starts(&[]);
    assert!(!ok);
    assert!(
        why.contains("ZEROTRACE_SERVER") && why.contains("agent.env"),
        "{why}"
    );
    // What the package installs: the settings present but empty.
    assert!(!starts(&[("ZEROTRACE_SERVER", ""), ("ZEROTRACE_ENROLL_SECRET", "")]).0);
    assert!(!starts(&[("ZEROTRACE_SERVER", "https://zt.example.com")]).0);
    assert!(!starts(&[("ZEROTRACE_ENROLL_SECRET", "ztes_x")]).0);
    assert!(
        starts(&[
            ("ZEROTRACE_SERVER", "https://zt.example.com"),
            ("ZEROTRACE_ENROLL_SECRET", "ztes_x")
        ])
        .0
    );
    // Enrolled once: the secret may go, the server stays needed.
    std::fs::write(&identity, "{}").unwrap();
    assert!(starts(&[("ZEROTRACE_SERVER", "https://zt.example.com")]).0);
    assert!(!starts(&[]).0);
}
