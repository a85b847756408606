//! CycloneDX JSON, specification versions 1.0–1.7.
//!
//! Own lenient structs rather than `cyclonedx-bom` (which reads only up to 1.5): only what
//! matching needs is read, unknown fields are ignored, so newer minor versions keep working.

use serde::Deserialize;
use zt_inventory::{App, AppSource, OsInfo};

use crate::purl::{app_from_purl, PurlError};
use crate::{distro, Inventory, SbomError};

#[derive(Deserialize)]
struct Bom {
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    #[serde(rename = "specVersion")]
    spec_version: Option<String>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    component: Option<Component>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Component {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    group: Option<String>,
    version: Option<String>,
    purl: Option<String>,
    cpe: Option<String>,
    publisher: Option<String>,
    supplier: Option<Supplier>,
    properties: Vec<Property>,
    components: Vec<Component>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Supplier {
    name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Property {
    name: String,
    value: Option<String>,
}

impl Component {
    fn property(&self, name: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.value.as_deref())
            .filter(|v| !v.is_empty())
    }
}

/// Component types that are never installed software.
fn is_package_type(kind: &str) -> bool {
    !matches!(
        kind,
        "operating-system"
            | "data"
            | "cryptographic-asset"
            | "file"
            | "container"
            | "platform"
            | "device"
            | "machine-learning-model"
    )
}

pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<Inventory, SbomError> {
    let bom: Bom = serde_json::from_slice(bytes).map_err(|e| SbomError::json(file, &e))?;
    if bom.bom_format.as_deref() != Some("CycloneDX") {
        return Err(SbomError::new(
            file,
            None,
            "not a CycloneDX document (bomFormat)",
        ));
    }
    let spec = bom.spec_version.clone().unwrap_or_default();
    let minor = spec
        .strip_prefix("1.")
        .and_then(|m| m.parse::<u32>().ok())
        .ok_or_else(|| {
            SbomError::new(
                file,
                None,
                format!("unsupported CycloneDX specVersion {spec:?}"),
            )
        })?;
    let mut inv = Inventory::new(crate::Format::CycloneDx);
    if minor > 7 {
        inv.warnings.push(format!(
            "CycloneDX {spec} is newer than 1.7; reading it as 1.7"
        ));
    }
    // The document's subject may be the operating system itself (cdxgen `-t os`).
    if let Some(subject) = bom.metadata.as_ref().and_then(|m| m.component.as_ref()) {
        if subject.kind == "operating-system" {
            inv.os = os_of(subject);
        }
    }
    let mut stack: Vec<&Component> = bom.components.iter().rev().collect();
    while let Some(c) = stack.pop() {
        stack.extend(c.components.iter().rev());
        if c.kind == "operating-system" {
            if inv.os.is_none() {
                inv.os = os_of(c);
            }
            continue;
        }
        if !is_package_type(&c.kind) {
            continue;
        }
        if let Some(app) = app_of(c, &mut inv) {
            inv.apps.push(app);
        }
    }
    Ok(inv)
}

/// An operating-system component: trivy writes `debian` / `12.11`; cdxgen writes
/// `Debian+GNU/Linux` / `12 (bookworm)` with `platform` and `major` properties.
fn os_of(c: &Component) -> Option<OsInfo> {
    let name = c.property("platform").unwrap_or(&c.name);
    let version = c
        .property("major")
        .map(|m| match (c.property("minor"), name) {
            (Some(minor), "ubuntu") => format!("{m}.{minor:0>2}"),
            _ => m.to_string(),
        })
        .or_else(|| c.version.clone())
        .unwrap_or_default();
    distro::os_from_name(name, &version)
}

fn app_of(c: &Component, inv: &mut Inventory) -> Option<App> {
    let version = c.version.as_deref().filter(|v| !v.is_empty());
    let mut app = match c.purl.as_deref().filter(|p| !p.is_empty()) {
        Some(purl) => match app_from_purl(purl) {
            Ok(p) => {
                if let Some(d) = p.distro {
                    inv.note_distro(d);
                }
                p.app
            }
            Err(PurlError::NoVersion(_)) if version.is_some() => {
                let mut p = app_from_purl(&format!("{purl}@{}", version.unwrap_or_default()))
                    .ok()?
                    .app;
                p.purl = Some(purl.to_string());
                p
            }
            Err(e) => {
                inv.skipped(format!("component {:?}: {e}", c.name));
                return None;
            }
        },
        None => {
            // No purl: keep what has a version, matched by CPE or by name.
            let version = version?;
            let name = match c.group.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => format!("{g}/{}", c.name),
                None => c.name.clone(),
            };
            if name.is_empty() {
                return None;
            }
            App::new(name, version, AppSource::Other)
        }
    };
    if let Some(cpe) = c.cpe.as_deref().filter(|s| !s.is_empty()) {
        app.cpe = Some(cpe.to_string());
    }
    let vendor = c
        .publisher
        .as_deref()
        .or(c.supplier.as_ref().and_then(|s| s.name.as_deref()))
        .filter(|v| !v.is_empty());
    if app.source == AppSource::Other {
        app.vendor = vendor.map(str::to_string);
    }
    source_package_from_properties(c, &mut app);
    Some(app)
}

/// The source package as generators record it in properties: trivy `SrcName`, `SrcEpoch`,
/// `SrcVersion`, `SrcRelease`; cdxgen `source` for debs.
fn source_package_from_properties(c: &Component, app: &mut App) {
    if let Some(name) = c.property("aquasecurity:trivy:SrcName") {
        app.source_name = Some(name.to_string());
        if let Some(version) = c.property("aquasecurity:trivy:SrcVersion") {
            let mut v = String::new();
            if let Some(epoch) = c
                .property("aquasecurity:trivy:SrcEpoch")
                .filter(|e| *e != "0")
            {
                v.push_str(epoch);
                v.push(':');
            }
            v.push_str(version);
            if let Some(release) = c.property("aquasecurity:trivy:SrcRelease") {
                v.push('-');
                v.push_str(release);
            }
            app.source_version = Some(v);
        }
        return;
    }
    if app.source == AppSource::Dpkg && app.source_name.is_none() {
        if let Some(source) = c.property("source") {
            app.source_name = Some(source.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_components_and_trivy_source_versions() {
        let doc = br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[
          {"type":"operating-system","name":"debian","version":"12.11"},
          {"type":"library","name":"libssl3","version":"3.0.16-1~deb12u1",
           "purl":"pkg:deb/debian/libssl3@3.0.16-1~deb12u1?arch=amd64&distro=debian-12.11",
           "properties":[{"name":"aquasecurity:trivy:SrcName","value":"openssl"},
                         {"name":"aquasecurity:trivy:SrcVersion","value":"3.0.16"},
                         {"name":"aquasecurity:trivy:SrcRelease","value":"1~deb12u1"}]},
          {"type":"application","name":"Cargo.lock","components":[
             {"type":"library","name":"smallvec","version":"1.6.0","purl":"pkg:cargo/smallvec@1.6.0"}]},
          {"type":"application","name":"no-version-here"},
          {"type":"data","name":"apt source","version":"12"}]}"#;
        let inv = parse(doc, "t.json").unwrap();
        let os = inv.os.clone().unwrap();
        assert_eq!(
            (os.id.as_str(), os.version_id.as_str()),
            ("debian", "12.11")
        );
        assert_eq!(inv.apps.len(), 2);
        assert_eq!(inv.apps[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(
            inv.apps[0].source_version.as_deref(),
            Some("3.0.16-1~deb12u1")
        );
        assert_eq!(inv.apps[1].name, "smallvec");
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse(
            b"{\"bomFormat\":\"CycloneDX\",\n\"specVersion\":\"1.5\",\n\"components\":[{]}",
            "bad.json",
        )
        .unwrap_err();
        assert_eq!(e.file, "bad.json");
        assert_eq!(e.line, Some(3));
        let e = parse(br#"{"bomFormat":"CycloneDX","specVersion":"2.0"}"#, "x").unwrap_err();
        assert!(e.message.contains("specVersion"), "{e}");
    }
}
