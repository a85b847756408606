//! The in-memory match index: software against advisories.
//!
//! The server and `zerotrace scan` both build a [`MatchIndex`] from the knowledge base
//! ([`MatchIndex::build`]) and ask it which vulnerabilities hit a [`Software`]. The index knows
//! nothing of HTTP or SQL.
//!
//! CONTRACT (used by zt-server and the scan command; extend, do not break):
//! - `MatchIndex::empty()`, `MatchIndex::build(&KnowledgeBase)`,
//!   `MatchIndex::match_software(&Software) -> Vec<VulnMatch>`
//! - one `VulnMatch` per (software, advisory group): an advisory and its aliases are one match.
//!
//! How software is matched:
//! - Language packages (PyPI, npm, crates.io, Go, Maven, ...): the OSV records of their
//!   ecosystem, by name as the ecosystem compares names (PEP 503 for PyPI), by OSV ranges
//!   (`osv-range`) or listed versions (`osv-version`).
//! - Distro packages (dpkg, rpm, apk): the distro's own records for the host's release
//!   (`Debian:12`, `Ubuntu:22.04:LTS`, `Alpine:v3.19`...), keyed by source package and compared
//!   with the source version. Upstream ranges (NVD, GHSA) are never applied to them: the
//!   distro's fixed version is the truth, backports included.
//! - Everything without an OSV ecosystem (Windows and macOS programs, Homebrew, snaps...): NVD
//!   CPE configurations (`nvd-cpe`), after resolving the program to CPE vendor:product pairs:
//!   the inventory's own CPE (high confidence), a curated alias or the CPE dictionary (medium),
//!   or a fuzzy name rule (low).
//!
//! Everything is compiled once at build time; a lookup hashes borrowed strings, parses the
//! version once and evaluates precompiled ranges.

mod groups;
mod names;
mod nvd;
mod osv;
mod targeted;
mod versions;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use zt_advisory::{Cvss, KnowledgeBase, Severity};
use zt_cpe::{Attribute, Component, ProductId, ResolvedBy, Resolver, Wfn};
use zt_inventory::{AppSource, Software};

use crate::groups::GroupView;
use crate::nvd::{CpeHit, NvdIndex, Platform, Program};
use crate::osv::OsvIndex;
use crate::versions::Scheme;

pub use crate::targeted::ChangeScope;

/// How a match was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchMethod {
    /// The version fell inside an OSV affected range.
    #[serde(rename = "osv-range")]
    OsvRange,
    /// The version is listed in an OSV `versions` array.
    #[serde(rename = "osv-version")]
    OsvVersion,
    /// An NVD CPE configuration matched.
    #[serde(rename = "nvd-cpe")]
    NvdCpe,
}

impl MatchMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchMethod::OsvRange => "osv-range",
            MatchMethod::OsvVersion => "osv-version",
            MatchMethod::NvdCpe => "nvd-cpe",
        }
    }
}

/// How sure the matcher is that the finding is real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// One vulnerability (advisory group) that hits one piece of software.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnMatch {
    /// The id shown to users for the group: the CVE when the group has exactly one.
    pub id: String,
    /// Every other id of the group (GHSA, PYSEC, RUSTSEC, DSA...), sorted, without `id`.
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    pub cvss: Option<Cvss>,
    /// Versions that fix it for this software (ecosystem's own notation), possibly empty.
    pub fixed_versions: Vec<String>,
    pub kev: bool,
    /// CISA KEV due date (YYYY-MM-DD) when listed.
    pub kev_due_date: Option<String>,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
    pub method: MatchMethod,
    pub confidence: Confidence,
    /// Informational advisories (e.g. RustSec "unmaintained") are reported but are not
    /// vulnerabilities.
    pub informational: bool,
    /// The CVEs a multi-CVE distro advisory fixes (a DSA or USN listing several), sorted;
    /// empty otherwise. Not aliases: each is its own vulnerability, fixed by this update.
    #[serde(default)]
    pub upstream: Vec<String>,
}

/// A vulnerability's KEV and EPSS data, which change without any advisory changing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    pub kev: bool,
    pub kev_due_date: Option<String>,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
}

