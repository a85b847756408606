//! The normalized vulnerability-knowledge model: advisories, affected ranges, CVSS, KEV, EPSS, alias groups.
