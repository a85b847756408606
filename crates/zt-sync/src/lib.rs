//! Online feed synchronisation: NVD API 2.0, OSV bulk downloads, KEV, EPSS with caching and rate limits.
