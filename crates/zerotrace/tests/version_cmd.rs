//! `zerotrace version cmp` through the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn zerotrace(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zerotrace"))
        .args(args)
        .env("ZEROTRACE_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the zerotrace binary runs");
    {
        let mut input = child.stdin.take().expect("stdin is piped");
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("zerotrace finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn compares_two_versions_per_ecosystem() {
    for (eco, a, b, want) in [
        ("Debian:12", "1.2.3-1~deb12u1", "1.2.3-1", "<"),
        ("Ubuntu:22.04:LTS", "1:2.0", "3.0", ">"),
        ("Red Hat", "1.0-1.el9", "1.0-1.el9", "="),
        ("Alpine:v3.19", "1.2.3_rc1-r0", "1.2.3-r0", "<"),
        ("PyPI", "1.0.post1", "1.0", ">"),
        ("npm", "1.0.0-beta.11", "1.0.0-beta.2", ">"),
        ("Go", "v1.2.3+incompatible", "1.2.3", "="),
        ("Maven", "1.0-SNAPSHOT", "1.0", "<"),
        ("windows", "120.0.6099.109", "120.0.6099.110", "<"),
    ] {
        let out = zerotrace(&["version", "cmp", eco, a, b], None);
        assert!(out.status.success(), "{eco} {a} {b}: {out:?}");
        assert_eq!(stdout(&out).trim(), want, "{eco}: {a} vs {b}");
    }
}

#[test]
fn versions_starting_with_a_dash_are_not_options() {
    let out = zerotrace(
        &[
            "version",
            "cmp",
            "PyPI",
            "-class.-jw.util.version.version-pre",
            "1.0",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out).trim(), "<");
}

#[test]
fn an_invalid_version_exits_2_and_is_named() {
    let out = zerotrace(&["version", "cmp", "Debian", "1.0", "1.0@3-2"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1.0@3-2"), "stderr names the version: {err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn an_unknown_ecosystem_exits_2() {
    let out = zerotrace(&["version", "cmp", "NoSuchEcosystem", "1", "2"], None);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchEcosystem"));
}

#[test]
fn stdin_batch_answers_every_line() {
    let input = "1.0 2.0\n2.0\t1.0\n1.09 1.9\nnot-a-version 1.0\n\nonly-one\n1:1.0-1 1.0-1\n";
    let out = zerotrace(&["version", "cmp", "Debian", "--stdin"], Some(input));
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(lines, ["<", ">", "=", "invalid", "invalid", "invalid", ">"]);
}

#[test]
fn stdin_with_tabs_keeps_spaces_inside_versions() {
    let input = "7.1.2 build 15\t7.1.2\n7.1.2 build 15\t7.1.3\n";
    let out = zerotrace(&["version", "cmp", "windows", "--stdin"], Some(input));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), ">\n<\n");
}
