#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zt_sbom::fuzz_read(data, Some(zt_sbom::Format::Spdx));
});
