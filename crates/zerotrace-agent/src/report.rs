//! Turning a collection into the wire report, its gzip body, and the printable formats.

use std::io::Write;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;
use zt_collect::Collection;
use zt_inventory::{Host, InventoryReport};

/// This host's name as the OS reports it.
pub fn hostname() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// The machine architecture (`x86_64`, `aarch64`).
pub fn arch() -> String {
    std::env::consts::ARCH.to_string()
}

/// A new report (fresh `report_id`, collected now) of a collection, with the host's tags
/// (always sent, empty or not, so that removing the last tag reaches the server too).
pub fn build_report(collection: &Collection, tags: &[String]) -> InventoryReport {
    InventoryReport {
        report_id: Uuid::new_v4(),
        collected_at: Utc::now(),
        host: Host {
            hostname: hostname(),
            os: collection.os.clone(),
            arch: arch(),
        },
        apps: collection.apps.clone(),
        tags: Some(tags.to_vec()),
    }
}

pub fn gzip_json(report: &InventoryReport) -> anyhow::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    serde_json::to_writer(&mut enc, report)?;
    enc.flush()?;
    Ok(enc.finish()?)
}

/// A CycloneDX 1.5 JSON document of the report: the host as the BOM's subject, the OS as an
/// `operating-system` component, every app as a component with its purl, and what has no
/// CycloneDX field (source, source package, architecture) as `zerotrace:` properties.
pub fn cyclonedx(report: &InventoryReport) -> serde_json::Value {
    let mut refs = std::collections::HashSet::new();
    let mut components = vec![json!({
        "type": "operating-system",
        "bom-ref": "os",
        "name": report.host.os.id,
        "version": report.host.os.version_id,
        "description": report.host.os.name,
    })];
    for (i, app) in report.apps.iter().enumerate() {
        let bom_ref = match &app.purl {
            Some(p) if refs.insert(p.clone()) => p.clone(),
            _ => format!("app-{i}"),
        };
        let kind = match app.source {
            zt_inventory::AppSource::Pypi
            | zt_inventory::AppSource::Npm
            | zt_inventory::AppSource::Cargo => "library",
            _ => "application",
        };
        let mut properties =
            vec![json!({"name": "zerotrace:source", "value": app.source.as_str()})];
        for (name, value) in [
            ("zerotrace:source_name", &app.source_name),
            ("zerotrace:source_version", &app.source_version),
            ("zerotrace:arch", &app.arch),
        ] {
            if let Some(v) = value {
                properties.push(json!({"name": name, "value": v}));
            }
        }
        let mut c = json!({
            "type": kind,
            "bom-ref": bom_ref,
            "name": app.name,
            "version": app.version,
            "properties": properties,
        });
        if let Some(p) = &app.purl {
            c["purl"] = json!(p);
        }
        if let Some(v) = &app.vendor {
            c["publisher"] = json!(v);
        }
        if let Some(cpe) = &app.cpe {
            c["cpe"] = json!(cpe);
        }
        components.push(c);
    }
    json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": format!("urn:uuid:{}", report.report_id),
        "version": 1,
        "metadata": {
            "timestamp": report.collected_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "tools": {"components": [{
                "type": "application",
                "name": "zerotrace-agent",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "device",
                "bom-ref": "host",
                "name": report.host.hostname,
                "properties": [{"name": "zerotrace:arch", "value": report.host.arch}],
            },
        },
        "components": components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zt_inventory::{App, AppSource, OsInfo};

    fn report() -> InventoryReport {
        let mut deb = App::new("libssl3", "3.0.11-1~deb12u2", AppSource::Dpkg);
        deb.source_name = Some("openssl".into());
        deb.purl = Some("pkg:deb/debian/libssl3@3.0.11-1~deb12u2".into());
        let c = Collection {
            os: OsInfo {
                id: "debian".into(),
                version_id: "12".into(),
                name: "Debian GNU/Linux 12 (bookworm)".into(),
            },
            apps: vec![
                deb.clone(),
                deb,
                App::new("requests", "2.31.0", AppSource::Pypi),
            ],
            ..Collection::default()
        };
        build_report(&c, &["env=prod".to_string()])
    }

    #[test]
    fn gzip_round_trips_to_a_valid_report() {
        let r = report();
        let gz = gzip_json(&r).unwrap();
        let mut json = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
        assert_eq!(zt_inventory::parse_report(&json).unwrap(), r);
    }

    #[test]
    fn cyclonedx_has_unique_refs_and_properties() {
        let bom = cyclonedx(&report());
        assert_eq!(bom["specVersion"], "1.5");
        let comps = bom["components"].as_array().unwrap();
        assert_eq!(comps.len(), 4);
        assert_eq!(comps[0]["type"], "operating-system");
        assert_eq!(comps[0]["version"], "12");
        let refs: std::collections::HashSet<_> = comps
            .iter()
            .map(|c| c["bom-ref"].as_str().unwrap())
            .collect();
        assert_eq!(refs.len(), 4);
        assert_eq!(comps[1]["purl"], "pkg:deb/debian/libssl3@3.0.11-1~deb12u2");
        assert!(comps[1]["properties"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "zerotrace:source_name", "value": "openssl"})));
        assert_eq!(comps[3]["type"], "library");
    }
}
