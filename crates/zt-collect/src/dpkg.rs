//! dpkg: `/var/lib/dpkg/status` and the one-file-per-package `/var/lib/dpkg/status.d/` of
//! distroless images.
//!
//! The deb822 stanza reader is our own (about sixty lines) rather than `deb822-fast`: errors must
//! name the line, and a stanza that lacks a name or version must be skipped with a note rather
//! than lose the whole database; the crate gives neither line numbers nor per-stanza recovery.

use crate::{dir_entries, App, AppSource, CollectError, CollectOptions, Collection, ParseError};

/// One `Field: value` of a stanza; the value is the first line's (the fields we read are
/// single-line), `line` its 1-based line number.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub name: &'a str,
    pub value: &'a str,
    pub line: usize,
}

/// One deb822 paragraph with the line it starts on.
#[derive(Debug, Clone, Default)]
pub struct Stanza<'a> {
    pub line: usize,
    pub fields: Vec<Field<'a>>,
}

impl<'a> Stanza<'a> {
    /// The value of a field; field names are case-insensitive in deb822.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }
}

/// Splits deb822 text into stanzas. A line that is neither a field, a continuation, a comment
/// nor blank is an error naming its line.
pub fn parse_stanzas(text: &str) -> Result<Vec<Stanza<'_>>, ParseError> {
    let mut stanzas = Vec::new();
    let mut current = Stanza::default();
    for (idx, raw) in text.split('\n').enumerate() {
        let line_no = idx + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            if !current.fields.is_empty() {
                stanzas.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if current.fields.is_empty() {
                return Err(ParseError::at_line(
                    line_no,
                    "continuation line outside of a field",
                ));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ParseError::at_line(
                line_no,
                format!("expected `Field: value`, found {:?}", truncate(line)),
            ));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ParseError::at_line(
                line_no,
                format!("invalid field name {:?}", truncate(name)),
            ));
        }
        if current.fields.is_empty() {
            current.line = line_no;
        }
        current.fields.push(Field {
            name,
            value: value.trim(),
            line: line_no,
        });
    }
    if !current.fields.is_empty() {
        stanzas.push(current);
    }
    Ok(stanzas)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A stanza that was not turned into an app, and why (the collector logs these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedStanza {
    pub line: usize,
    pub reason: String,
}

/// The installed packages of a status file and the stanzas that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusEntries {
    pub apps: Vec<App>,
    pub skipped: Vec<SkippedStanza>,
}

/// The installed packages listed in dpkg status text: name, version, architecture, and the
/// source package and version (from `Source: name (version)`; the package's own name and
/// version when absent). Stanzas without a name or version are left out.
pub fn parse_status(text: &str) -> Result<Vec<App>, ParseError> {
    parse_status_entries(text).map(|entries| entries.apps)
}

/// [`parse_status`] that also says which stanzas it skipped and why.
pub fn parse_status_entries(text: &str) -> Result<StatusEntries, ParseError> {
    let mut out = StatusEntries::default();
    for stanza in parse_stanzas(text)? {
        match app_from_stanza(&stanza) {
            Ok(Some(app)) => out.apps.push(app),
            Ok(None) => {}
            Err(reason) => out.skipped.push(SkippedStanza {
                line: stanza.line,
                reason,
            }),
        }
    }
    Ok(out)
}

/// Whether a `Status:` line says the package's files are on disk. dpkg's states
/// (deb-status(5)): `not-installed` and `config-files` leave no program behind; every other
/// state (`installed`, `unpacked`, `half-configured`, `half-installed`, `triggers-awaited`,
/// `triggers-pending`) has the package's files present, so its vulnerabilities are too.
pub fn status_is_installed(status: &str) -> bool {
    let state = status.split_whitespace().nth(2).unwrap_or("");
    matches!(
        state,
        "installed"
            | "unpacked"
            | "half-configured"
            | "half-installed"
            | "triggers-awaited"
            | "triggers-pending"
    )
}

/// `Ok(None)` for a package that is not installed; `Err` says why a stanza is unusable.
fn app_from_stanza(stanza: &Stanza<'_>) -> Result<Option<App>, String> {
    let name = stanza.get("Package").unwrap_or("");
    if name.is_empty() {
        return Err("stanza without a package name".into());
    }
    // status.d files of distroless images may omit Status: they only list installed packages.
    if let Some(status) = stanza.get("Status") {
        if !status_is_installed(status) {
            return Ok(None);
        }
    }
    let version = stanza.get("Version").unwrap_or("");
    if version.is_empty() {
        return Err(format!("package {name:?} has no Version"));
    }
    let (source_name, source_version) = match stanza.get("Source") {
        Some(source) if !source.is_empty() => parse_source_field(source, version),
        _ => (name.to_string(), version.to_string()),
    };
    let mut app = App::new(name, version, AppSource::Dpkg);
    app.arch = stanza
        .get("Architecture")
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    app.source_name = Some(source_name);
    app.source_version = Some(source_version);
    Ok(Some(app))
}