/// What an index holds, for logs, metrics and `feeds status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    /// The knowledge revision the index was built from.
    pub revision: u64,
    pub advisories: usize,
    pub withdrawn: usize,
    pub groups: usize,
    /// OSV ecosystems (with release) that have entries.
    pub ecosystems: usize,
    /// Distinct (ecosystem, package) keys.
    pub packages: usize,
    /// Compiled affected-package entries.
    pub osv_entries: usize,
    /// Affected packages left out (no usable range, unparsable version, unknown ecosystem).
    pub skipped_affected: usize,
    /// A sample of why, for the log.
    pub skip_reasons: Vec<String>,
    pub cpe_products: usize,
    /// CPE entries left out (an unparsable criteria string or version bound).
    pub skipped_cpe_entries: usize,
}

/// The match index. Cheap to share (`Arc`) and immutable: rebuild it when advisories change.
pub struct MatchIndex {
    groups: Vec<GroupView>,
    /// Group index by the group's id.
    group_ids: std::collections::HashMap<String, u32>,
    osv: OsvIndex,
    nvd: NvdIndex,
    nvd_scheme: Option<Scheme>,
    resolver: Resolver,
    stats: IndexStats,
}

impl std::fmt::Debug for MatchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchIndex")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for MatchIndex {
    fn default() -> Self {
        MatchIndex::empty()
    }
}

// The server shares one index between its workers.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MatchIndex>();
};

/// One hit before merging per group.
#[derive(Debug, Clone)]
struct Hit<'a> {
    group: u32,
    method: MatchMethod,
    confidence: Confidence,
    fixed: Fixed<'a>,
}

#[derive(Debug, Clone)]
enum Fixed<'a> {
    Osv(Option<&'a str>),
    Nvd(Option<String>),
}

/// Hits of one lookup: most lookups have none, few have more than a handful.
type Hits<'a> = SmallVec<[Hit<'a>; 8]>;

impl MatchIndex {
    /// An index with no knowledge: matches nothing.
    pub fn empty() -> Self {
        MatchIndex {
            groups: Vec::new(),
            group_ids: Default::default(),
            osv: OsvIndex::default(),
            nvd: NvdIndex::default(),
            nvd_scheme: Scheme::nvd(),
            resolver: Resolver::new(),
            stats: IndexStats::default(),
        }
    }

