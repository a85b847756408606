//! Readers for vulnerability feeds (OSV, NVD API 2.0, CISA KEV, EPSS) into the advisory model.
