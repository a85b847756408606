//! `zerotrace scan`: an offline, one-shot match of an inventory (agent report, CycloneDX or SPDX
//! SBOM, dpkg status, apk installed database, Cargo.lock, or a root file system) against the
//! local knowledge base that `zerotrace feeds import` fills.
//!
//! Exit codes: 0 no finding at or above `--fail-on` (or no `--fail-on`), 1 findings at or above
//! it, 2 any error (bad input, no knowledge base, unwritable output).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::{json, Value};
use zt_advisory::{KnowledgeBase, Severity};
use zt_inventory::{OsInfo, Software};
use zt_match::{MatchIndex, VulnMatch};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to scan: an agent report, a CycloneDX (1.4–1.7) or SPDX 2.3 JSON SBOM, a dpkg status
    /// file, an apk installed database, a Cargo.lock, or a directory holding a root file system.
    /// `-` or nothing reads standard input.
    pub input: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Exit with 1 when a finding at or above this severity exists (critical, high, medium, low,
    /// none, unknown; `unknown` counts every finding). Informational notices never count.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
    /// The distribution release of the inventory's OS packages, overriding what the input says
    /// or what is guessed (`debian:12`, `ubuntu:22.04`, `alpine:3.19`, `bookworm`).
    #[arg(long, value_name = "DISTRO")]
    pub distro: Option<String>,
    /// Write the report to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// VEX documents (CycloneDX or OpenVEX) whose not-affected, false-positive, resolved or
    /// suppressing statements remove the findings they cover, as Trivy's `--vex` does.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub vex: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Sarif,
    Cyclonedx,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| {
        format!("unknown severity {s:?} (critical, high, medium, low, none, unknown)")
    })
}

/// Exit code for "findings at or above --fail-on".
const EXIT_FINDINGS: u8 = 1;
/// Exit code for any error.
const EXIT_ERROR: u8 = 2;

pub fn run(args: Args, global: &crate::GlobalArgs) -> anyhow::Result<ExitCode> {
    match scan(&args, global) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_ERROR))
        }
    }
}

/// One (package, vulnerability) finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub software: Software,
    pub vuln: VulnMatch,
}

