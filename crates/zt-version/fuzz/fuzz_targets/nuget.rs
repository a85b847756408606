#![no_main]
//! The nuget version parser: up to three newline-separated strings, parsed and compared.

use libfuzzer_sys::fuzz_target;
use zt_version::{fuzzing, Scheme};

fuzz_target!(|data: &[u8]| fuzzing::check_scheme(Scheme::NuGet, data));
