//! Which distribution release a document describes: from an operating-system component, from
//! purl `distro=` qualifiers, from a `--distro` argument, or guessed from package versions.

use zt_inventory::{App, AppSource, OsInfo};

/// Debian and Ubuntu codenames → (id, release).
const CODENAMES: &[(&str, &str, &str)] = &[
    ("jessie", "debian", "8"),
    ("stretch", "debian", "9"),
    ("buster", "debian", "10"),
    ("bullseye", "debian", "11"),
    ("bookworm", "debian", "12"),
    ("trixie", "debian", "13"),
    ("forky", "debian", "14"),
    ("xenial", "ubuntu", "16.04"),
    ("bionic", "ubuntu", "18.04"),
    ("focal", "ubuntu", "20.04"),
    ("jammy", "ubuntu", "22.04"),
    ("kinetic", "ubuntu", "22.10"),
    ("lunar", "ubuntu", "23.04"),
    ("mantic", "ubuntu", "23.10"),
    ("noble", "ubuntu", "24.04"),
    ("oracular", "ubuntu", "24.10"),
    ("plucky", "ubuntu", "25.04"),
    ("questing", "ubuntu", "25.10"),
];

/// Distribution names as documents write them → os-release `ID`.
fn canonical_id(name: &str) -> Option<&'static str> {
    let n = name.trim().to_ascii_lowercase().replace(['+', '_'], " ");
    let n = n.trim_end_matches(" gnu/linux").trim_end_matches(" linux");
    Some(match n {
        "debian" => "debian",
        "ubuntu" => "ubuntu",
        "alpine" => "alpine",
        "wolfi" => "wolfi",
        "chainguard" => "chainguard",
        "redhat" | "red hat" | "rhel" | "red hat enterprise" => "rhel",
        "centos" => "centos",
        "rocky" => "rocky",
        "almalinux" | "alma" => "almalinux",
        "fedora" => "fedora",
        "amazon" | "amzn" | "amazonlinux" => "amzn",
        "mariner" | "cbl-mariner" | "cbl mariner" => "mariner",
        "azurelinux" | "azure" => "azurelinux",
        "opensuse-leap" | "opensuse leap" | "opensuse" => "opensuse-leap",
        "sles" | "suse" | "suse linux enterprise server" => "sles",
        "oracle" | "ol" | "oraclelinux" => "ol",
        _ => return None,
    })
}

fn os(id: &str, version: &str) -> OsInfo {
    OsInfo {
        id: id.to_string(),
        version_id: version.to_string(),
        name: if version.is_empty() {
            id.to_string()
        } else {
            format!("{id} {version}")
        },
    }
}

/// An operating system named by a distribution name and a version ("debian" "12.11";
/// "Debian+GNU/Linux" "12 (bookworm)"); `None` when the name is not a known distribution.
pub fn os_from_name(name: &str, version: &str) -> Option<OsInfo> {
    let id = canonical_id(name)?;
    let version = version.split_whitespace().next().unwrap_or("");
    Some(os(id, version))
}

/// The OS a purl `distro=` qualifier names: `debian-12.11`, `debian-12`, `bookworm`,
/// `ubuntu-22.04`, `alpine-3.19.1`, a bare `3.19.1` for apk, `redhat-9.2`, `fedora-39`...
pub fn os_from_distro_qualifier(purl_type: &str, qualifier: &str) -> Option<OsInfo> {
    let q = qualifier.trim().to_ascii_lowercase();
    if let Some((_, id, release)) = CODENAMES.iter().find(|(c, _, _)| *c == q) {
        return Some(os(id, release));
    }
    if let Some(idx) = q.rfind('-') {
        let (name, version) = (&q[..idx], &q[idx + 1..]);
        if version.starts_with(|c: char| c.is_ascii_digit()) {
            if let Some(id) = canonical_id(name) {
                return Some(os(id, version));
            }
        }
    }
    if q.starts_with(|c: char| c.is_ascii_digit()) {
        let default_id = match purl_type {
            "apk" => "alpine",
            "deb" => "debian",
            _ => return None,
        };
        return Some(os(default_id, &q));
    }
    canonical_id(&q).map(|id| os(id, ""))
}

