//! CPE 2.3 names: parsing, binding (formatted string and URI) and matching (no I/O).
