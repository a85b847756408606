//! Alpine / Wolfi / Chainguard "secdb" files (`packages[].pkg.secfixes`: fixed version → ids)
//! converted into OSV-shaped advisories.
//!
//! One advisory per (distribution release and repository, vulnerability id): for Alpine the id
//! is `ALPINE-<release>-<repo>-<vuln>` (e.g. `ALPINE-v3.11-main-CVE-2019-14904`), for Wolfi
//! `WOLFI-<vuln>`, for Chainguard `CHAINGUARD-<vuln>`. The id is scoped to the file so that
//! importing one release's file never overwrites another's. These ids are made up here, so the
//! advisory's `upstream` holds the real id (the CVE) and alias grouping shows that instead.
//! Further ids on an entry's line (Xen's `XSA-196` beside a CVE) go to `related`: one XSA can
//! cover several CVEs, so treating it as an alias would merge different vulnerabilities.
//! Each affected package gets an ECOSYSTEM range `introduced 0 → fixed <version>`. A fixed
//! version of "0" is the secdb's way to say the package was never affected: no advisory.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use zt_advisory::{Advisory, AffectedPackage, AffectedRange, RangeEvent, RangeKind, Source};

use crate::RecordFailure;

#[derive(Debug, Deserialize)]
struct SecDb {
    #[serde(default)]
    distroversion: Option<String>,
    #[serde(default)]
    reponame: Option<String>,
    #[serde(default)]
    urlprefix: Option<String>,
    #[serde(default)]
    packages: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct SecDbPackage {
    pkg: SecDbPkg,
}

#[derive(Debug, Deserialize)]
struct SecDbPkg {
    name: String,
    #[serde(default)]
    secfixes: Option<BTreeMap<String, Option<Vec<String>>>>,
}

/// True for a secdb document.
pub(crate) fn looks_like_secdb(v: &Value) -> bool {
    v.get("packages").is_some()
        && (v.get("apkurl").is_some()
            || v.get("distroversion").is_some()
            || v.get("urlprefix").is_some())
}

/// Which distribution a secdb file describes.
struct Flavor {
    source: Source,
    ecosystem: String,
    id_prefix: String,
    label: String,
}

fn flavor(db: &SecDb) -> Result<Flavor, String> {
    let url = db.urlprefix.as_deref().unwrap_or("").to_ascii_lowercase();
    let repo = db.reponame.as_deref().unwrap_or("").trim().to_string();
    if url.contains("wolfi") {
        return Ok(Flavor {
            source: Source::WolfiSecdb,
            ecosystem: "Wolfi".into(),
            id_prefix: "WOLFI".into(),
            label: "Wolfi".into(),
        });
    }
    if url.contains("chainguard") || url.contains("cgr.dev") || repo == "chainguard" {
        return Ok(Flavor {
            source: Source::ChainguardSecdb,
            ecosystem: "Chainguard".into(),
            id_prefix: "CHAINGUARD".into(),
            label: "Chainguard".into(),
        });
    }
    let Some(release) = db
        .distroversion
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
    else {
        return Err("secdb without distroversion (not Alpine) and not Wolfi/Chainguard".into());
    };
    // OSV spells Alpine releases "Alpine:v3.19".
    let release = if release.starts_with('v') {
        release.to_string()
    } else {
        format!("v{release}")
    };
    let repo = if repo.is_empty() {
        "main".to_string()
    } else {
        repo
    };
    Ok(Flavor {
        source: Source::AlpineSecdb,
        ecosystem: format!("Alpine:{release}"),
        id_prefix: format!("ALPINE-{release}-{repo}"),
        label: format!("Alpine {release} {repo}"),
    })
}

/// Converts a whole secdb document; bad package entries are reported and skipped.
pub(crate) fn parse_secdb_value(
    v: Value,
    mut on_record: impl FnMut(Result<Advisory, RecordFailure>),
) -> Result<(), String> {
    let db: SecDb = serde_json::from_value(v).map_err(|e| format!("not a secdb document: {e}"))?;
    let flavor = flavor(&db)?;
    let mut by_vuln: BTreeMap<String, Advisory> = BTreeMap::new();
    for (i, p) in db.packages.unwrap_or_default().into_iter().enumerate() {
        let name_hint = p
            .pointer("/pkg/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let pkg = match serde_json::from_value::<SecDbPackage>(p) {
            Ok(p) => p.pkg,
            Err(e) => {
                on_record(Err(RecordFailure {
                    record_id: Some(name_hint.unwrap_or_else(|| format!("packages[{i}]"))),
                    reason: e.to_string(),
                }));
                continue;
            }
        };
        let name = pkg.name.trim().to_string();
        if name.is_empty() {
            on_record(Err(RecordFailure {
                record_id: Some(format!("packages[{i}]")),
                reason: "empty package name".into(),
            }));
            continue;
        }
        for (fixed, ids) in pkg.secfixes.unwrap_or_default() {
            let fixed = fixed.trim().to_string();
            if fixed.is_empty() || fixed == "0" {
                continue;
            }
            for entry in ids.unwrap_or_default() {
                let mut tokens = entry.split_whitespace();
                let Some(vuln) = tokens.next() else { continue };
                let extra: Vec<String> = tokens
                    .filter(|t| {
                        t.contains('-')
                            && t.chars().all(|c| {
                                c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_'
                            })
                    })
                    .map(str::to_string)
                    .collect();
                let id = format!("{}-{}", flavor.id_prefix, vuln);
                let adv = by_vuln.entry(vuln.to_string()).or_insert_with(|| {
                    let mut a = Advisory::new(id, flavor.source);
                    a.upstream = vec![vuln.to_string()];
                    a.summary = format!("{vuln} fixed in {}", flavor.label);
                    a
                });
                // Extra ids on the line (Xen's "CVE-2016-9377 XSA-196") may name an advisory
                // that covers several CVEs: related, not the same vulnerability.
                for x in extra {
                    if !adv.related.contains(&x) && x != vuln {
                        adv.related.push(x);
                    }
                }
                add_fix(adv, &flavor.ecosystem, &name, &fixed);
            }
        }
    }
    for (_, adv) in by_vuln {
        on_record(Ok(adv));
    }
    Ok(())
}

fn add_fix(adv: &mut Advisory, ecosystem: &str, name: &str, fixed: &str) {
    let range = AffectedRange {
        kind: RangeKind::Ecosystem,
        repo: None,
        events: vec![
            RangeEvent::Introduced("0".into()),
            RangeEvent::Fixed(fixed.to_string()),
        ],
    };
    if let Some(p) = adv.affected.iter_mut().find(|p| p.name == name) {
        // The same id listed under two fixed versions of one package (rare: a fix and a later
        // re-fix): both are kept, as OSV would list two ranges.
        if !p.ranges.contains(&range) {
            p.ranges.push(range);
        }
        return;
    }
    let mut p = AffectedPackage::new(ecosystem, name);
    p.ranges.push(range);
    adv.affected.push(p);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_alpine_entries() {
        let v: Value = serde_json::from_str(
            r#"{"distroversion":"v3.11","reponame":"main","apkurl":"x","packages":[
                {"pkg":{"name":"xen","secfixes":{"4.10.0-r1":["CVE-2017-15593 XSA-242"],"0":["CVE-2000-1"]}}},
                {"pkg":{"name":"zlib","secfixes":null}},
                {"pkg":{"secfixes":{}}}]}"#,
        )
        .unwrap();
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        parse_secdb_value(v, |r| match r {
            Ok(a) => ok.push(a),
            Err(e) => bad.push(e),
        })
        .unwrap();
        assert_eq!(ok.len(), 1);
        let a = &ok[0];
        assert_eq!(a.id, "ALPINE-v3.11-main-CVE-2017-15593");
        assert_eq!(a.upstream, vec!["CVE-2017-15593"]);
        assert_eq!(a.related, vec!["XSA-242"]);
        assert!(a.aliases.is_empty());
        assert_eq!(a.affected[0].ecosystem, "Alpine:v3.11");
        assert_eq!(a.affected[0].fixed_versions(), vec!["4.10.0-r1"]);
        assert_eq!(bad.len(), 1);
    }
}
