//! The storage contract on the SQLite backend: each check on a fresh database file.

mod common;
#[macro_use]
mod conformance;

conformance_tests!(common::fresh_sqlite());
