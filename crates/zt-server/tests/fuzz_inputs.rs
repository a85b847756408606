//! The fuzz target's body over real and garbage inputs (runs in the normal test suite).

use std::io::Write;

use zt_inventory::{Host, InventoryReport, OsInfo};
use zt_server::body::fuzz_inventory_body;
use zt_testkit::shared_path;

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn fuzz_body_survives_real_and_garbage_inputs() {
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    for rel in [
        "inventories/dpkg/debian-12.11-host.status",
        "sboms/cdxgen-npm-cdxgen-project.cdx.json",
    ] {
        let inv = zt_sbom::read_path(&shared_path(rel)).unwrap();
        let report = InventoryReport {
            report_id: uuid::Uuid::new_v4(),
            collected_at: chrono::Utc::now(),
            host: Host {
                hostname: "h".into(),
                os: inv.os.unwrap_or(OsInfo {
                    id: "linux".into(),
                    ..Default::default()
                }),
                arch: "x86_64".into(),
            },
            apps: inv.apps,
            tags: None,
        };
        let json = serde_json::to_vec(&report).unwrap();
        assert!(zt_server::body::parse_inventory(&json).is_ok());
        inputs.push(gz(&json));
        // Truncations and bit flips of a real report.
        for cut in [1, 10, json.len() / 2, json.len() - 1] {
            inputs.push(json[..cut].to_vec());
        }
        let mut flipped = json.clone();
        for i in (0..flipped.len()).step_by(97) {
            flipped[i] ^= 0x20;
        }
        inputs.push(flipped);
        inputs.push(json);
    }
    inputs.push(std::fs::read(shared_path("inventories/apk/trivy-apk.installed")).unwrap());
    inputs.extend([
        b"".to_vec(),
        vec![0x1f, 0x8b],
        vec![0xff; 64],
        b"{}".to_vec(),
        gz(&[0u8; 4096]),
    ]);
    for input in &inputs {
        fuzz_inventory_body(input);
    }
}