    /// Compiles every non-withdrawn advisory of the knowledge base.
    pub fn build(kb: &KnowledgeBase) -> Self {
        let alias_groups = kb.groups();
        let mut index = MatchIndex::empty();
        index.groups = alias_groups
            .groups
            .iter()
            .map(GroupView::from_group)
            .collect();
        index.group_ids = index
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.id.clone(), i as u32))
            .collect();
        let mut withdrawn = 0;
        for (i, advisory) in kb.advisories.iter().enumerate() {
            let Some(group) = alias_groups.group_of.get(i).copied().flatten() else {
                withdrawn += 1;
                continue;
            };
            let group = group as u32;
            for p in &advisory.affected {
                index.osv.add(group, &advisory.id, p);
            }
            if !advisory.cpe_configurations.is_empty() {
                if let Some(scheme) = &index.nvd_scheme {
                    index.nvd.add(group, &advisory.cpe_configurations, scheme);
                }
            }
        }
        let products: Vec<ProductId> = index.nvd.products().cloned().collect();
        for p in &products {
            index.resolver.add_known_product(p);
        }
        index.stats = IndexStats {
            revision: kb.revision,
            advisories: kb.advisories.len(),
            withdrawn,
            groups: index.groups.len(),
            ecosystems: index.osv.ecosystems.len(),
            packages: index
                .osv
                .ecosystems
                .values()
                .map(|e| e.packages.len())
                .sum(),
            osv_entries: index.osv.entries,
            skipped_affected: index.osv.skipped,
            skip_reasons: index.osv.skip_reasons.clone(),
            cpe_products: products.len(),
            skipped_cpe_entries: index.nvd.skipped_entries,
        };
        index
    }

    /// An index for matching exactly `software` and nothing else, as a one-shot scan needs:
    /// only the advisories that can hit these packages are compiled (with every advisory
    /// sharing an id with them, so groups, severities, KEV and EPSS are those of a full
    /// index). For this software it answers exactly as [`Self::build`] would; `stats()`
    /// describe the selected part.
    pub fn build_for(kb: &KnowledgeBase, software: &[Software]) -> Self {
        MatchIndex::build(&targeted::select(kb, software))
    }

    /// Adds CPE dictionary titles (e.g. "Google Chrome 112.0.5615.49" → google:chrome) to the
    /// names desktop programs resolve through.
    pub fn add_cpe_dictionary<'a>(&mut self, items: impl IntoIterator<Item = (&'a str, &'a Wfn)>) {
        for (title, cpe) in items {
            self.resolver.add_dictionary_title(title, cpe);
        }
    }

    pub fn stats(&self) -> &IndexStats {
        &self.stats
    }

    /// The knowledge revision the index was built from.
    pub fn revision(&self) -> u64 {
        self.stats.revision
    }

    /// Every vulnerability that hits `software`, most severe first.
    pub fn match_software(&self, software: &Software) -> Vec<VulnMatch> {
        let mut out = Vec::new();
        self.match_software_into(software, &mut out);
        out
    }

    /// [`Self::match_software`] appending to a caller's vector (no allocation when nothing
    /// matches).
    pub fn match_software_into(&self, software: &Software, out: &mut Vec<VulnMatch>) {
        let mut hits = Hits::new();
        self.collect_hits(software, &mut hits);
        if hits.is_empty() {
            return;
        }
        hits.sort_by_key(|h| h.group);
        let start = out.len();
        let mut i = 0;
        while i < hits.len() {
            let group = hits[i].group;
            let mut j = i;
            while j < hits.len() && hits[j].group == group {
                j += 1;
            }
            if let Some(m) = self.merge(&hits[i..j]) {
                out.push(m);
            }
            i = j;
        }
        // Vulnerabilities before informational notices, most severe first.
        out[start..].sort_by(|a, b| {
            a.informational
                .cmp(&b.informational)
                .then_with(|| b.severity.cmp(&a.severity))
                .then_with(|| a.id.cmp(&b.id))
        });
    }

    /// How many advisory groups hit `software` (the lookup alone, for benchmarks and counters:
    /// nothing is allocated unless more than a few groups hit).
    pub fn count_matches(&self, software: &Software) -> usize {
        let mut hits = Hits::new();
        self.collect_hits(software, &mut hits);
        hits.sort_unstable_by_key(|h| h.group);
        hits.dedup_by_key(|h| h.group);
        hits.len()
    }

    fn collect_hits<'a>(&'a self, sw: &Software, hits: &mut Hits<'a>) {
        if has_osv_ecosystem(sw) {
            self.osv_hits(sw, hits);
        } else {
            self.cpe_hits(sw, hits);
        }
    }

    fn osv_hits<'a>(&'a self, sw: &Software, hits: &mut Hits<'a>) {
        let mut push = |entry: &'a osv::OsvEntry, method: MatchMethod, fixed: Option<&'a str>| {
            hits.push(Hit {
                group: entry.group,
                method,
                confidence: Confidence::High,
                fixed: Fixed::Osv(fixed),
            })
        };
        if sw.source.is_distro() {
            // Distro advisories are keyed by source package and version; a record without a
            // release (bare "Debian") applies to every release.
            let name = sw.advisory_name();
            let version = sw.advisory_version();
            let base = zt_advisory::base_ecosystem(&sw.ecosystem);
            self.osv
                .for_each_hit(&sw.ecosystem, name, version, &mut |e, m, f| push(e, m, f));
            if base.len() != sw.ecosystem.len() {
                self.osv
                    .for_each_hit(base, name, version, &mut |e, m, f| push(e, m, f));
            }
            // Red Hat family records name binary packages; Debian, Ubuntu and Alpine records
            // name source packages only (a binary name there would be another package).
            if sw.source == AppSource::Rpm && name != sw.name {
                self.osv
                    .for_each_hit(&sw.ecosystem, &sw.name, &sw.version, &mut |e, m, f| {
                        push(e, m, f)
                    });
            }
        } else {
            let version = language_version(&sw.ecosystem, &sw.name, &sw.version);
            self.osv
                .for_each_hit(&sw.ecosystem, &sw.name, version, &mut |e, m, f| {
                    push(e, m, f)
                });
        }
    }

    fn cpe_hits<'a>(&'a self, sw: &Software, hits: &mut Hits<'a>) {
        let Some(scheme) = &self.nvd_scheme else {
            return;
        };
        let platform = platform_of(sw.source);
        // (product, its program name, how it was found)
        let mut candidates: SmallVec<[(Wfn, Confidence); 4]> = SmallVec::new();
        if let Some(given) = sw.cpe.as_deref().and_then(|c| Wfn::parse(c).ok()) {
            if ProductId::of(&given).is_some() {
                let mut target = given;
                if target.version().is_any() || target.version().is_na() {
                    let _ = target.set(Attribute::Version, version_component(&sw.version));
                }
                candidates.push((target, Confidence::High));
            }
        }
        if candidates.is_empty() {
            for r in self.resolver.resolve(&sw.name, sw.vendor.as_deref()) {
                if !self.nvd.has_product(&r.product) {
                    continue;
                }
                let confidence = match r.by {
                    ResolvedBy::Alias | ResolvedBy::Dictionary => Confidence::Medium,
                    ResolvedBy::Fuzzy => Confidence::Low,
                };
                if let Some(target) = program_name(&r.product, &sw.version) {
                    candidates.push((target, confidence));
                }
            }
        }
        let mut found: Vec<CpeHit> = Vec::new();
        for (target, confidence) in &candidates {
            let Some(product) = ProductId::of(target) else {
                continue;
            };
            let version = scheme.parse(&target.version().unquoted());
            let program = Program {
                cpe: target,
                version: version.as_ref(),
                platform: &platform,
            };
            found.clear();
            self.nvd.matches(&product, &program, &mut found);
            for h in found.drain(..) {
                hits.push(Hit {
                    group: h.group,
                    method: MatchMethod::NvdCpe,
                    confidence: if h.certain {
                        *confidence
                    } else {
                        Confidence::Low
                    },
                    fixed: Fixed::Nvd(h.fixed),
                });
            }
        }
    }

    /// One finding from the hits of one group.
    fn merge(&self, hits: &[Hit<'_>]) -> Option<VulnMatch> {
        let first = hits.first()?;
        let g = self.groups.get(first.group as usize)?;
        let mut fixed: Vec<String> = Vec::new();
        let mut add = |v: &str| {
            if !fixed.iter().any(|f| f == v) {
                fixed.push(v.to_string());
            }
        };
        for h in hits {
            match &h.fixed {
                Fixed::Osv(Some(v)) => add(v),
                Fixed::Nvd(Some(v)) => add(v),
                Fixed::Osv(None) | Fixed::Nvd(None) => {}
            }
        }
        // A range match says more than a listed version; the most confident path wins.
        let method = if hits.iter().any(|h| h.method == MatchMethod::OsvRange) {
            MatchMethod::OsvRange
        } else {
            first.method
        };
        let confidence = hits
            .iter()
            .map(|h| h.confidence)
            .max()
            .unwrap_or(Confidence::Low);
        Some(VulnMatch {
            id: g.id.clone(),
            aliases: g.aliases.clone(),
            summary: g.summary.clone(),
            severity: g.severity,
            cvss: g.cvss.clone(),
            fixed_versions: fixed,
            kev: g.kev,
            kev_due_date: g.kev_due_date.clone(),
            epss: g.epss,
            epss_percentile: g.epss_percentile,
            method,
            confidence,
            informational: g.informational.is_some(),
            upstream: g.upstream.clone(),
        })
    }

    /// What the knowledge says of the vulnerability (advisory group) with this id besides the
    /// advisories' content: KEV listing and EPSS. None when no group has this id.
    pub fn enrichment(&self, vuln_id: &str) -> Option<Enrichment> {
        let g = self.groups.get(*self.group_ids.get(vuln_id)? as usize)?;
        Some(Enrichment {
            kev: g.kev,
            kev_due_date: g.kev_due_date.clone(),
            epss: g.epss,
            epss_percentile: g.epss_percentile,
        })
    }

    /// Whether any advisory names this software's package, whatever its version (to tell
    /// "known and clean" from "never heard of").
    pub fn knows_package(&self, sw: &Software) -> bool {
        if sw.source.is_distro() {
            self.osv.knows(&sw.ecosystem, sw.advisory_name())
        } else {
            self.osv.knows(&sw.ecosystem, &sw.name)
        }
    }
}