fn scan(args: &Args, global: &crate::GlobalArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let input = args.input.clone().unwrap_or_else(|| PathBuf::from("-"));
    let inventory = zt_sbom::read_path(&input)?;
    for w in &inventory.warnings {
        tracing::warn!("{}: {w}", input.display());
    }
    let os = match &args.distro {
        Some(d) => Some(zt_sbom::parse_distro_arg(d).with_context(|| {
            format!("--distro {d:?}: expected e.g. debian:12, ubuntu:22.04, alpine:3.19")
        })?),
        None => inventory.os.clone(),
    };
    let software = software_of(&inventory.apps, os.as_ref());
    let read_ms = started.elapsed().as_millis();

    let t = Instant::now();
    let kb = load_knowledge(global)?;
    let load_ms = t.elapsed().as_millis();
    let t = Instant::now();
    // Only the advisories that can hit this inventory are compiled (same answers as a full
    // index, a fraction of the work).
    let index = MatchIndex::build_for(&kb, &software);
    drop(kb);
    let build_ms = t.elapsed().as_millis();

    let t = Instant::now();
    let mut findings = match_all(&index, &software);
    let match_ms = t.elapsed().as_millis();
    if !args.vex.is_empty() {
        let docs = read_vex(&args.vex)?;
        let now = chrono::Utc::now();
        let before = findings.len();
        findings.retain(|f| {
            let mut ids: Vec<&str> = vec![f.vuln.id.as_str()];
            ids.extend(f.vuln.aliases.iter().map(String::as_str));
            !docs.iter().any(|d| {
                d.covering(&ids, &f.software.name, &f.software.version, now)
                    .is_some()
            })
        });
        tracing::info!(
            suppressed = before - findings.len(),
            "applied {} VEX document(s)",
            docs.len()
        );
    }
    tracing::info!(
        format = inventory.format.as_str(),
        packages = software.len(),
        advisories = index.stats().advisories,
        findings = findings.len(),
        read_ms,
        load_ms,
        build_ms,
        match_ms,
        "scanned {}",
        input.display()
    );

    let rendered = match args.format {
        OutputFormat::Table => render_table(&findings, software.len()),
        OutputFormat::Json => render_json(&findings)?,
        OutputFormat::Sarif => {
            serde_json::to_string_pretty(&render_sarif(&findings, &input))? + "\n"
        }
        OutputFormat::Cyclonedx => {
            serde_json::to_string_pretty(&render_cyclonedx(&findings, &software))? + "\n"
        }
    };
    write_output(args.output.as_deref(), &rendered)?;

    let failing = args.fail_on.is_some_and(|threshold| {
        findings
            .iter()
            .any(|f| !f.vuln.informational && f.vuln.severity >= threshold)
    });
    Ok(if failing {
        ExitCode::from(EXIT_FINDINGS)
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads VEX documents, refusing a bad one with its file and the JSON path of the problem.
fn read_vex(paths: &[PathBuf]) -> anyhow::Result<Vec<zt_vex::VexDocument>> {
    paths
        .iter()
        .map(|p| {
            let bytes =
                std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
            zt_vex::parse(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        })
        .collect()
}

/// The distinct software of the inventory's apps on `os`.
fn software_of(apps: &[zt_inventory::App], os: Option<&OsInfo>) -> Vec<Software> {
    let unknown = OsInfo::default();
    let os = os.unwrap_or(&unknown);
    let set: BTreeSet<Software> = apps.iter().map(|a| Software::from_app(a, os)).collect();
    set.into_iter().collect()
}

/// Matches every software; one finding per (package, vulnerability), sorted most severe first.
pub fn match_all(index: &MatchIndex, software: &[Software]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut seen: BTreeSet<(String, String, String, String)> = BTreeSet::new();
    let mut buf = Vec::new();
    for sw in software {
        buf.clear();
        index.match_software_into(sw, &mut buf);
        for vuln in buf.drain(..) {
            // The same package may be listed twice with different purls or CPEs.
            let key = (
                sw.ecosystem.clone(),
                sw.name.clone(),
                sw.version.clone(),
                vuln.id.clone(),
            );
            if seen.insert(key) {
                findings.push(Finding {
                    software: sw.clone(),
                    vuln,
                });
            }
        }
    }
    findings.sort_by(|a, b| {
        a.vuln
            .informational
            .cmp(&b.vuln.informational)
            .then_with(|| b.vuln.severity.cmp(&a.vuln.severity))
            .then_with(|| a.software.name.cmp(&b.software.name))
            .then_with(|| a.software.version.cmp(&b.software.version))
            .then_with(|| a.vuln.id.cmp(&b.vuln.id))
    });
    findings
}

fn load_knowledge(global: &crate::GlobalArgs) -> anyhow::Result<KnowledgeBase> {
    if let Some(url) = &global.database_url {
        return load_knowledge_postgres(url, global.partitions);
    }
    // The same file `feeds import` writes; not created here: a scan never starts a new store.
    let path = super::data_dir(global)?.join(super::SQLITE_FILE_NAME);
    if !path.exists() {
        bail!(
            "no knowledge base at {}: import feeds first (zerotrace --data-dir {} feeds import PATH...)",
            path.display(),
            path.parent().unwrap_or(Path::new(".")).display()
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let kb = runtime.block_on(async {
        use zt_store::Storage;
        let store = zt_store::SqliteStore::open(&path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        store
            .load_knowledge()
            .await
            .with_context(|| format!("cannot load the knowledge base from {}", path.display()))
    })?;
    if kb.advisories.is_empty() {
        bail!(
            "the knowledge base at {} holds no advisories: import feeds first (zerotrace feeds import PATH...)",
            path.display()
        );
    }
    Ok(kb)
}

/// The knowledge base a PostgreSQL-backed server uses (`scan --database-url postgres://…`).
fn load_knowledge_postgres(url: &str, partitions: u32) -> anyhow::Result<KnowledgeBase> {
    let shown = zt_store::any::redact_url(url);
    if !zt_store::any::is_postgres_url(url) {
        bail!("unsupported --database-url {shown} (expected postgres://…)");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let kb = runtime.block_on(async {
        use zt_store::Storage;
        let options = zt_store::PgOptions {
            partitions,
            max_connections: 2,
        };
        let store = zt_store::PgStore::connect(url, &options)
            .await
            .with_context(|| format!("cannot open the database {shown}"))?;
        store
            .load_knowledge()
            .await
            .with_context(|| format!("cannot load the knowledge base from {shown}"))
    })?;
    if kb.advisories.is_empty() {
        bail!(
            "the knowledge base at {shown} holds no advisories: import feeds first \
             (zerotrace --database-url URL feeds import PATH...)"
        );
    }
    Ok(kb)
}

fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(p) => std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display())),
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                Ok(()) => Ok(()),
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                Err(e) => Err(e).context("cannot write the report"),
            }
        }
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    findings: Vec<JsonFinding<'a>>,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    package: JsonPackage<'a>,
    vulnerability: JsonVulnerability<'a>,
    #[serde(rename = "match")]
    matched: JsonMatch,
}

#[derive(Serialize)]
struct JsonPackage<'a> {
    name: &'a str,
    version: &'a str,
    ecosystem: &'a str,
    source: &'static str,
}

#[derive(Serialize)]
struct JsonVulnerability<'a> {
    id: &'a str,
    aliases: &'a [String],
    summary: &'a str,
    severity: &'static str,
    cvss: Option<JsonCvss<'a>>,
    fixed_versions: &'a [String],
    kev: bool,
    epss: Option<f64>,
    kev_due_date: Option<&'a str>,
    epss_percentile: Option<f64>,
    informational: bool,
    upstream: &'a [String],
}

#[derive(Serialize)]
struct JsonCvss<'a> {
    version: &'static str,
    vector: &'a str,
    score: f64,
}

