//! NVD applicability statements: CPE configurations compiled once, indexed by the
//! vendor:product of their vulnerable entries, and evaluated against one program and the
//! platform it runs on.
//!
//! A configuration is a tree: nodes of `cpeMatch` entries joined by AND/OR (optionally
//! negated), nodes joined by the configuration's operator. "Running on" statements are an AND of
//! a vulnerable node (the program) and a non-vulnerable node (the platform: an OS, a device).
//! Evaluation is three-valued: what is known about the program and its host decides; what is
//! not known (the hardware, other programs beside it, an unknown OS) is `Unknown`, which still
//! reports the finding but with low confidence.

use std::collections::HashMap;

use zt_advisory::{CpeConfiguration, CpeMatch, CpeOperator};
use zt_cpe::{compare_attribute, Attribute, Component, ProductId, Relation, Wfn};

use crate::versions::{Parsed, Scheme};

/// Three-valued truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }

    fn combine(operator: CpeOperator, items: impl Iterator<Item = Tri>) -> Tri {
        let mut saw_unknown = false;
        let mut saw_any = false;
        for t in items {
            saw_any = true;
            match (operator, t) {
                (CpeOperator::Or, Tri::True) => return Tri::True,
                (CpeOperator::And, Tri::False) => return Tri::False,
                (_, Tri::Unknown) => saw_unknown = true,
                _ => {}
            }
        }
        if !saw_any {
            return Tri::False;
        }
        match (operator, saw_unknown) {
            (_, true) => Tri::Unknown,
            (CpeOperator::Or, false) => Tri::False,
            (CpeOperator::And, false) => Tri::True,
        }
    }
}

/// The host a program runs on, as far as the inventory says.
#[derive(Debug, Clone)]
pub(crate) enum Platform {
    /// The operating system products the host is (e.g. `microsoft:windows`).
    Known(&'static [(&'static str, &'static str)]),
    Unknown,
}

/// What is known about the program being matched.
pub(crate) struct Program<'a> {
    pub(crate) cpe: &'a Wfn,
    pub(crate) version: Option<&'a Parsed>,
    pub(crate) platform: &'a Platform,
}

#[derive(Debug)]
struct Entry {
    vulnerable: bool,
    criteria: Wfn,
    product: Option<ProductId>,
    exact_version: Option<Parsed>,
    start: Option<(Parsed, bool)>,
    end: Option<(Parsed, bool)>,
    /// `versionEndExcluding`: the first fixed version.
    fixed: Option<String>,
}

#[derive(Debug)]
struct Node {
    operator: CpeOperator,
    negate: bool,
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Config {
    group: u32,
    operator: CpeOperator,
    negate: bool,
    nodes: Vec<Node>,
}

/// Where a vulnerable entry sits.
#[derive(Debug, Clone, Copy)]
struct EntryRef {
    config: u32,
    node: u16,
    entry: u16,
}

/// A configuration that holds for a program.
#[derive(Debug, Clone)]
pub(crate) struct CpeHit {
    pub(crate) group: u32,
    pub(crate) fixed: Option<String>,
    /// False when an unknown fact (hardware, platform, a companion program) was assumed.
    pub(crate) certain: bool,
}

#[derive(Debug, Default)]
pub(crate) struct NvdIndex {
    configs: Vec<Config>,
    by_product: HashMap<ProductId, Vec<EntryRef>>,
    pub(crate) skipped_entries: usize,
}

impl NvdIndex {
    pub(crate) fn add(&mut self, group: u32, configurations: &[CpeConfiguration], scheme: &Scheme) {
        for c in configurations {
            let config_index = self.configs.len() as u32;
            let mut nodes = Vec::with_capacity(c.nodes.len());
            for (ni, n) in c.nodes.iter().enumerate() {
                let mut entries = Vec::with_capacity(n.cpe_match.len());
                for m in &n.cpe_match {
                    match compile_entry(m, scheme) {
                        Some(e) => {
                            if e.vulnerable {
                                if let Some(p) = &e.product {
                                    self.by_product
                                        .entry(p.clone())
                                        .or_default()
                                        .push(EntryRef {
                                            config: config_index,
                                            node: ni as u16,
                                            entry: entries.len() as u16,
                                        });
                                }
                            }
                            entries.push(e);
                        }
                        None => self.skipped_entries += 1,
                    }
                }
                nodes.push(Node {
                    operator: n.operator,
                    negate: n.negate,
                    entries,
                });
            }
            self.configs.push(Config {
                group,
                operator: c.operator,
                negate: c.negate,
                nodes,
            });
        }
    }

    /// Every vendor:product named by a vulnerable entry.
    pub(crate) fn products(&self) -> impl Iterator<Item = &ProductId> {
        self.by_product.keys()
    }

    pub(crate) fn has_product(&self, p: &ProductId) -> bool {
        self.by_product.contains_key(p)
    }

