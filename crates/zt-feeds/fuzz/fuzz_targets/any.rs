#![no_main]
//! Content detection, gzip and zip handling on arbitrary bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zt_feeds::fuzz_any(data);
});
