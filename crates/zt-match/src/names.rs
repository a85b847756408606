//! Package names as each ecosystem compares them, so that an inventory's spelling finds the
//! advisories' spelling: PEP 503 for PyPI (`Flask_SQLAlchemy` = `flask-sqlalchemy`), case
//! folding where the registry is case-insensitive, exact elsewhere.

use std::borrow::Cow;

/// How an ecosystem compares package names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// Byte for byte (npm, crates.io, Go, Maven, RubyGems, Pub, Hackage...).
    Exact,
    /// ASCII case-insensitive (NuGet, Packagist, Hex, distro packages).
    CaseInsensitive,
    /// PEP 503: lowercase, runs of `-`, `_`, `.` are one `-`.
    Pep503,
}

impl NameRule {
    pub(crate) fn for_ecosystem(base_ecosystem: &str) -> NameRule {
        match base_ecosystem {
            "PyPI" => NameRule::Pep503,
            "NuGet"
            | "Packagist"
            | "Hex"
            | "Debian"
            | "Ubuntu"
            | "Alpine"
            | "Wolfi"
            | "Chainguard"
            | "Red Hat"
            | "Rocky Linux"
            | "AlmaLinux"
            | "SUSE"
            | "openSUSE"
            | "Mariner"
            | "Azure Linux"
            | "Photon OS"
            | "Alpaquita"
            | "BellSoft Hardened Containers"
            | "Echo"
            | "MinimOS"
            | "openEuler"
            | "Fedora" => NameRule::CaseInsensitive,
            _ => NameRule::Exact,
        }
    }

    /// The comparable form; borrowed (no allocation) when the name already is in that form.
    pub(crate) fn normalize<'a>(self, name: &'a str) -> Cow<'a, str> {
        match self {
            NameRule::Exact => Cow::Borrowed(name),
            NameRule::CaseInsensitive => {
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(name.to_ascii_lowercase())
                } else {
                    Cow::Borrowed(name)
                }
            }
            NameRule::Pep503 => {
                let already = !name
                    .bytes()
                    .any(|b| b.is_ascii_uppercase() || b == b'_' || b == b'.')
                    && !name.contains("--");
                if already {
                    return Cow::Borrowed(name);
                }
                let mut out = String::with_capacity(name.len());
                let mut in_separator = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !in_separator {
                            out.push('-');
                        }
                        in_separator = true;
                    } else {
                        out.push(c.to_ascii_lowercase());
                        in_separator = false;
                    }
                }
                Cow::Owned(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503() {
        let n = |s| NameRule::Pep503.normalize(s).into_owned();
        assert_eq!(n("Flask_SQLAlchemy"), "flask-sqlalchemy");
        assert_eq!(n("zope.interface"), "zope-interface");
        assert_eq!(n("a-_.b"), "a-b");
        assert_eq!(n("PyJWT"), "pyjwt");
        assert!(matches!(
            NameRule::Pep503.normalize("requests"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn rules() {
        assert_eq!(NameRule::for_ecosystem("PyPI"), NameRule::Pep503);
        assert_eq!(NameRule::for_ecosystem("npm"), NameRule::Exact);
        assert_eq!(
            NameRule::CaseInsensitive.normalize("Newtonsoft.Json"),
            "newtonsoft.json"
        );
    }
}
