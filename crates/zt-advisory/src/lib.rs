//! The normalized vulnerability-knowledge model: advisories, affected ranges, CVSS, KEV, EPSS,
//! alias groups. Pure data and pure functions; feed readers and the matcher build on it.
//!
//! CONTRACT (zt-feeds produces it, zt-store stores it, zt-match consumes it):
//! - [`Advisory`] with [`AffectedPackage`] / [`AffectedRange`] / [`RangeEvent`] (OSV shape) and
//!   [`CpeConfiguration`] (NVD), computed [`Cvss`] scores and source [`SeverityLabel`]s;
//! - [`KevEntry`], [`EpssScore`], [`KnowledgeBase`];
//! - [`group_advisories`] / [`KnowledgeBase::groups`] → [`AliasGroups`] (one vulnerability = one
//!   group; rules in the `group` module documentation).

mod advisory;
mod group;
pub mod import;
mod knowledge;
mod severity;

pub use advisory::{
    base_ecosystem, best_cvss, is_cve_id, Advisory, AffectedPackage, AffectedRange,
    CpeConfiguration, CpeMatch, CpeNode, CpeOperator, RangeEvent, RangeKind, SeverityLabel, Source,
};
pub use group::{group_advisories, AdvisoryGroup, AliasGroups};
pub use knowledge::{EpssScore, KevEntry, KnowledgeBase};
pub use severity::{Cvss, CvssError, CvssVersion, Severity};
