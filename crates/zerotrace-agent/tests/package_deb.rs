//! The agent's packages. The .deb is built by the real cargo-deb from this crate's
//! `[package.metadata.deb]` and installed, upgraded, removed and purged by the real dpkg in a
//! scratch root (`--instdir`/`--admindir`, maintainer scripts run with `DPKG_ROOT`, so nothing
//! on this host changes): the files and their modes, a 0600 settings file kept across the
//! upgrade, an agent that is enabled but not started until configured, the installed binary
//! enrolling with a real `zerotrace server`, its identity surviving the upgrade, and nothing
//! left after a purge. The .rpm's metadata is checked against the .deb's (same files, modes and
//! start rule); no rpm tooling runs here.
//!
//! cargo-deb comes from crates.io (`cargo install cargo-deb --locked`, which `.ci/run` does);
//! this test fails (it does not skip) when it is missing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use zt_testkit::ServerProcess;

const ADMIN: &str = "zto_package-operator-token-0123456789abcdef";

fn agent_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_zerotrace-agent"))
}

/// Builds the .deb of the binary this test was built with, as `version`, into `out`.
///
/// cargo-deb packages `target/release/zerotrace-agent`; a scratch target directory holds this
/// build's binary under that name, so that the test neither needs a release build nor touches
/// one.
fn build_deb(version: &str, out: &Path) {
    let target = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(target.path().join("release")).unwrap();
    std::fs::copy(agent_bin(), target.path().join("release/zerotrace-agent")).unwrap();
    let result = Command::new(env!("CARGO"))
        .args(["deb", "-p", "zerotrace-agent", "--no-build", "--fast"])
        .args(["--deb-version", version, "-o"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target.path())
        .current_dir(zt_testkit::workspace_root())
        .output()
        .expect("cannot run cargo");
    assert!(
        result.status.success(),
        "cargo deb failed (install it with `cargo install cargo-deb --locked`; .ci/run does):\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// A scratch root with its own dpkg database.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let dir = tempfile::tempdir().unwrap();
        let admin = dir.path().join("var/lib/dpkg");
        for sub in ["info", "updates", "triggers"] {
            std::fs::create_dir_all(admin.join(sub)).unwrap();
        }
        std::fs::write(admin.join("status"), "").unwrap();
        std::fs::write(admin.join("available"), "").unwrap();
        Root { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel.trim_start_matches('/'))
    }

    /// Runs dpkg on this root; returns its output, panicking when it fails.
    fn dpkg(&self, args: &[&str]) -> String {
        let out = Command::new("dpkg")
            .arg(format!("--instdir={}", self.dir.path().display()))
            .arg(format!(
                "--admindir={}",
                self.path("var/lib/dpkg").display()
            ))
            .arg(format!("--log={}", self.path("dpkg.log").display()))
            // Maintainer scripts run here with DPKG_ROOT set instead of in a chroot; the
            // scratch root has no libc6 package to satisfy Depends.
            .args([
                "--force-script-chrootless",
                "--force-not-root",
                "--force-depends",
                "--force-confdef",
                "--force-confold",
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("cannot run dpkg");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dpkg {args:?}:\n{text}");
        text
    }

    fn status(&self) -> String {
        let out = Command::new("dpkg-query")
            .arg(format!(
                "--admindir={}",
                self.path("var/lib/dpkg").display()
            ))
            .args(["-W", "-f", "${Status} ${Version}", "zerotrace-agent"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.path(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    }

    /// The settings in agent.env, as systemd's EnvironmentFile reads these simple lines.
    fn settings(&self) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.path("etc/zerotrace-agent/agent.env"))
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// Every file (not directory) under the root outside dpkg's own database.
    fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().filter_map(Result::ok) {
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().display().to_string();
                if rel == "var/lib/dpkg" || rel == "dpkg.log" {
                    continue;
                }
                if e.file_type().unwrap().is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut out);
        out.sort();
        out
    }
}

/// A small Debian host for the installed agent to collect from.
fn host_root(dir: &Path) -> PathBuf {
    let root = dir.join("host");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("var/lib/dpkg")).unwrap();
    std::fs::copy(
        zt_testkit::shared_path("inventories/dpkg/osv-scalibr-valid.status"),
        root.join("var/lib/dpkg/status"),
    )
    .unwrap();
    root
}

#[test]
fn deb_installs_configures_upgrades_and_purges_with_dpkg() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = (dir.path().join("v1.deb"), dir.path().join("v2.deb"));
    build_deb("0.1.0-1", &v1);
    build_deb("0.1.0-2", &v2);

    // What the package holds.
    let info = Command::new("dpkg-deb")
        .arg("-f")
        .arg(&v1)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("Package: zerotrace-agent\n"), "{info}");
    assert!(info.contains("Version: 0.1.0-1\n"), "{info}");
    assert!(info.contains("Depends: libc6"), "{info}");
    let listing = Command::new("dpkg-deb")
        .arg("-c")
        .arg(&v1)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    for (mode, path) in [
        ("-rwxr-xr-x 0/0", "./usr/bin/zerotrace-agent"),
        (
            "-rw-r--r-- 0/0",
            "./usr/lib/systemd/system/zerotrace-agent.service",
        ),
        ("-rw------- 0/0", "./etc/zerotrace-agent/agent.env"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(&format!(" {path}"))),
            "{path} {mode}:\n{listing}"
        );
    }

    // Install: files in place, enabled at boot, but not started: nothing is configured.
    let root = Root::new();
    let out = root.dpkg(&["-i", v1.to_str().unwrap()]);
    assert!(out.contains("zerotrace-agent: not started"), "{out}");
    assert!(root.status().starts_with("install ok installed 0.1.0-1"));
    assert_eq!(root.mode("usr/bin/zerotrace-agent"), 0o755);
    assert_eq!(root.mode("etc/zerotrace-agent/agent.env"), 0o600);
    assert_eq!(root.mode("var/lib/zerotrace-agent"), 0o700);
    let unit = root.path("usr/lib/systemd/system/zerotrace-agent.service");
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(zt_testkit::workspace_root().join("deploy/systemd/zerotrace-agent.service"))
            .unwrap()
    );
    let wants = root.path("etc/systemd/system/multi-user.target.wants/zerotrace-agent.service");
    assert_eq!(
        std::fs::read_link(&wants).unwrap(),
        Path::new("/usr/lib/systemd/system/zerotrace-agent.service")
    );
    let settings = root.settings();
    assert_eq!(settings["ZEROTRACE_SERVER"], "");
    assert_eq!(settings["ZEROTRACE_ENROLL_SECRET"], "");
    let version = Command::new(root.path("usr/bin/zerotrace-agent"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("zerotrace-agent "));

    // The administrator configures it; the installed agent enrolls with a real server.
    let zerotrace = zt_testkit::workspace_binary("zerotrace", "zerotrace");
    let data = dir.path().join("server-data");
    let company = Command::new(&zerotrace)
        .arg("--data-dir")
        .arg(&data)
        .args(["admin", "company", "create", "Acme", "--json"])
        .output()
        .unwrap();
    assert!(company.status.success());
    let company: serde_json::Value = serde_json::from_slice(&company.stdout).unwrap();
    let secret = company["enroll_secret"].as_str().unwrap();
    let server = ServerProcess::start(
        &zerotrace,
        &[
            "--data-dir",
            data.to_str().unwrap(),
            "server",
            "--listen",
            "127.0.0.1:0",
        ],
        &[("ZEROTRACE_ADMIN_TOKEN", ADMIN)],
        dir.path(),
        "server",
    )
    .unwrap();
    let env_file = root.path("etc/zerotrace-agent/agent.env");
    let edited = std::fs::read_to_string(&env_file)
        .unwrap()
        .replace(
            "ZEROTRACE_SERVER=\n",
            &format!("ZEROTRACE_SERVER={}\n", server.url),
        )
        .replace(
            "ZEROTRACE_ENROLL_SECRET=\n",
            &format!("ZEROTRACE_ENROLL_SECRET={secret}\n"),
        );
    std::fs::write(&env_file, &edited).unwrap();
    let state = root.path("var/lib/zerotrace-agent");
    let run = Command::new(root.path("usr/bin/zerotrace-agent"))
        .args(["--once", "--state-dir"])
        .arg(&state)
        .arg("--root")
        .arg(host_root(dir.path()))
        .env_clear()
        .envs(root.settings())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let identity = std::fs::read(state.join("identity.json")).unwrap();
    assert!(String::from_utf8_lossy(&identity).contains("agent_token"));

    // Upgrade in place: configured now, so restarted; settings and identity kept.
    let out = root.dpkg(&["-i", v2.to_str().unwrap()]);
    assert!(
        out.contains("zerotrace-agent: configured") && !out.contains("not started"),
        "{out}"
    );
    assert!(root.status().starts_with("install ok installed 0.1.0-2"));
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), edited);
    assert_eq!(root.mode("etc/zerotrace-agent/agent.env"), 0o600);
    assert_eq!(
        std::fs::read(state.join("identity.json")).unwrap(),
        identity
    );
    assert!(std::fs::read_link(&wants).is_ok(), "still enabled");
    // The agent still reports as the same host, with the identity alone.
    let mut settings = root.settings();
    settings.insert("ZEROTRACE_ENROLL_SECRET".into(), String::new());
    let run = Command::new(root.path("usr/bin/zerotrace-agent"))
        .args(["--once", "--state-dir"])
        .arg(&state)
        .arg("--root")
        .arg(host_root(dir.path()))
        .env_clear()
        .envs(settings)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        std::fs::read(state.join("identity.json")).unwrap(),
        identity
    );

    // Remove: the program goes, the settings and the identity stay.
    root.dpkg(&["-r", "zerotrace-agent"]);
    assert!(root.status().starts_with("deinstall ok config-files"));
    assert!(!root.path("usr/bin/zerotrace-agent").exists());
    assert!(!unit.exists());
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), edited);
    assert_eq!(
        std::fs::read(state.join("identity.json")).unwrap(),
        identity
    );

    // Purge: nothing of the agent is left.
    root.dpkg(&["-P", "zerotrace-agent"]);
    assert_eq!(root.status(), "");
    let left = root.files();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn maintainer_scripts_parse_and_rpm_metadata_matches_the_deb() {
    let root = zt_testkit::workspace_root();
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(root.join("crates/zerotrace-agent/Cargo.toml")).unwrap(),
    )
    .unwrap();
    let meta = &manifest["package"]["metadata"];
    let crate_dir = root.join("crates/zerotrace-agent");

    // (source, destination, mode) of both packages' files.
    let deb: Vec<(String, String, String)> = meta["deb"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            let (src, dest) = (a[0].as_str().unwrap(), a[1].as_str().unwrap());
            let name = Path::new(src).file_name().unwrap().to_str().unwrap();
            let dest = if dest.ends_with('/') {
                format!("/{dest}{name}")
            } else {
                format!("/{dest}")
            };
            (src.to_string(), dest, a[2].as_str().unwrap().to_string())
        })
        .collect();
    let rpm: Vec<(String, String, String)> = meta["generate-rpm"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["source"].as_str().unwrap().to_string(),
                a["dest"].as_str().unwrap().to_string(),
                a["mode"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rpm, deb);
    for (src, _, _) in &deb {
        if !src.starts_with("target/") {
            assert!(crate_dir.join(src).is_file(), "{src} is missing");
        }
    }
    let settings = meta["generate-rpm"]["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["dest"].as_str() == Some("/etc/zerotrace-agent/agent.env"))
        .unwrap();
    assert_eq!(settings["config"].as_str(), Some("noreplace"));
    assert_eq!(settings["mode"].as_str(), Some("600"));
    assert_eq!(
        meta["deb"]["conf-files"].as_array().unwrap()[0].as_str(),
        Some("/etc/zerotrace-agent/agent.env")
    );

    // Every maintainer script is valid shell, and both packages start the agent by one rule.
    let mut scripts: Vec<PathBuf> = ["postinst", "prerm", "postrm"]
        .iter()
        .map(|s| {
            crate_dir
                .join(meta["deb"]["maintainer-scripts"].as_str().unwrap())
                .join(s)
        })
        .collect();
    for key in [
        "post_install_script",
        "pre_uninstall_script",
        "post_uninstall_script",
    ] {
        scripts.push(crate_dir.join(meta["generate-rpm"][key].as_str().unwrap()));
    }
    for script in &scripts {
        let out = Command::new("sh").arg("-n").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rule = |text: &str| -> String {
        let start = text.find("configured() {").expect("a configured() rule");
        let end = start + text[start..].find("\n}").unwrap();
        text[start..end].to_string()
    };
    let deb_rule = rule(&std::fs::read_to_string(&scripts[0]).unwrap());
    let rpm_rule = rule(&std::fs::read_to_string(&scripts[3]).unwrap());
    assert_eq!(
        deb_rule.split_whitespace().collect::<Vec<_>>(),
        rpm_rule.split_whitespace().collect::<Vec<_>>()
    );
}