#[derive(Serialize)]
struct JsonMatch {
    method: &'static str,
    confidence: &'static str,
}

/// The `scan --format json` document of DESIGN.md, keys in its order; `vulnerability` also
/// carries `kev_due_date`, `epss_percentile`, `informational` and `upstream` (the CVEs a
/// multi-CVE distro advisory fixes).
pub fn render_json(findings: &[Finding]) -> anyhow::Result<String> {
    let report = JsonReport {
        findings: findings
            .iter()
            .map(|f| {
                let v = &f.vuln;
                JsonFinding {
                    package: JsonPackage {
                        name: &f.software.name,
                        version: &f.software.version,
                        ecosystem: &f.software.ecosystem,
                        source: f.software.source.as_str(),
                    },
                    vulnerability: JsonVulnerability {
                        id: &v.id,
                        aliases: &v.aliases,
                        summary: &v.summary,
                        severity: v.severity.as_str(),
                        cvss: v.cvss.as_ref().map(|c| JsonCvss {
                            version: c.version.as_str(),
                            vector: &c.vector,
                            score: c.score,
                        }),
                        fixed_versions: &v.fixed_versions,
                        kev: v.kev,
                        epss: v.epss,
                        kev_due_date: v.kev_due_date.as_deref(),
                        epss_percentile: v.epss_percentile,
                        informational: v.informational,
                        upstream: &v.upstream,
                    },
                    matched: JsonMatch {
                        method: v.method.as_str(),
                        confidence: v.confidence.as_str(),
                    },
                }
            })
            .collect(),
    };
    Ok(serde_json::to_string_pretty(&report)? + "\n")
}

fn render_table(findings: &[Finding], packages: usize) -> String {
    use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
    let mut out = String::new();
    if !findings.is_empty() {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header([
                "Package",
                "Version",
                "Ecosystem",
                "Vulnerability",
                "Severity",
                "CVSS",
                "Fixed in",
                "KEV",
                "EPSS",
                "Match",
            ]);
        for f in findings {
            let v = &f.vuln;
            let severity = if v.informational {
                "informational".to_string()
            } else {
                v.severity.as_str().to_string()
            };
            table.add_row([
                f.software.name.clone(),
                f.software.version.clone(),
                f.software.ecosystem.clone(),
                v.id.clone(),
                severity,
                v.cvss
                    .as_ref()
                    .map(|c| format!("{:.1}", c.score))
                    .unwrap_or_default(),
                v.fixed_versions.join(", "),
                if v.kev { "yes".into() } else { String::new() },
                v.epss.map(|e| format!("{e:.3}")).unwrap_or_default(),
                format!("{} ({})", v.method.as_str(), v.confidence.as_str()),
            ]);
        }
        out.push_str(&table.to_string());
        out.push('\n');
    }
    out.push_str(&summary_line(findings, packages));
    out.push('\n');
    out
}

