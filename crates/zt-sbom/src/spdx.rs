//! SPDX 2.2/2.3 JSON documents: every package with a purl (`PACKAGE-MANAGER` external
//! reference) or a CPE (`SECURITY` `cpe23Type`/`cpe22Type`) and a version.

use serde::Deserialize;
use zt_inventory::{App, AppSource};

use crate::purl::{app_from_purl, PurlError};
use crate::{distro, Inventory, SbomError};

#[derive(Deserialize)]
struct Document {
    #[serde(rename = "spdxVersion")]
    spdx_version: Option<String>,
    #[serde(default)]
    packages: Vec<Package>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Package {
    name: String,
    #[serde(rename = "versionInfo")]
    version_info: Option<String>,
    supplier: Option<String>,
    #[serde(rename = "primaryPackagePurpose")]
    purpose: Option<String>,
    #[serde(rename = "externalRefs")]
    external_refs: Vec<ExternalRef>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExternalRef {
    #[serde(rename = "referenceCategory")]
    category: String,
    #[serde(rename = "referenceType")]
    kind: String,
    #[serde(rename = "referenceLocator")]
    locator: String,
}

pub(crate) fn parse(bytes: &[u8], file: &str) -> Result<Inventory, SbomError> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| SbomError::json(file, &e))?;
    let version = doc.spdx_version.unwrap_or_default();
    if !matches!(version.as_str(), "SPDX-2.2" | "SPDX-2.3") {
        return Err(SbomError::new(
            file,
            None,
            format!("unsupported spdxVersion {version:?} (SPDX 2.2 and 2.3 JSON are read)"),
        ));
    }
    let mut inv = Inventory::new(crate::Format::Spdx);
    for (i, p) in doc.packages.iter().enumerate() {
        let version = p.version_info.as_deref().filter(|v| !v.is_empty());
        if p.purpose.as_deref() == Some("OPERATING-SYSTEM") {
            if inv.os.is_none() {
                inv.os = distro::os_from_name(&p.name, version.unwrap_or(""));
            }
            continue;
        }
        let reference = |kinds: &[&str]| {
            p.external_refs
                .iter()
                .find(|r| kinds.contains(&r.kind.as_str()) && !r.locator.is_empty())
                .map(|r| r.locator.as_str())
        };
        let purl = p
            .external_refs
            .iter()
            .find(|r| {
                r.kind == "purl"
                    && matches!(r.category.as_str(), "PACKAGE-MANAGER" | "PACKAGE_MANAGER")
            })
            .map(|r| r.locator.as_str());
        let cpe = reference(&["cpe23Type", "cpe22Type"]);
        let mut app = match purl {
            Some(purl) => match app_from_purl(purl) {
                Ok(pa) => {
                    if let Some(d) = pa.distro {
                        inv.note_distro(d);
                    }
                    pa.app
                }
                Err(PurlError::NoVersion(_)) if version.is_some() => {
                    let Ok(pa) = app_from_purl(&format!("{purl}@{}", version.unwrap_or(""))) else {
                        continue;
                    };
                    let mut app = pa.app;
                    app.purl = Some(purl.to_string());
                    app
                }
                Err(e) => {
                    inv.skipped(format!("packages[{i}] {:?}: {e}", p.name));
                    continue;
                }
            },
            None => {
                let (Some(version), Some(_)) = (version, cpe) else {
                    continue;
                };
                let mut app = App::new(p.name.clone(), version, AppSource::Other);
                app.vendor = p
                    .supplier
                    .as_deref()
                    .map(|s| {
                        s.trim_start_matches("Organization:")
                            .trim_start_matches("Person:")
                            .trim()
                    })
                    .filter(|s| !s.is_empty() && *s != "NOASSERTION")
                    .map(str::to_string);
                app
            }
        };
        if let Some(cpe) = cpe {
            app.cpe = Some(cpe.to_string());
        }
        inv.apps.push(app);
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_purls_cpes_and_the_os() {
        let doc = br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[
          {"name":"debian","versionInfo":"12","primaryPackagePurpose":"OPERATING-SYSTEM"},
          {"name":"curl","versionInfo":"7.88.1-10+deb12u5","externalRefs":[
            {"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:haxx:curl:7.88.1:*:*:*:*:*:*:*"},
            {"referenceCategory":"PACKAGE-MANAGER","referenceType":"purl","referenceLocator":"pkg:deb/debian/curl@7.88.1-10+deb12u5?arch=amd64&distro=debian-12"}]},
          {"name":"Some App","versionInfo":"2.0","supplier":"Organization: ACME","externalRefs":[
            {"referenceCategory":"SECURITY","referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:acme:some_app:2.0:*:*:*:*:*:*:*"}]},
          {"name":"a directory","versionInfo":"NOASSERTION"}]}"#;
        let inv = parse(doc, "doc.spdx.json").unwrap();
        assert_eq!(inv.os.as_ref().unwrap().id, "debian");
        assert_eq!(inv.apps.len(), 2);
        assert_eq!(inv.apps[0].source, AppSource::Dpkg);
        assert!(inv.apps[0].cpe.is_some());
        assert_eq!(inv.apps[1].vendor.as_deref(), Some("ACME"));
        assert!(parse(br#"{"spdxVersion":"SPDX-3.0"}"#, "x").is_err());
    }
}
