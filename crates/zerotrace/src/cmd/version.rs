//! `zerotrace version`: compare versions the way an ecosystem orders them (zt-version).
//!
//! `zerotrace version cmp ECOSYSTEM A B` prints `<`, `=` or `>`; exit code 2 when a version is
//! invalid (the message names it) or the ecosystem is unknown. With `--stdin` it reads one pair
//! per line — `A<TAB>B`, or `A B` when neither contains a space — and prints one answer per
//! line: `<`, `=`, `>` or `invalid`.

use std::cmp::Ordering;
use std::io::{BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use zt_version::Scheme;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compare two versions (or pairs read from standard input): prints <, = or >.
    Cmp(CmpArgs),
}

#[derive(Debug, clap::Args)]
pub struct CmpArgs {
    /// OSV ecosystem ("Debian:12", "Ubuntu:22.04:LTS", "Alpine:v3.19", "Red Hat", "PyPI", "npm",
    /// "crates.io", "Go", "Maven", …), a ZeroTrace source ("windows", "macos", …) or a scheme
    /// name ("dpkg", "rpm", "apk", "pep440", "semver", "generic", …).
    pub ecosystem: String,
    /// The first version.
    #[arg(allow_hyphen_values = true, required_unless_present = "stdin")]
    pub a: Option<String>,
    /// The second version.
    #[arg(allow_hyphen_values = true, required_unless_present = "stdin")]
    pub b: Option<String>,
    /// Read pairs from standard input, one per line ("A<TAB>B" or "A B").
    #[arg(long, conflicts_with_all = ["a", "b"])]
    pub stdin: bool,
}

/// Exit code for an invalid version or an unknown ecosystem.
const INVALID: u8 = 2;

pub fn run(c: Command) -> anyhow::Result<ExitCode> {
    match c {
        Command::Cmp(args) => cmp(args),
    }
}

fn scheme_named(name: &str) -> Option<Scheme> {
    Scheme::for_ecosystem(name).or_else(|| {
        Scheme::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name.trim()))
    })
}

fn symbol(o: Ordering) -> &'static str {
    match o {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

fn cmp(args: CmpArgs) -> anyhow::Result<ExitCode> {
    let Some(scheme) = scheme_named(&args.ecosystem) else {
        eprintln!(
            "error: unknown ecosystem {:?} (try an OSV ecosystem such as Debian, PyPI, npm, or a scheme: {})",
            args.ecosystem,
            Scheme::ALL.map(Scheme::name).join(", ")
        );
        return Ok(ExitCode::from(INVALID));
    };
    if args.stdin {
        return cmp_lines(scheme);
    }
    let (Some(a), Some(b)) = (args.a, args.b) else {
        anyhow::bail!("two versions are needed (or --stdin)");
    };
    let parsed = scheme.parse(&a).and_then(|x| Ok((x, scheme.parse(&b)?)));
    match parsed {
        Ok((x, y)) => {
            println!("{}", symbol(x.cmp(&y)));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(INVALID))
        }
    }
}

/// Splits "A<TAB>B" or "A B" (exactly two whitespace-separated fields).
fn split_pair(line: &str) -> Option<(&str, &str)> {
    if let Some((a, b)) = line.split_once('\t') {
        return (!a.trim().is_empty() && !b.trim().is_empty() && !b.contains('\t'))
            .then_some((a, b));
    }
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next(), fields.next()) {
        (Some(a), Some(b), None) => Some((a, b)),
        _ => None,
    }
}

fn cmp_lines(scheme: Scheme) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin().lock();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for line in stdin.lines() {
        let line = line.context("reading standard input")?;
        let answer = split_pair(&line)
            .and_then(|(a, b)| Some(scheme.parse(a).ok()?.cmp(&scheme.parse(b).ok()?)))
            .map_or("invalid", symbol);
        writeln!(out, "{answer}").context("writing standard output")?;
    }
    out.flush().context("writing standard output")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_on_tab_or_whitespace() {
        assert_eq!(split_pair("1.0 2.0"), Some(("1.0", "2.0")));
        assert_eq!(split_pair("  1.0\t 2.0 "), Some(("  1.0", " 2.0 ")));
        assert_eq!(
            split_pair("7.1.2 build 15\t7.1.2"),
            Some(("7.1.2 build 15", "7.1.2"))
        );
        assert_eq!(split_pair("1.0"), None);
        assert_eq!(split_pair("1 2 3"), None);
        assert_eq!(split_pair(""), None);
    }

    #[test]
    fn scheme_names_and_ecosystems_resolve() {
        assert_eq!(scheme_named("Debian:12"), Some(Scheme::Dpkg));
        assert_eq!(scheme_named("rpm"), Some(Scheme::Rpm));
        assert_eq!(scheme_named("PEP440"), Some(Scheme::Pep440));
        assert_eq!(scheme_named("nope"), None);
    }
}