fn summary_line(findings: &[Finding], packages: usize) -> String {
    let mut by_severity: BTreeMap<Severity, usize> = BTreeMap::new();
    let mut informational = 0;
    let mut affected: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for f in findings {
        if f.vuln.informational {
            informational += 1;
        } else {
            *by_severity.entry(f.vuln.severity).or_default() += 1;
            affected.insert((&f.software.ecosystem, &f.software.name, &f.software.version));
        }
    }
    let vulns: usize = by_severity.values().sum();
    let parts: Vec<String> = Severity::ALL
        .iter()
        .filter_map(|s| by_severity.get(s).map(|n| format!("{n} {s}")))
        .collect();
    let mut line = format!(
        "{vulns} vulnerabilities in {} of {packages} packages",
        affected.len()
    );
    if !parts.is_empty() {
        line.push_str(&format!(" ({})", parts.join(", ")));
    }
    if informational > 0 {
        line.push_str(&format!("; {informational} informational notices"));
    }
    line
}

/// A score for SARIF's `security-severity` (what code-scanning UIs sort by): the CVSS score,
/// else the middle of the severity's band.
fn security_severity(v: &VulnMatch) -> String {
    let score = v
        .cvss
        .as_ref()
        .map(|c| c.score)
        .unwrap_or(match v.severity {
            Severity::Critical => 9.5,
            Severity::High => 8.0,
            Severity::Medium => 5.5,
            Severity::Low => 2.0,
            Severity::None | Severity::Unknown => 0.0,
        });
    format!("{score:.1}")
}

fn sarif_level(v: &VulnMatch) -> &'static str {
    if v.informational {
        return "note";
    }
    match v.severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::None | Severity::Unknown => "note",
    }
}

fn help_uri(id: &str) -> String {
    if zt_advisory::is_cve_id(id) {
        format!("https://nvd.nist.gov/vuln/detail/{id}")
    } else {
        format!("https://osv.dev/vulnerability/{id}")
    }
}

