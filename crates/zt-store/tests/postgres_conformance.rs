//! The storage contract on the PostgreSQL backend: each check on a database of its own (see
//! zt_testkit::postgres for which server), with few partitions to keep schema creation quick.

mod common;
#[macro_use]
mod conformance;

conformance_tests!(common::fresh_pg(4));
