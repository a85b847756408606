#![no_main]

use libfuzzer_sys::fuzz_target;

// Format detection plus whichever reader it picks (dpkg status, apk db, agent report...).
fuzz_target!(|data: &[u8]| {
    zt_sbom::fuzz_read(data, None);
});