/// SARIF 2.1.0: one rule per vulnerability, one result per (package, vulnerability).
pub fn render_sarif(findings: &[Finding], input: &Path) -> Value {
    let mut rule_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rules: Vec<Value> = Vec::new();
    for f in findings {
        let v = &f.vuln;
        if rule_index.contains_key(v.id.as_str()) {
            continue;
        }
        rule_index.insert(&v.id, rules.len());
        let summary = if v.summary.is_empty() {
            v.id.clone()
        } else {
            v.summary.clone()
        };
        let mut tags = vec!["security".to_string(), "vulnerability".to_string()];
        tags.push(if v.informational {
            "informational".into()
        } else {
            v.severity.as_str().into()
        });
        if v.kev {
            tags.push("kev".into());
        }
        let mut help = summary.clone();
        if !v.aliases.is_empty() {
            help.push_str(&format!("\nAliases: {}", v.aliases.join(", ")));
        }
        rules.push(json!({
            "id": v.id,
            "name": v.id,
            "shortDescription": {"text": summary},
            "fullDescription": {"text": summary},
            "helpUri": help_uri(&v.id),
            "help": {"text": help},
            "defaultConfiguration": {"level": sarif_level(v)},
            "properties": {
                "security-severity": security_severity(v),
                "tags": tags,
            },
        }));
    }
    let uri = if input == Path::new("-") {
        "stdin".to_string()
    } else {
        input.display().to_string()
    };
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let v = &f.vuln;
            let sw = &f.software;
            let fixed = if v.fixed_versions.is_empty() {
                "no fixed version known".to_string()
            } else {
                format!("fixed in {}", v.fixed_versions.join(", "))
            };
            let package = format!("{}@{}", sw.name, sw.version);
            json!({
                "ruleId": v.id,
                "ruleIndex": rule_index.get(v.id.as_str()).copied().unwrap_or(0),
                "level": sarif_level(v),
                "message": {"text": format!(
                    "{package} ({}) is affected by {} ({}): {fixed}",
                    sw.ecosystem, v.id, v.severity.as_str()
                )},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": uri}},
                    "logicalLocations": [{
                        "name": package,
                        "fullyQualifiedName": sw.purl.clone().unwrap_or_else(|| format!("{}/{package}", sw.ecosystem)),
                        "kind": "package",
                    }],
                }],
                "partialFingerprints": {
                    "zerotrace/v1": format!("{}|{}|{}|{}", v.id, sw.ecosystem, sw.name, sw.version),
                },
                "properties": {
                    "ecosystem": sw.ecosystem,
                    "fixedVersions": v.fixed_versions,
                    "matchMethod": v.method.as_str(),
                    "confidence": v.confidence.as_str(),
                    "kev": v.kev,
                    "epss": v.epss,
                },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "zerotrace",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/zerotrace/zerotrace",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A CycloneDX 1.6 BOM of the scanned packages with a `vulnerabilities` section (one entry per
/// vulnerability, `affects` naming every package it hits).
pub fn render_cyclonedx(findings: &[Finding], software: &[Software]) -> Value {
    let bom_ref = |sw: &Software| format!("{}:{}@{}", sw.ecosystem, sw.name, sw.version);
    let mut component_refs: BTreeSet<String> = BTreeSet::new();
    let components: Vec<Value> = software
        .iter()
        .filter(|sw| component_refs.insert(bom_ref(sw)))
        .map(|sw| {
            let mut c = json!({
                "type": "library",
                "bom-ref": bom_ref(sw),
                "name": sw.name,
                "version": sw.version,
            });
            if let Some(p) = &sw.purl {
                c["purl"] = json!(p);
            }
            if let Some(cpe) = &sw.cpe {
                c["cpe"] = json!(cpe);
            }
            c
        })
        .collect();
    let mut by_id: BTreeMap<&str, (&VulnMatch, BTreeSet<String>)> = BTreeMap::new();
    for f in findings {
        by_id
            .entry(&f.vuln.id)
            .or_insert_with(|| (&f.vuln, BTreeSet::new()))
            .1
            .insert(bom_ref(&f.software));
    }
    let vulnerabilities: Vec<Value> = by_id
        .into_values()
        .map(|(v, refs)| {
            let mut ratings = Vec::new();
            if let Some(c) = &v.cvss {
                let method = match c.version {
                    zt_advisory::CvssVersion::V2 => "CVSSv2",
                    zt_advisory::CvssVersion::V30 => "CVSSv3",
                    zt_advisory::CvssVersion::V31 => "CVSSv31",
                    zt_advisory::CvssVersion::V40 => "CVSSv4",
                };
                ratings.push(json!({
                    "score": c.score,
                    "severity": v.severity.as_str(),
                    "method": method,
                    "vector": c.vector,
                }));
            } else {
                ratings.push(json!({"severity": v.severity.as_str()}));
            }
            if let Some(e) = v.epss {
                ratings.push(json!({"score": e, "method": "other", "source": {"name": "EPSS"}}));
            }
            let mut item = json!({
                "id": v.id,
                "source": {"name": if zt_advisory::is_cve_id(&v.id) { "NVD" } else { "OSV" }, "url": help_uri(&v.id)},
                "references": v.aliases.iter().map(|a| json!({"id": a, "source": {"url": help_uri(a)}})).collect::<Vec<_>>(),
                "ratings": ratings,
                "description": v.summary,
                "affects": refs.into_iter().map(|r| json!({"ref": r})).collect::<Vec<_>>(),
                "properties": [
                    {"name": "zerotrace:match-method", "value": v.method.as_str()},
                    {"name": "zerotrace:confidence", "value": v.confidence.as_str()},
                    {"name": "zerotrace:kev", "value": v.kev.to_string()},
                    {"name": "zerotrace:informational", "value": v.informational.to_string()},
                ],
            });
            if !v.fixed_versions.is_empty() {
                item["recommendation"] = json!(format!("Upgrade to {}", v.fixed_versions.join(" or ")));
            }
            item
        })
        .collect();
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", uuid::Uuid::new_v4()),
        "version": 1,
        "metadata": {
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "tools": {"components": [{"type": "application", "name": "zerotrace", "version": env!("CARGO_PKG_VERSION")}]},
        },
        "components": components,
        "vulnerabilities": vulnerabilities,
    })
}
