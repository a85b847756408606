//! The in-memory match index: packages against advisories (OSV ranges, distro fixes, NVD CPE).