/// Parses a `--distro` argument: `debian:12`, `debian-12`, `ubuntu:22.04`, `alpine:v3.19`,
/// `bookworm`.
pub fn parse_distro_arg(arg: &str) -> Option<OsInfo> {
    let a = arg.trim().to_ascii_lowercase();
    if let Some((_, id, release)) = CODENAMES.iter().find(|(c, _, _)| *c == a) {
        return Some(os(id, release));
    }
    let (name, version) = a.split_once([':', '-', ' ', '/']).unwrap_or((&a, ""));
    let id = canonical_id(name)?;
    let version = version.trim();
    let version = if id == "alpine" {
        version.trim_start_matches('v')
    } else {
        version
    };
    Some(os(id, version))
}

/// Guesses the release from the packages themselves when the document does not say:
/// Debian's `base-files` version is the release (`12.4+deb12u11`), Debian security updates
/// carry `+debNNuM`, Ubuntu backports `~YY.MM`, Alpine ships `alpine-release`.
pub fn guess_os(apps: &[App]) -> Option<OsInfo> {
    let dpkg = apps.iter().filter(|a| a.source == AppSource::Dpkg);
    let mut debian_votes: std::collections::BTreeMap<u32, usize> = Default::default();
    let mut ubuntu_votes: std::collections::BTreeMap<String, usize> = Default::default();
    let mut saw_ubuntu = false;
    for app in dpkg {
        let v = app.version.as_str();
        if v.contains("ubuntu") {
            saw_ubuntu = true;
            if let Some(release) = ubuntu_release_in(v) {
                *ubuntu_votes.entry(release).or_default() += 1;
            }
            continue;
        }
        if app.name == "base-files" {
            if let Some(major) = v
                .split(['.', '+'])
                .next()
                .and_then(|m| m.parse::<u32>().ok())
            {
                // The release itself decides: weigh it above any number of version hints.
                *debian_votes.entry(major).or_default() += 1_000_000;
            }
        }
        if let Some(release) = debian_release_in(v) {
            *debian_votes.entry(release).or_default() += 1;
        }
    }
    if saw_ubuntu {
        let best = ubuntu_votes.into_iter().max_by_key(|(_, n)| *n)?;
        return Some(os("ubuntu", &best.0));
    }
    if let Some((release, _)) = debian_votes.into_iter().max_by_key(|(_, n)| *n) {
        return Some(os("debian", &release.to_string()));
    }
    if let Some(rel) = apps
        .iter()
        .find(|a| a.source == AppSource::Apk && a.name == "alpine-release")
    {
        let mut parts = rel.version.split(['.', '-']);
        if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
            return Some(os("alpine", &format!("{a}.{b}")));
        }
    }
    None
}

