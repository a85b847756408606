//! The normalized vulnerability-knowledge model: advisories, affected ranges, CVSS, KEV, EPSS,
//! alias groups. Pure data and pure functions; feed readers and the matcher build on it.

mod severity;

pub use severity::{Cvss, CvssVersion, Severity};
