//! The storage contract on a Citus cluster (issue 18): every conformance check on a database
//! of its own, its schema distributed by company (see zt_testkit::citus for which cluster).
//! Without Citus on this machine each check returns at once and the run says loudly that the
//! suite was skipped (README.md, "Running on Citus" > "Tests").

mod common;
#[macro_use]
mod conformance;

conformance_tests!(common::fresh_citus(module_path!()));