    /// The configurations of vulnerable entries for `product` that hold for the program.
    pub(crate) fn matches(
        &self,
        product: &ProductId,
        program: &Program<'_>,
        out: &mut Vec<CpeHit>,
    ) {
        let Some(refs) = self.by_product.get(product) else {
            return;
        };
        for r in refs {
            let config = &self.configs[r.config as usize];
            let entry = &config.nodes[r.node as usize].entries[r.entry as usize];
            if !entry.matches_program(program) {
                continue;
            }
            let verdict = config.evaluate(program);
            if verdict == Tri::False {
                continue;
            }
            out.push(CpeHit {
                group: config.group,
                fixed: entry.fixed.clone(),
                certain: verdict == Tri::True,
            });
        }
    }
}

fn compile_entry(m: &CpeMatch, scheme: &Scheme) -> Option<Entry> {
    let criteria = Wfn::parse(&m.criteria).ok()?;
    let product = ProductId::of(&criteria);
    let bound = |v: &Option<String>, inclusive: bool| -> Option<Option<(Parsed, bool)>> {
        match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Some(None),
            // An unreadable bound would widen the range: drop the entry instead.
            Some(s) => scheme.parse(s).map(|p| Some((p, inclusive))),
        }
    };
    let start = match (&m.version_start_including, &m.version_start_excluding) {
        (Some(_), _) => bound(&m.version_start_including, true)?,
        (None, Some(_)) => bound(&m.version_start_excluding, false)?,
        _ => None,
    };
    let end = match (&m.version_end_including, &m.version_end_excluding) {
        (Some(_), _) => bound(&m.version_end_including, true)?,
        (None, Some(_)) => bound(&m.version_end_excluding, false)?,
        _ => None,
    };
    let exact_version = match criteria.version() {
        Component::Value(_) if !criteria.version().has_wildcards() => {
            scheme.parse(&criteria.version().unquoted())
        }
        _ => None,
    };
    Some(Entry {
        vulnerable: m.vulnerable,
        product,
        exact_version,
        start,
        end,
        fixed: m
            .version_end_excluding
            .as_deref()
            .filter(|_| m.version_end_including.is_none())
            .map(str::to_string),
        criteria,
    })
}

impl Entry {
    /// Does this entry name the program itself (product, version, other attributes)?
    fn matches_program(&self, program: &Program<'_>) -> bool {
        let target = program.cpe;
        for attr in [Attribute::Part, Attribute::Vendor, Attribute::Product] {
            if !matches!(
                compare_attribute(self.criteria.get(attr), target.get(attr)),
                Relation::Equal | Relation::Superset
            ) {
                return false;
            }
        }
        // Attributes the inventory does not know (ANY in the program's name) are not held
        // against the match; only a contradiction is.
        for attr in [
            Attribute::Update,
            Attribute::Edition,
            Attribute::Language,
            Attribute::SwEdition,
            Attribute::TargetSw,
            Attribute::TargetHw,
            Attribute::Other,
        ] {
            if compare_attribute(self.criteria.get(attr), target.get(attr)) == Relation::Disjoint {
                return false;
            }
        }
        self.version_matches(program)
    }

    fn version_matches(&self, program: &Program<'_>) -> bool {
        match self.criteria.version() {
            Component::Na => return program.cpe.version().is_na(),
            Component::Value(_) => {
                return match (&self.exact_version, program.version) {
                    (Some(want), Some(have)) => want == have,
                    // Unparsable on either side: the text decides (a wildcard pattern, or an
                    // odd version string spelled the same way).
                    _ => matches!(
                        compare_attribute(self.criteria.version(), program.cpe.version()),
                        Relation::Equal | Relation::Superset
                    ),
                };
            }
            Component::Any => {}
        }
        if self.start.is_none() && self.end.is_none() {
            return true;
        }
        let Some(v) = program.version else {
            return false;
        };
        if let Some((s, inclusive)) = &self.start {
            if v < s || (!inclusive && v == s) {
                return false;
            }
        }
        if let Some((e, inclusive)) = &self.end {
            if v > e || (!inclusive && v == e) {
                return false;
            }
        }
        true
    }

    /// This entry's truth for the program's host: the program itself, its platform, or
    /// unknown.
    fn evaluate(&self, program: &Program<'_>) -> Tri {
        if self.matches_program(program) {
            return Tri::True;
        }
        if self.vulnerable {
            // Another vulnerable product is another finding, not a condition of this one.
            return Tri::False;
        }
        let part = self.criteria.part().value().unwrap_or("");
        match (part, program.platform) {
            ("o", Platform::Known(products)) => {
                let Some(p) = &self.product else {
                    return Tri::Unknown;
                };
                if products
                    .iter()
                    .any(|(v, prod)| p.vendor == *v && p.product == *prod)
                {
                    Tri::True
                } else {
                    Tri::False
                }
            }
            _ => Tri::Unknown,
        }
    }
}

impl Config {
    fn evaluate(&self, program: &Program<'_>) -> Tri {
        let nodes = self.nodes.iter().map(|n| {
            let t = Tri::combine(n.operator, n.entries.iter().map(|e| e.evaluate(program)));
            if n.negate {
                t.not()
            } else {
                t
            }
        });
        let t = Tri::combine(self.operator, nodes);
        if self.negate {
            t.not()
        } else {
            t
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_valued_logic() {
        use Tri::*;
        let and = |v: &[Tri]| Tri::combine(CpeOperator::And, v.iter().copied());
        let or = |v: &[Tri]| Tri::combine(CpeOperator::Or, v.iter().copied());
        assert_eq!(and(&[True, True]), True);
        assert_eq!(and(&[True, Unknown]), Unknown);
        assert_eq!(and(&[False, Unknown]), False);
        assert_eq!(or(&[False, Unknown]), Unknown);
        assert_eq!(or(&[False, True]), True);
        assert_eq!(or(&[]), False);
        assert_eq!(Unknown.not(), Unknown);
    }
}
