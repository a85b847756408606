//! `Cargo.lock` (versions 1–4 of the lock file format): every crate from crates.io.
//!
//! Path dependencies (no `source`: the workspace's own crates) and git dependencies are not
//! crates.io releases, so RustSec's crates.io ranges do not apply to them; they are left out
//! with a note.

use serde::Deserialize;
use zt_inventory::{App, AppSource};

use crate::{Inventory, SbomError};

#[derive(Deserialize)]
struct LockFile {
    #[serde(default)]
    package: Vec<LockedPackage>,
}

#[derive(Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
    #[serde(default)]
    source: Option<String>,
}

const CRATES_IO: [&str; 2] = [
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

pub(crate) fn parse(text: &str, file: &str) -> Result<Inventory, SbomError> {
    let lock: LockFile = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
        SbomError::new(file, line, e.message().to_string())
    })?;
    let mut inv = Inventory::new(crate::Format::CargoLock);
    for p in lock.package {
        match p.source.as_deref() {
            Some(s) if CRATES_IO.contains(&s) => {
                let mut app = App::new(p.name.clone(), p.version.clone(), AppSource::Cargo);
                app.purl = Some(format!("pkg:cargo/{}@{}", p.name, p.version));
                inv.apps.push(app);
            }
            Some(other) => inv.warnings.push(format!(
                "{} {}: not from crates.io ({other}); not matched",
                p.name, p.version
            )),
            None => {}
        }
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_registry_crates_only() {
        let lock = r#"
version = 4

[[package]]
name = "mytool"
version = "0.1.0"
dependencies = ["smallvec"]

[[package]]
name = "smallvec"
version = "1.6.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "fe0f37c9e8f3c5a4a66ad655a93c74daac4ad00c441533bf5c6e7990bb42604e"

[[package]]
name = "forked"
version = "0.3.0"
source = "git+https://example.org/forked?rev=abc#abc"
"#;
        let inv = parse(lock, "Cargo.lock").unwrap();
        assert_eq!(inv.apps.len(), 1);
        assert_eq!(inv.apps[0].name, "smallvec");
        assert_eq!(
            inv.apps[0].purl.as_deref(),
            Some("pkg:cargo/smallvec@1.6.0")
        );
        assert_eq!(inv.warnings.len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("[[package]]\nname = \"a\"\nversion = \n", "Cargo.lock").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        let e = parse("[[package]]\nname = \"a\"\n", "Cargo.lock").unwrap_err();
        assert!(e.message.contains("version"), "{e}");
    }
}
