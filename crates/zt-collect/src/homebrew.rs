//! Homebrew: formulae in `Cellar/<formula>/<version>` and casks in `Caskroom/<cask>/<version>`
//! under each Homebrew prefix (Apple silicon, Intel macOS, Linuxbrew).

use std::path::Path;

use crate::{dir_entries, file_name, App, AppSource, CollectOptions, Collection};

const PREFIXES: [&str; 3] = ["/opt/homebrew", "/usr/local", "/home/linuxbrew/.linuxbrew"];

/// Every `<name>/<version>` pair below a Cellar or Caskroom directory. A formula with several
/// versions kept side by side lists each: all of them are on disk.
pub fn apps_in_keg_dir(dir: &Path, out: &mut Collection) {
    for formula in dir_entries(dir) {
        let Some(name) = file_name(&formula) else {
            continue;
        };
        if name.starts_with('.') || !formula.is_dir() {
            continue;
        }
        for version in dir_entries(&formula) {
            match file_name(&version) {
                Some(v) if !v.starts_with('.') && version.is_dir() => {
                    out.apps.push(App::new(name, v, AppSource::Homebrew))
                }
                _ => {}
            }
        }
    }
}

pub fn collect(options: &CollectOptions, out: &mut Collection) {
    for prefix in PREFIXES {
        let prefix = options.path(prefix);
        apps_in_keg_dir(&prefix.join("Cellar"), out);
        apps_in_keg_dir(&prefix.join("Caskroom"), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cellar_and_caskroom() {
        let root = tempfile::tempdir().unwrap();
        for rel in [
            "opt/homebrew/Cellar/openssl@3/3.2.0_1/bin",
            "opt/homebrew/Cellar/openssl@3/3.1.4",
            "opt/homebrew/Caskroom/firefox/121.0",
            "opt/homebrew/Caskroom/firefox/.metadata",
            "home/linuxbrew/.linuxbrew/Cellar/jq/1.7.1",
        ] {
            std::fs::create_dir_all(root.path().join(rel)).unwrap();
        }
        let mut out = Collection::default();
        collect(&CollectOptions::under_root(root.path()), &mut out);
        let got: Vec<_> = out
            .apps
            .iter()
            .map(|a| format!("{}={}", a.name, a.version))
            .collect();
        assert_eq!(
            got,
            [
                "openssl@3=3.1.4",
                "openssl@3=3.2.0_1",
                "firefox=121.0",
                "jq=1.7.1"
            ]
        );
    }
}
