//! Inventory request bodies as they arrive: gzip or JSON, well-formed or not.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    zt_server::body::fuzz_inventory_body(data);
});