/// `Source: name` or `Source: name (version)` (deb-control(5)); the binary version stands in
/// when the source version is not given.
pub fn parse_source_field(source: &str, binary_version: &str) -> (String, String) {
    let source = source.trim();
    match source.split_once(char::is_whitespace) {
        Some((name, rest)) => {
            let rest = rest.trim();
            let version = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .unwrap_or(binary_version);
            (name.to_string(), version.to_string())
        }
        None => (source.to_string(), binary_version.to_string()),
    }
}

/// Collects `/var/lib/dpkg/status` and every file in `/var/lib/dpkg/status.d/`.
pub fn collect(options: &CollectOptions, out: &mut Collection) {
    let status = options.path("/var/lib/dpkg/status");
    let mut files = vec![status];
    files.extend(
        dir_entries(&options.path("/var/lib/dpkg/status.d"))
            .into_iter()
            // status.d also holds `<pkg>.md5sums` files next to each package's stanza.
            .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "md5sums")),
    );
    for path in files {
        let text = match crate::read_text_if_exists(&path) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(e) => {
                out.errors.push(e);
                continue;
            }
        };
        match parse_status_entries(&text) {
            Ok(entries) => {
                for skipped in entries.skipped {
                    out.warn(
                        "dpkg",
                        format_args!(
                            "{} line {}: skipped: {}",
                            path.display(),
                            skipped.line,
                            skipped.reason
                        ),
                    );
                }
                out.apps.extend(entries.apps);
            }
            Err(e) => out.errors.push(CollectError::parse(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = "Package: bsdutils\nStatus: install ok installed\nArchitecture: amd64\n\
Source: util-linux (2.38.1-5+deb12u3)\nVersion: 1:2.38.1-5+deb12u3\nDescription: x\n more\n .\n\n\
Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b8\nSource: bash\n";

    #[test]
    fn reads_source_name_and_version() {
        let apps = parse_status(TWO).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].name, "bsdutils");
        assert_eq!(apps[0].version, "1:2.38.1-5+deb12u3");
        assert_eq!(apps[0].source_name.as_deref(), Some("util-linux"));
        assert_eq!(apps[0].source_version.as_deref(), Some("2.38.1-5+deb12u3"));
        assert_eq!(apps[0].arch.as_deref(), Some("amd64"));
        assert_eq!(apps[1].source_name.as_deref(), Some("bash"));
        assert_eq!(apps[1].source_version.as_deref(), Some("5.2.15-2+b8"));
    }

    #[test]
    fn source_field_forms() {
        assert_eq!(parse_source_field("a", "1"), ("a".into(), "1".into()));
        assert_eq!(parse_source_field("a (2)", "1"), ("a".into(), "2".into()));
        assert_eq!(
            parse_source_field("a  ( 2 ) ", "1"),
            ("a".into(), "2".into())
        );
        assert_eq!(parse_source_field("a (", "1"), ("a".into(), "1".into()));
        assert_eq!(parse_source_field("a ()", "1"), ("a".into(), "1".into()));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_status("Package: a\nVersion: 1\nthis is not a field\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("line 3:"), "{e}");
        let e = parse_status(" continuation first\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse_status("Package: a\n: empty name\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn skips_stanzas_without_name_or_version() {
        let entries =
            parse_status_entries("Package:\n\nPackage: nover\nStatus: install ok installed\n\n")
                .unwrap();
        assert!(entries.apps.is_empty());
        assert_eq!(entries.skipped.len(), 2);
        assert_eq!(entries.skipped[1].line, 3);
    }

    #[test]
    fn installed_states() {
        for s in [
            "install ok installed",
            "install ok unpacked",
            "install ok half-configured",
            "install ok triggers-pending",
            "hold ok installed",
        ] {
            assert!(status_is_installed(s), "{s}");
        }
        for s in [
            "deinstall ok config-files",
            "purge ok not-installed",
            "",
            "x",
        ] {
            assert!(!status_is_installed(s), "{s}");
        }
    }

    #[test]
    fn crlf_and_trailing_whitespace() {
        let apps =
            parse_status("Package: a\r\nVersion: 1 \r\n\r\nPackage: b\r\nVersion: 2").unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].version, "1");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "(\\PC|\n| )*") {
            let _ = parse_status(&text);
        }

        #[test]
        fn every_wellformed_stanza_comes_back(
            pkgs in proptest::collection::vec(("[a-z][a-z0-9+.-]{0,20}", "[0-9][a-z0-9.+~:-]{0,15}"), 0..20)
        ) {
            let text: String = pkgs
                .iter()
                .map(|(n, v)| format!("Package: {n}\nStatus: install ok installed\nVersion: {v}\n\n"))
                .collect();
            let apps = parse_status(&text).unwrap();
            proptest::prop_assert_eq!(apps.len(), pkgs.len());
            for (app, (n, v)) in apps.iter().zip(&pkgs) {
                proptest::prop_assert_eq!(&app.name, n);
                proptest::prop_assert_eq!(&app.version, v);
                proptest::prop_assert_eq!(app.source_name.as_deref(), Some(n.as_str()));
            }
        }
    }
}