/// `+deb12u3`, `~deb12u1`, `+deb11u9` → the Debian release.
fn debian_release_in(version: &str) -> Option<u32> {
    let idx = version.find("deb")?;
    let rest = &version[idx + 3..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() || !rest[digits.len()..].starts_with('u') {
        return None;
    }
    digits.parse().ok()
}

/// `1.1.1-1ubuntu2.1~18.04.23`, `2.3.3-1ubuntu0.18.04.1`, `6.1-1ubuntu1.18.04` → `18.04`: a
/// `YY.MM` (April or October) after the `ubuntu` revision, behind a `~` or a `.`.
fn ubuntu_release_in(version: &str) -> Option<String> {
    let tail = &version[version.find("ubuntu")? + "ubuntu".len()..];
    let starts = tail.match_indices(['~', '.']).map(|(i, m)| i + m.len());
    for start in starts {
        let mut parts = tail[start..].split(['.', '~', '+', '-']);
        let (Some(yy), Some(mm)) = (parts.next(), parts.next()) else {
            continue;
        };
        let year_ok = yy.len() == 2 && yy.parse::<u32>().is_ok_and(|y| (6..=40).contains(&y));
        if year_ok && (mm == "04" || mm == "10") {
            return Some(format!("{yy}.{mm}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distro_qualifiers() {
        let d = |t, q| os_from_distro_qualifier(t, q).map(|o| (o.id, o.version_id));
        assert_eq!(
            d("deb", "debian-12.11"),
            Some(("debian".into(), "12.11".into()))
        );
        assert_eq!(d("deb", "bookworm"), Some(("debian".into(), "12".into())));
        assert_eq!(
            d("deb", "ubuntu-22.04"),
            Some(("ubuntu".into(), "22.04".into()))
        );
        assert_eq!(d("apk", "3.19.1"), Some(("alpine".into(), "3.19.1".into())));
        assert_eq!(
            d("apk", "alpine-3.19.1"),
            Some(("alpine".into(), "3.19.1".into()))
        );
        assert_eq!(d("rpm", "redhat-9.2"), Some(("rhel".into(), "9.2".into())));
        assert_eq!(d("rpm", "nonsense"), None);
    }

    #[test]
    fn distro_arguments() {
        let d = |a| parse_distro_arg(a).map(|o| (o.id, o.version_id));
        assert_eq!(d("debian:12"), Some(("debian".into(), "12".into())));
        assert_eq!(d("Alpine:v3.19"), Some(("alpine".into(), "3.19".into())));
        assert_eq!(d("ubuntu:22.04"), Some(("ubuntu".into(), "22.04".into())));
        assert_eq!(d("bookworm"), Some(("debian".into(), "12".into())));
        assert_eq!(d("plan9"), None);
    }

    #[test]
    fn names() {
        let o = os_from_name("Debian+GNU/Linux", "12 (bookworm)").unwrap();
        assert_eq!((o.id.as_str(), o.version_id.as_str()), ("debian", "12"));
        assert!(os_from_name("os-image", "6.18").is_none());
    }

    #[test]
    fn guesses() {
        let dpkg = |n: &str, v: &str| App::new(n, v, AppSource::Dpkg);
        let apps = vec![
            dpkg("base-files", "12.4+deb12u11"),
            dpkg("bash", "5.2.15-2+b7"),
        ];
        assert_eq!(guess_os(&apps).unwrap().version_id, "12");
        let apps = vec![
            dpkg("libc6", "2.36-9+deb12u10"),
            dpkg("zlib1g", "1:1.2.13.dfsg-1"),
        ];
        assert_eq!(guess_os(&apps).unwrap().version_id, "12");
        let apps = vec![
            dpkg("libssl1.1", "1.1.1-1ubuntu2.1~18.04.23"),
            dpkg("bash", "4.4.18-2ubuntu1.2"),
            dpkg("ncurses-base", "6.1-1ubuntu1.18.04"),
            dpkg("e2fsprogs", "1.44.1-1ubuntu1.1"),
        ];
        assert_eq!(
            ubuntu_release_in("2.3.3-1ubuntu0.18.04.1").as_deref(),
            Some("18.04")
        );
        assert_eq!(ubuntu_release_in("237-3ubuntu10.3"), None);
        assert_eq!(ubuntu_release_in("2.31.1-0.4ubuntu3.1"), None);
        let o = guess_os(&apps).unwrap();
        assert_eq!((o.id.as_str(), o.version_id.as_str()), ("ubuntu", "18.04"));
        let apps = vec![App::new("alpine-release", "3.19.1-r0", AppSource::Apk)];
        assert_eq!(guess_os(&apps).unwrap().version_id, "3.19");
        assert!(guess_os(&[dpkg("bash", "5.2.15-2")]).is_none());
    }
}
