#![no_main]
//! The node-semver range parser: a range and a version, evaluated with every option.

use libfuzzer_sys::fuzz_target;
use zt_version::fuzzing;

fuzz_target!(|data: &[u8]| fuzzing::check_npm_range(data));
