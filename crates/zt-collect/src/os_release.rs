//! `/etc/os-release` (freedesktop.org os-release(5)): the distro and its release.

use crate::{CollectOptions, OsInfo};

/// Parses os-release text into the OS identity reports carry: `ID`, `VERSION_ID` and
/// `PRETTY_NAME` (or `NAME`). Lines that are not `KEY=value` are ignored, as the format asks.
pub fn parse(text: &str) -> OsInfo {
    let mut id = String::new();
    let mut version_id = String::new();
    let mut pretty_name = String::new();
    let mut name = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        match key.trim() {
            "ID" => id = value,
            "VERSION_ID" => version_id = value,
            "PRETTY_NAME" => pretty_name = value,
            "NAME" => name = value,
            _ => {}
        }
    }
    OsInfo {
        id: id.to_ascii_lowercase(),
        version_id,
        name: if pretty_name.is_empty() {
            name
        } else {
            pretty_name
        },
    }
}

/// Shell-style quoting as os-release(5) allows it: double quotes with backslash escapes,
/// single quotes taken literally, or a bare word.
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                out.push(next);
                            }
                        }
                        _ => out.push(c),
                    }
                }
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '#' if out.is_empty() => break,
            _ => out.push(c),
        }
    }
    out
}

/// The OS of the collected root: os-release on Linux (`/etc/os-release`, else
/// `/usr/lib/os-release`); on the running Windows or macOS host, that OS.
pub fn collect(options: &CollectOptions) -> OsInfo {
    for path in ["/etc/os-release", "/usr/lib/os-release"] {
        if let Ok(Some(text)) = crate::read_text_if_exists(&options.path(path)) {
            let os = parse(&text);
            if !os.id.is_empty() {
                return os;
            }
        }
    }
    if options.live_system {
        if let Some(os) = crate::macos::running_os().or_else(crate::windows::running_os) {
            return os;
        }
    }
    // os-release(5): "If not set, a default of ID=linux may be used."
    OsInfo {
        id: std::env::consts::OS.to_string(),
        version_id: String::new(),
        name: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_12() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                    VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n";
        let os = parse(text);
        assert_eq!(os.id, "debian");
        assert_eq!(os.version_id, "12");
        assert_eq!(os.name, "Debian GNU/Linux 12 (bookworm)");
    }

    #[test]
    fn handles_quotes_escapes_comments_and_garbage() {
        let text = "# comment\nID='alpine'\nVERSION_ID=3.19.1\nNAME=\"Say \\\"hi\\\"\"\nnot a line\n=\n\u{0}\n";
        let os = parse(text);
        assert_eq!(os.id, "alpine");
        assert_eq!(os.version_id, "3.19.1");
        assert_eq!(os.name, "Say \"hi\"");
        assert_eq!(parse(""), OsInfo::default());
    }

    #[test]
    fn reads_from_a_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::write(
            dir.path().join("usr/lib/os-release"),
            "ID=fedora\nVERSION_ID=40\n",
        )
        .unwrap();
        let os = collect(&CollectOptions::under_root(dir.path()));
        assert_eq!((os.id.as_str(), os.version_id.as_str()), ("fedora", "40"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }
    }
}
