#![no_main]

use libfuzzer_sys::fuzz_target;

// Both readers (CycloneDX VEX and OpenVEX, told apart by the document); a document read
// whole is written back in both formats and read again.
fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = zt_vex::parse(data) {
        let cdx = zt_vex::write_cyclonedx(&doc, "00000000-0000-4000-8000-000000000000", "0");
        zt_vex::parse(cdx.to_string().as_bytes()).expect("our CycloneDX reads back");
        let ovx = zt_vex::write_openvex(&doc, "urn:uuid:00000000-0000-4000-8000-000000000000");
        zt_vex::parse(ovx.to_string().as_bytes()).expect("our OpenVEX reads back");
    }
});
