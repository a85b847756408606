#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zt_collect::fuzz_bodies::apk_installed(data);
});
