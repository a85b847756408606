//! Per-ecosystem version parsing and ordering, and OSV affected-range evaluation (no I/O).
