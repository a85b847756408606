//! NVD CVE records → [`Advisory`]: the CVE API 2.0 (`vulnerabilities[].cve`, a bare `cve`
//! object, or `{"cve": …}`) and the retired 1.1 JSON feed (`CVE_Items[]`).

use serde::Deserialize;
use serde_json::Value;
use zt_advisory::{
    Advisory, CpeConfiguration, CpeMatch, CpeNode, CpeOperator, Cvss, SeverityLabel, Source,
};

use crate::osv::describe_serde_error;
use crate::time::parse_timestamp;
use crate::{severity_label, RecordFailure};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NvdCve {
    id: String,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default)]
    vuln_status: Option<String>,
    #[serde(default)]
    descriptions: Vec<LangString>,
    #[serde(default)]
    metrics: Option<NvdMetrics>,
    #[serde(default)]
    weaknesses: Vec<NvdWeakness>,
    #[serde(default)]
    configurations: Vec<NvdConfiguration>,
    #[serde(default)]
    references: Vec<NvdReference>,
}

#[derive(Debug, Deserialize)]
struct LangString {
    #[serde(default)]
    lang: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct NvdReference {
    #[serde(default)]
    url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NvdWeakness {
    #[serde(default)]
    description: Vec<LangString>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NvdMetrics {
    #[serde(default)]
    pub(crate) cvss_metric_v40: Vec<NvdMetric>,
    #[serde(default)]
    pub(crate) cvss_metric_v31: Vec<NvdMetric>,
    #[serde(default)]
    pub(crate) cvss_metric_v30: Vec<NvdMetric>,
    #[serde(default)]
    pub(crate) cvss_metric_v2: Vec<NvdMetric>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NvdMetric {
    #[serde(default)]
    pub(crate) source: Option<String>,
    pub(crate) cvss_data: NvdCvssData,
    /// v2 keeps its severity beside cvssData.
    #[serde(default)]
    pub(crate) base_severity: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NvdCvssData {
    pub(crate) vector_string: String,
    #[serde(default)]
    pub(crate) base_score: Option<f64>,
    #[serde(default)]
    pub(crate) base_severity: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NvdConfiguration {
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    negate: Option<bool>,
    #[serde(default)]
    nodes: Vec<NvdNode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NvdNode {
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    negate: Option<bool>,
    #[serde(default)]
    cpe_match: Vec<NvdCpeMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NvdCpeMatch {
    vulnerable: bool,
    criteria: String,
    #[serde(default)]
    version_start_including: Option<String>,
    #[serde(default)]
    version_start_excluding: Option<String>,
    #[serde(default)]
    version_end_including: Option<String>,
    #[serde(default)]
    version_end_excluding: Option<String>,
}

/// True for an API 2.0 `cve` object.
pub(crate) fn looks_like_nvd_cve(v: &Value) -> bool {
    v.get("id").is_some_and(Value::is_string)
        && (v.get("sourceIdentifier").is_some()
            || v.get("lastModified").is_some()
            || v.get("vulnStatus").is_some())
}

/// The record id of a `cve` object for error reports.
pub(crate) fn cve_id_of(v: &Value) -> Option<String> {
    v.get("id").and_then(Value::as_str).map(str::to_string)
}

/// Converts one API 2.0 `cve` object.
pub(crate) fn parse_cve_value(v: Value) -> Result<Advisory, RecordFailure> {
    let id = cve_id_of(&v);
    let raw: NvdCve = serde_path_to_error::deserialize(v).map_err(|e| RecordFailure {
        record_id: id.clone(),
        reason: describe_serde_error(&e),
    })?;
    convert(raw)
}

fn convert(raw: NvdCve) -> Result<Advisory, RecordFailure> {
    let id = raw.id.trim().to_string();
    let fail = |reason: String| RecordFailure {
        record_id: Some(id.clone()),
        reason,
    };
    if id.is_empty() {
        return Err(fail("empty id".into()));
    }
    let mut adv = Advisory::new(id.clone(), Source::Nvd);
    let ts = |field: &str, v: &Option<String>| -> Result<_, RecordFailure> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => parse_timestamp(s)
                .map(Some)
                .ok_or_else(|| fail(format!("{field}: invalid timestamp {s:?}"))),
        }
    };
    adv.published = ts("published", &raw.published)?;
    adv.modified = ts("lastModified", &raw.last_modified)?;
    if raw
        .vuln_status
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("rejected"))
    {
        // A rejected CVE is NVD's withdrawal: keep it, never match it.
        adv.withdrawn = adv.modified.or(adv.published);
    }
    adv.details = english(&raw.descriptions);
    adv.references = raw.references.into_iter().filter_map(|r| r.url).collect();
    for w in raw.weaknesses {
        for d in w.description {
            if d.value.starts_with("CWE-") && !adv.cwes.contains(&d.value) {
                adv.cwes.push(d.value);
            }
        }
    }
    if let Some(m) = raw.metrics {
        add_metrics(&mut adv, m);
    }
    for c in raw.configurations {
        let nodes = c
            .nodes
            .into_iter()
            .map(|n| CpeNode {
                operator: operator(n.operator.as_deref()),
                negate: n.negate.unwrap_or(false),
                cpe_match: n
                    .cpe_match
                    .into_iter()
                    .map(|m| CpeMatch {
                        vulnerable: m.vulnerable,
                        criteria: m.criteria,
                        version_start_including: m.version_start_including,
                        version_start_excluding: m.version_start_excluding,
                        version_end_including: m.version_end_including,
                        version_end_excluding: m.version_end_excluding,
                    })
                    .collect(),
            })
            .collect();
        adv.cpe_configurations.push(CpeConfiguration {
            operator: operator(c.operator.as_deref()),
            negate: c.negate.unwrap_or(false),
            nodes,
        });
    }
    Ok(adv)
}

fn add_metrics(adv: &mut Advisory, m: NvdMetrics) {
    let all = m
        .cvss_metric_v40
        .into_iter()
        .chain(m.cvss_metric_v31)
        .chain(m.cvss_metric_v30)
        .chain(m.cvss_metric_v2);
    for metric in all {
        // NVD's vectors are well-formed in practice; an unscorable one is left out rather than
        // losing the record.
        if let Ok(c) = Cvss::from_vector(&metric.cvss_data.vector_string) {
            if !adv.cvss.iter().any(|x| x.vector == c.vector) {
                adv.cvss.push(c);
            }
        }
        let label = metric
            .cvss_data
            .base_severity
            .or(metric.base_severity)
            .unwrap_or_default();
        if !label.is_empty() {
            let l = SeverityLabel {
                source: metric.source.unwrap_or_else(|| "nvd".into()),
                severity: severity_label(&label),
                label,
            };
            if !adv.severity_labels.contains(&l) {
                adv.severity_labels.push(l);
            }
        }
    }
}

fn english(d: &[LangString]) -> String {
    d.iter()
        .find(|d| d.lang == "en")
        .or_else(|| d.first())
        .map(|d| d.value.clone())
        .unwrap_or_default()
}

fn operator(s: Option<&str>) -> CpeOperator {
    match s {
        Some(o) if o.eq_ignore_ascii_case("and") => CpeOperator::And,
        _ => CpeOperator::Or,
    }
}

// ---- the retired 1.1 JSON feed ----

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyItem {
    cve: LegacyCve,
    #[serde(default)]
    configurations: Option<LegacyConfigurations>,
    #[serde(default)]
    impact: Option<Value>,
    #[serde(default)]
    published_date: Option<String>,
    #[serde(default)]
    last_modified_date: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LegacyCve {
    #[serde(rename = "CVE_data_meta")]
    meta: LegacyMeta,
    #[serde(default)]
    description: Option<LegacyDescription>,
    #[serde(default)]
    references: Option<LegacyReferences>,
}

#[derive(Debug, Deserialize)]
struct LegacyMeta {
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Debug, Deserialize)]
struct LegacyDescription {
    #[serde(default)]
    description_data: Vec<LangString>,
}

#[derive(Debug, Deserialize)]
struct LegacyReferences {
    #[serde(default)]
    reference_data: Vec<NvdReference>,
}

#[derive(Debug, Deserialize)]
struct LegacyConfigurations {
    #[serde(default)]
    nodes: Vec<LegacyNode>,
}

#[derive(Debug, Deserialize)]
struct LegacyNode {
    #[serde(default)]
    operator: Option<String>,
    #[serde(default)]
    negate: Option<bool>,
    #[serde(default)]
    children: Vec<LegacyNode>,
    #[serde(default)]
    cpe_match: Vec<LegacyCpeMatch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LegacyCpeMatch {
    vulnerable: bool,
    cpe23_uri: String,
    #[serde(default)]
    version_start_including: Option<String>,
    #[serde(default)]
    version_start_excluding: Option<String>,
    #[serde(default)]
    version_end_including: Option<String>,
    #[serde(default)]
    version_end_excluding: Option<String>,
}

pub(crate) fn legacy_id_of(v: &Value) -> Option<String> {
    v.pointer("/cve/CVE_data_meta/ID")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Converts one `CVE_Items[]` entry of the 1.1 feed.
pub(crate) fn parse_legacy_value(v: Value) -> Result<Advisory, RecordFailure> {
    let id = legacy_id_of(&v);
    let raw: LegacyItem = serde_path_to_error::deserialize(v).map_err(|e| RecordFailure {
        record_id: id.clone(),
        reason: describe_serde_error(&e),
    })?;
    let id = raw.cve.meta.id.trim().to_string();
    let fail = |reason: String| RecordFailure {
        record_id: Some(id.clone()),
        reason,
    };
    let mut adv = Advisory::new(id.clone(), Source::Nvd);
    adv.published = match raw.published_date.as_deref() {
        Some(s) => Some(parse_timestamp(s).ok_or_else(|| fail(format!("publishedDate {s:?}")))?),
        None => None,
    };
    adv.modified = match raw.last_modified_date.as_deref() {
        Some(s) => Some(parse_timestamp(s).ok_or_else(|| fail(format!("lastModifiedDate {s:?}")))?),
        None => None,
    };
    if let Some(d) = raw.cve.description {
        adv.details = english(&d.description_data);
    }
    if let Some(r) = raw.cve.references {
        adv.references = r.reference_data.into_iter().filter_map(|r| r.url).collect();
    }
    if let Some(impact) = raw.impact {
        for (ptr, sev_ptr) in [
            (
                "/baseMetricV3/cvssV3/vectorString",
                "/baseMetricV3/cvssV3/baseSeverity",
            ),
            (
                "/baseMetricV2/cvssV2/vectorString",
                "/baseMetricV2/severity",
            ),
        ] {
            if let Some(vector) = impact.pointer(ptr).and_then(Value::as_str) {
                if let Ok(c) = Cvss::from_vector(vector) {
                    adv.cvss.push(c);
                }
            }
            if let Some(label) = impact.pointer(sev_ptr).and_then(Value::as_str) {
                adv.severity_labels.push(SeverityLabel {
                    source: "nvd".into(),
                    label: label.to_string(),
                    severity: severity_label(label),
                });
            }
        }
    }
    for node in raw.configurations.map(|c| c.nodes).unwrap_or_default() {
        adv.cpe_configurations.push(legacy_configuration(node));
    }
    Ok(adv)
}

/// The 1.1 feed nests "running on" statements as a node with children; API 2.0 spells the
/// same as a configuration with nodes. Children of children do not occur in NVD data; they are
/// flattened into their parent's level.
fn legacy_configuration(node: LegacyNode) -> CpeConfiguration {
    let op = operator(node.operator.as_deref());
    let negate = node.negate.unwrap_or(false);
    if node.children.is_empty() {
        return CpeConfiguration {
            operator: CpeOperator::Or,
            negate: false,
            nodes: vec![legacy_leaf(op, negate, node.cpe_match)],
        };
    }
    let mut nodes = Vec::new();
    let mut stack = node.children;
    while let Some(child) = stack.pop() {
        let child_op = operator(child.operator.as_deref());
        let child_negate = child.negate.unwrap_or(false);
        stack.extend(child.children);
        nodes.push(legacy_leaf(child_op, child_negate, child.cpe_match));
    }
    nodes.reverse();
    CpeConfiguration {
        operator: op,
        negate,
        nodes,
    }
}

fn legacy_leaf(op: CpeOperator, negate: bool, matches: Vec<LegacyCpeMatch>) -> CpeNode {
    CpeNode {
        operator: op,
        negate,
        cpe_match: matches
            .into_iter()
            .map(|m| CpeMatch {
                vulnerable: m.vulnerable,
                criteria: m.cpe23_uri,
                version_start_including: m.version_start_including,
                version_start_excluding: m.version_start_excluding,
                version_end_including: m.version_end_including,
                version_end_excluding: m.version_end_excluding,
            })
            .collect(),
    }
}

/// Every CVSS metric of an API 2.0 `cve` object with the score NVD published for it; for the
/// test that our computed scores agree with NVD's.
pub fn published_nvd_scores(cve: &Value) -> Vec<(String, f64)> {
    let Some(metrics) = cve.get("metrics") else {
        return Vec::new();
    };
    let Ok(m) = serde_json::from_value::<NvdMetrics>(metrics.clone()) else {
        return Vec::new();
    };
    m.cvss_metric_v40
        .into_iter()
        .chain(m.cvss_metric_v31)
        .chain(m.cvss_metric_v30)
        .chain(m.cvss_metric_v2)
        .filter_map(|x| {
            x.cvss_data
                .base_score
                .map(|s| (x.cvss_data.vector_string, s))
        })
        .collect()
}
