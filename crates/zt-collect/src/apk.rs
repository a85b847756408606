//! Alpine apk: `/lib/apk/db/installed` (the installed database, `K:value` lines in blank-line
//! separated entries; apk-tools' "apkv2 index" format).

use crate::{App, AppSource, CollectError, CollectOptions, Collection, ParseError};

/// An entry that was not turned into an app, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    pub line: usize,
    pub reason: String,
}

/// The packages of an installed database and the entries that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstalledEntries {
    pub apps: Vec<App>,
    pub skipped: Vec<SkippedEntry>,
}

/// The packages in apk installed-database text: `P:` name, `V:` version, `A:` arch, `o:` origin
/// (the source package; the version is the package's). Entries without a name or version are
/// left out.
pub fn parse_installed(text: &str) -> Result<Vec<App>, ParseError> {
    parse_installed_entries(text).map(|e| e.apps)
}

#[derive(Default)]
struct Entry<'a> {
    line: usize,
    name: Option<&'a str>,
    version: Option<&'a str>,
    arch: Option<&'a str>,
    origin: Option<&'a str>,
    maintainer: Option<&'a str>,
    seen: bool,
}

/// [`parse_installed`] that also says which entries it skipped and why.
pub fn parse_installed_entries(text: &str) -> Result<InstalledEntries, ParseError> {
    let mut out = InstalledEntries::default();
    let mut entry = Entry::default();
    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            finish(&mut entry, &mut out);
            continue;
        }
        let mut chars = line.chars();
        let (Some(key), Some(':')) = (chars.next(), chars.next()) else {
            return Err(ParseError::at_line(
                line_no,
                format!(
                    "expected `K:value`, found {:?}",
                    line.chars().take(80).collect::<String>()
                ),
            ));
        };
        let value = chars.as_str();
        if !entry.seen {
            entry.seen = true;
            entry.line = line_no;
        }
        // The first occurrence wins: file entries (R:, Z:, a:) repeat, package keys do not.
        let slot = match key {
            'P' => &mut entry.name,
            'V' => &mut entry.version,
            'A' => &mut entry.arch,
            'o' => &mut entry.origin,
            'm' => &mut entry.maintainer,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.trim());
        }
    }
    finish(&mut entry, &mut out);
    Ok(out)
}

fn finish(entry: &mut Entry<'_>, out: &mut InstalledEntries) {
    let e = std::mem::take(entry);
    if !e.seen {
        return;
    }
    let name = e.name.unwrap_or("");
    let version = e.version.unwrap_or("");
    if name.is_empty() {
        out.skipped.push(SkippedEntry {
            line: e.line,
            reason: "entry without a package name (P:)".into(),
        });
        return;
    }
    if version.is_empty() {
        out.skipped.push(SkippedEntry {
            line: e.line,
            reason: format!("package {name:?} has no version (V:)"),
        });
        return;
    }
    let mut app = App::new(name, version, AppSource::Apk);
    app.arch = e.arch.filter(|a| !a.is_empty()).map(str::to_string);
    app.vendor = e.maintainer.filter(|m| !m.is_empty()).map(str::to_string);
    app.source_name = Some(
        e.origin
            .filter(|o| !o.is_empty())
            .unwrap_or(name)
            .to_string(),
    );
    app.source_version = Some(version.to_string());
    out.apps.push(app);
}

/// Collects `/lib/apk/db/installed`.
pub fn collect(options: &CollectOptions, out: &mut Collection) {
    let path = options.path("/lib/apk/db/installed");
    let text = match crate::read_text_if_exists(&path) {
        Ok(Some(text)) => text,
        Ok(None) => return,
        Err(e) => return out.errors.push(e),
    };
    match parse_installed_entries(&text) {
        Ok(entries) => {
            for s in entries.skipped {
                out.warn(
                    "apk",
                    format_args!("{} line {}: skipped: {}", path.display(), s.line, s.reason),
                );
            }
            out.apps.extend(entries.apps);
        }
        Err(e) => out.errors.push(CollectError::parse(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_entries_and_origin() {
        let text = "C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\nA:x86_64\no:openssl\nm:Ariadne <a@b>\nF:lib\nR:x\n\n\
                    P:musl\nV:1.2.4-r2\n";
        let apps = parse_installed(text).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].name, "libcrypto3");
        assert_eq!(apps[0].source_name.as_deref(), Some("openssl"));
        assert_eq!(apps[0].source_version.as_deref(), Some("3.1.4-r5"));
        assert_eq!(apps[0].vendor.as_deref(), Some("Ariadne <a@b>"));
        assert_eq!(apps[1].source_name.as_deref(), Some("musl"));
    }

    #[test]
    fn bad_line_names_its_number() {
        let e = parse_installed("P:a\nV:1\n\nnonsense\n").unwrap_err();
        assert_eq!(e.line, 4);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(\\PC|\n)*") {
            let _ = parse_installed(&text);
        }
    }
}