/// Software whose ecosystem has OSV advisories (language registries and distributions);
/// everything else goes through NVD CPE data.
fn has_osv_ecosystem(sw: &Software) -> bool {
    !matches!(
        sw.source,
        AppSource::Windows
            | AppSource::Macos
            | AppSource::Homebrew
            | AppSource::Snap
            | AppSource::Flatpak
            | AppSource::Conda
            | AppSource::Other
    )
}

/// Versions as OSV writes them for the ecosystem: Go module versions without the `v`
/// (`v1.2.3` → `1.2.3`), the Go toolchain without `go` (`go1.22.1` → `1.22.1`).
fn language_version<'a>(ecosystem: &str, name: &str, version: &'a str) -> &'a str {
    if ecosystem == "Go" {
        if name == "stdlib" || name == "toolchain" {
            if let Some(v) = version.strip_prefix("go") {
                return v;
            }
        }
        if let Some(v) = version.strip_prefix('v') {
            if v.starts_with(|c: char| c.is_ascii_digit()) {
                return v;
            }
        }
    }
    version
}

const WINDOWS: &[(&str, &str)] = &[("microsoft", "windows")];
const MACOS: &[(&str, &str)] = &[
    ("apple", "macos"),
    ("apple", "mac_os_x"),
    ("apple", "mac_os"),
];
const LINUX: &[(&str, &str)] = &[("linux", "linux_kernel")];

