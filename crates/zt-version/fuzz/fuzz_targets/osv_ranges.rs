#![no_main]
//! OSV range compilation and evaluation: a selector byte, a query version, then events.

use libfuzzer_sys::fuzz_target;
use zt_version::fuzzing;

fuzz_target!(|data: &[u8]| fuzzing::check_osv_ranges(data));
