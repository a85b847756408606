#![no_main]
//! The osv reader must never panic, whatever the bytes.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zt_feeds::fuzz_one(zt_feeds::Format::OsvRecord, data);
});