/// The operating system a program from `source` runs on, as NVD names it.
fn platform_of(source: AppSource) -> Platform {
    match source {
        AppSource::Windows => Platform::Known(WINDOWS),
        AppSource::Macos | AppSource::Homebrew => Platform::Known(MACOS),
        AppSource::Snap | AppSource::Flatpak => Platform::Known(LINUX),
        _ => Platform::Unknown,
    }
}

/// The CPE name of an installed program: `cpe:2.3:a:VENDOR:PRODUCT:VERSION:*:...`.
fn program_name(product: &ProductId, version: &str) -> Option<Wfn> {
    let mut w = Wfn::new()
        .with_literal(Attribute::Vendor, &product.vendor)
        .and_then(|w| w.with_literal(Attribute::Product, &product.product))
        .ok()?;
    w.set(Attribute::Version, version_component(version)).ok()?;
    w.set(Attribute::Part, Component::Value("a".into())).ok()?;
    Some(w)
}

/// A version as a CPE value: CPE names have no spaces (`7.1.2 build 15` → `7.1.2_build_15`) and
/// only ASCII; anything else is dropped.
fn version_component(version: &str) -> Component {
    let cleaned: String = version
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('_'),
            c if c.is_ascii_graphic() => Some(c),
            _ => None,
        })
        .collect();
    Component::literal(&cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_advisory::{Advisory, AffectedPackage, AffectedRange, RangeEvent, RangeKind, Source};
    use zt_inventory::{App, OsInfo};

    fn advisory(
        id: &str,
        aliases: &[&str],
        eco: &str,
        name: &str,
        events: &[RangeEvent],
    ) -> Advisory {
        let mut a = Advisory::new(id, Source::Osv);
        a.aliases = aliases.iter().map(|s| s.to_string()).collect();
        let mut p = AffectedPackage::new(eco, name);
        p.ranges.push(AffectedRange {
            kind: RangeKind::Ecosystem,
            repo: None,
            events: events.to_vec(),
        });
        a.affected.push(p);
        a
    }

    fn intro(v: &str) -> RangeEvent {
        RangeEvent::Introduced(v.into())
    }
    fn fixed(v: &str) -> RangeEvent {
        RangeEvent::Fixed(v.into())
    }

    fn pypi(name: &str, version: &str) -> Software {
        Software::from_app(
            &App::new(name, version, AppSource::Pypi),
            &OsInfo::default(),
        )
    }

    #[test]
    fn empty_index_matches_nothing() {
        let index = MatchIndex::empty();
        assert!(index.match_software(&pypi("requests", "2.0.0")).is_empty());
        assert_eq!(index.stats(), &IndexStats::default());
    }

    #[test]
    fn aliases_merge_into_one_finding_with_every_fix() {
        let kb = KnowledgeBase {
            advisories: vec![
                advisory(
                    "GHSA-aaaa-bbbb-cccc",
                    &["CVE-2024-0001"],
                    "PyPI",
                    "Foo_Bar",
                    &[intro("0"), fixed("1.5")],
                ),
                advisory(
                    "PYSEC-2024-1",
                    &["CVE-2024-0001"],
                    "PyPI",
                    "foo-bar",
                    &[intro("1.0"), fixed("1.4")],
                ),
            ],
            ..KnowledgeBase::default()
        };
        let index = MatchIndex::build(&kb);
        let found = index.match_software(&pypi("foo.bar", "1.2"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, "CVE-2024-0001");
        assert_eq!(found[0].aliases, ["GHSA-aaaa-bbbb-cccc", "PYSEC-2024-1"]);
        let mut fixes = found[0].fixed_versions.clone();
        fixes.sort();
        assert_eq!(fixes, ["1.4", "1.5"]);
        assert_eq!(found[0].method, MatchMethod::OsvRange);
        assert!(index.match_software(&pypi("foo-bar", "1.5")).is_empty());
    }

    #[test]
    fn withdrawn_and_listed_versions() {
        let mut withdrawn = advisory("GHSA-wwww-wwww-wwww", &[], "PyPI", "foo", &[intro("0")]);
        withdrawn.withdrawn = Some(chrono::Utc::now());
        let mut listed = Advisory::new("PYSEC-2024-2", Source::Osv);
        let mut p = AffectedPackage::new("PyPI", "foo");
        p.versions = vec!["2.0".into(), "2.1".into()];
        listed.affected.push(p);
        let kb = KnowledgeBase {
            advisories: vec![withdrawn, listed],
            ..KnowledgeBase::default()
        };
        let index = MatchIndex::build(&kb);
        assert_eq!(index.stats().withdrawn, 1);
        let found = index.match_software(&pypi("foo", "2.1"));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "PYSEC-2024-2");
        assert_eq!(found[0].method, MatchMethod::OsvVersion);
        assert!(index.match_software(&pypi("foo", "2.2")).is_empty());
    }

    #[test]
    fn distro_packages_use_release_records_and_source_names() {
        let kb = KnowledgeBase {
            advisories: vec![
                advisory(
                    "DSA-1-1",
                    &["CVE-2024-0002"],
                    "Debian:12",
                    "openssl",
                    &[intro("0"), fixed("3.0.11-1~deb12u2")],
                ),
                advisory(
                    "DSA-2-1",
                    &["CVE-2024-0003"],
                    "Debian:11",
                    "openssl",
                    &[intro("0"), fixed("1.1.1w-0+deb11u1")],
                ),
                advisory(
                    "CVE-2024-0004",
                    &[],
                    "Debian",
                    "openssl",
                    &[intro("0"), fixed("3.0.12-1")],
                ),
            ],
            ..KnowledgeBase::default()
        };
        let index = MatchIndex::build(&kb);
        let os = OsInfo {
            id: "debian".into(),
            version_id: "12.4".into(),
            name: String::new(),
        };
        let mut app = App::new("libssl3", "3.0.11-1~deb12u1", AppSource::Dpkg);
        app.source_name = Some("openssl".into());
        let sw = Software::from_app(&app, &os);
        let ids: Vec<String> = index
            .match_software(&sw)
            .into_iter()
            .map(|m| m.id)
            .collect();
        // Debian:12 and the release-less record; never Debian:11's.
        assert_eq!(ids, ["CVE-2024-0002", "CVE-2024-0004"]);
    }

    #[test]
    fn go_versions_drop_the_v() {
        assert_eq!(
            language_version("Go", "golang.org/x/net", "v0.17.0"),
            "0.17.0"
        );
        assert_eq!(language_version("Go", "stdlib", "go1.22.1"), "1.22.1");
        assert_eq!(language_version("Go", "x", "(devel)"), "(devel)");
        assert_eq!(language_version("npm", "v", "v1.0.0"), "v1.0.0");
    }
}
