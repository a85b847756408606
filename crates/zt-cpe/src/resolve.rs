//! From an installed program's own names (a Windows `DisplayName` and `Publisher`, a macOS
//! bundle id or name, a Homebrew formula or cask) to the CPE vendor:product pairs NVD uses.
//!
//! Three sources, in falling order of trust: the curated aliases below (products whose
//! inventory names are known not to match their CPE names), the CPE dictionary titles when the
//! knowledge base holds the dictionary, and a fuzzy rule against the vendor:product pairs that
//! appear in vulnerability records.

use std::collections::{HashMap, HashSet};

use crate::wfn::Wfn;

/// A CPE vendor:product pair in plain (unquoted, lowercase) text, e.g. `7-zip`:`7-zip`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProductId {
    pub vendor: String,
    pub product: String,
}

impl ProductId {
    pub fn new(vendor: &str, product: &str) -> ProductId {
        ProductId {
            vendor: vendor.to_ascii_lowercase(),
            product: product.to_ascii_lowercase(),
        }
    }

    /// The vendor:product of a CPE name, `None` when either is ANY, NA or a wildcard pattern.
    pub fn of(wfn: &Wfn) -> Option<ProductId> {
        if wfn.vendor().has_wildcards() || wfn.product().has_wildcards() {
            return None;
        }
        wfn.vendor().value()?;
        wfn.product().value()?;
        Some(ProductId::new(
            &wfn.vendor().unquoted(),
            &wfn.product().unquoted(),
        ))
    }
}

impl std::fmt::Display for ProductId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.vendor, self.product)
    }
}

/// Where a resolution came from; the matcher turns it into a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResolvedBy {
    /// Guessed from the name against products seen in vulnerability data.
    Fuzzy,
    /// A CPE dictionary title.
    Dictionary,
    /// A curated alias in this crate.
    Alias,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resolution {
    pub product: ProductId,
    pub by: ResolvedBy,
}

/// Curated names → CPE products. Keys are normalized with [`normalize_name`]: Windows display
/// names, macOS application names and bundle ids, Homebrew formulae and casks.
const ALIASES: &[(&str, &[(&str, &str)])] = &[
    // Browsers
    ("google chrome", &[("google", "chrome")]),
    ("chrome", &[("google", "chrome")]),
    ("com.google.chrome", &[("google", "chrome")]),
    ("google-chrome", &[("google", "chrome")]),
    ("chromium", &[("google", "chrome")]),
    ("mozilla firefox", &[("mozilla", "firefox")]),
    ("firefox", &[("mozilla", "firefox")]),
    ("org.mozilla.firefox", &[("mozilla", "firefox")]),
    ("mozilla firefox esr", &[("mozilla", "firefox_esr")]),
    ("firefox esr", &[("mozilla", "firefox_esr")]),
    ("mozilla thunderbird", &[("mozilla", "thunderbird")]),
    ("thunderbird", &[("mozilla", "thunderbird")]),
    ("org.mozilla.thunderbird", &[("mozilla", "thunderbird")]),
    (
        "microsoft edge",
        &[("microsoft", "edge_chromium"), ("microsoft", "edge")],
    ),
    ("com.microsoft.edgemac", &[("microsoft", "edge_chromium")]),
    ("microsoft-edge", &[("microsoft", "edge_chromium")]),
    ("brave", &[("brave", "brave")]),
    ("brave browser", &[("brave", "brave")]),
    ("com.brave.browser", &[("brave", "brave")]),
    ("opera", &[("opera", "opera_browser")]),
    ("opera stable", &[("opera", "opera_browser")]),
    ("safari", &[("apple", "safari")]),
    ("com.apple.safari", &[("apple", "safari")]),
    // Archivers, terminals, transfer tools
    ("7-zip", &[("7-zip", "7-zip")]),
    ("7zip", &[("7-zip", "7-zip")]),
    ("sevenzip", &[("7-zip", "7-zip")]),
    ("p7zip", &[("7-zip", "p7zip")]),
    ("winrar", &[("rarlab", "winrar")]),
    ("putty", &[("putty", "putty")]),
    ("winscp", &[("winscp", "winscp")]),
    ("filezilla", &[("filezilla-project", "filezilla_client")]),
    (
        "filezilla client",
        &[("filezilla-project", "filezilla_client")],
    ),
    (
        "org.filezilla-project.filezilla",
        &[("filezilla-project", "filezilla_client")],
    ),
    (
        "filezilla server",
        &[("filezilla-project", "filezilla_server")],
    ),
    ("curl", &[("haxx", "curl"), ("haxx", "libcurl")]),
    ("libcurl", &[("haxx", "libcurl")]),
    ("wget", &[("gnu", "wget")]),
    ("openssh", &[("openbsd", "openssh")]),
    ("openssl", &[("openssl", "openssl")]),
    ("openssl@3", &[("openssl", "openssl")]),
    ("openssl@1.1", &[("openssl", "openssl")]),
    ("xz", &[("tukaani", "xz")]),
    ("xz utils", &[("tukaani", "xz")]),
    ("tortoisegit", &[("tortoisegit", "tortoisegit")]),
    ("tortoisesvn", &[("tigris", "tortoisesvn")]),
    ("git", &[("git-scm", "git")]),
    (
        "git for windows",
        &[("git_for_windows_project", "git_for_windows")],
    ),
    // Media and office
    ("vlc media player", &[("videolan", "vlc_media_player")]),
    ("vlc", &[("videolan", "vlc_media_player")]),
    ("org.videolan.vlc", &[("videolan", "vlc_media_player")]),
    ("libreoffice", &[("libreoffice", "libreoffice")]),
    ("org.libreoffice.script", &[("libreoffice", "libreoffice")]),
    ("gimp", &[("gimp", "gimp")]),
    ("org.gimp.gimp-2.10", &[("gimp", "gimp")]),
    ("inkscape", &[("inkscape", "inkscape")]),
    ("audacity", &[("audacityteam", "audacity")]),
    ("ffmpeg", &[("ffmpeg", "ffmpeg")]),
    ("adobe acrobat reader", &[("adobe", "acrobat_reader")]),
    ("adobe acrobat reader dc", &[("adobe", "acrobat_reader_dc")]),
    ("adobe acrobat dc", &[("adobe", "acrobat_dc")]),
    ("foxit pdf reader", &[("foxit", "pdf_reader")]),
    ("foxit reader", &[("foxit", "pdf_reader")]),
    ("itunes", &[("apple", "itunes")]),
    ("spotify", &[("spotify", "spotify")]),
    // Developer tools and runtimes
    ("notepad++", &[("notepad-plus-plus", "notepad\\+\\+")]),
    (
        "notepad-plus-plus",
        &[("notepad-plus-plus", "notepad\\+\\+")],
    ),
    (
        "microsoft visual studio code",
        &[("microsoft", "visual_studio_code")],
    ),
    ("visual studio code", &[("microsoft", "visual_studio_code")]),
    (
        "com.microsoft.vscode",
        &[("microsoft", "visual_studio_code")],
    ),
    ("visual-studio-code", &[("microsoft", "visual_studio_code")]),
    ("wireshark", &[("wireshark", "wireshark")]),
    ("org.wireshark.wireshark", &[("wireshark", "wireshark")]),
    ("node.js", &[("nodejs", "node.js")]),
    ("node", &[("nodejs", "node.js")]),
    ("python", &[("python", "python")]),
    ("python3", &[("python", "python")]),
    ("oracle vm virtualbox", &[("oracle", "vm_virtualbox")]),
    ("virtualbox", &[("oracle", "vm_virtualbox")]),
    (
        "org.virtualbox.app.virtualbox",
        &[("oracle", "vm_virtualbox")],
    ),
    ("docker desktop", &[("docker", "desktop")]),
    ("com.docker.docker", &[("docker", "desktop")]),
    ("keepass password safe", &[("keepass", "keepass")]),
    ("keepass", &[("keepass", "keepass")]),
    ("keepassxc", &[("keepassxc", "keepassxc")]),
    ("org.keepassxc.keepassxc", &[("keepassxc", "keepassxc")]),
    ("sqlite", &[("sqlite", "sqlite")]),
    ("libwebp", &[("webmproject", "libwebp")]),
    ("webp", &[("webmproject", "libwebp")]),
    ("busybox", &[("busybox", "busybox")]),
    ("samba", &[("samba", "samba")]),
    ("apache http server", &[("apache", "http_server")]),
    ("httpd", &[("apache", "http_server")]),
    ("nginx", &[("f5", "nginx")]),
    // Communication and remote access
    ("zoom", &[("zoom", "zoom")]),
    ("zoom workplace", &[("zoom", "workplace_desktop")]),
    ("us.zoom.xos", &[("zoom", "zoom")]),
    ("slack", &[("slack", "slack")]),
    ("com.tinyspeck.slackmacgap", &[("slack", "slack")]),
    ("teamviewer", &[("teamviewer", "teamviewer")]),
    ("com.teamviewer.teamviewer", &[("teamviewer", "teamviewer")]),
    ("anydesk", &[("anydesk", "anydesk")]),
    ("openvpn", &[("openvpn", "openvpn")]),
    ("openvpn connect", &[("openvpn", "connect")]),
    ("signal", &[("signal", "signal-desktop")]),
    (
        "org.whispersystems.signal-desktop",
        &[("signal", "signal-desktop")],
    ),
    ("telegram desktop", &[("telegram", "telegram_desktop")]),
];

/// Words in display names that say nothing about the product (architecture, language,
/// packaging), dropped before lookup.
const NOISE_WORDS: &[&str] = &[
    "x64",
    "x86",
    "x86_64",
    "amd64",
    "arm64",
    "aarch64",
    "64-bit",
    "32-bit",
    "64bit",
    "32bit",
    "(x64)",
    "(x86)",
    "(64-bit)",
    "(32-bit)",
    "en-us",
    "(en-us)",
    "release",
    "version",
    "setup",
    "installer",
    "(remove",
    "only)",
    "app",
];

/// Lowercases, drops version numbers, architecture and language tags and bracketed
/// qualifiers, and collapses spaces: "Mozilla Firefox (x64 en-US)" → "mozilla firefox",
/// "7-Zip 23.01 (x64)" → "7-zip", "PuTTY release 0.80 (64-bit)" → "putty".
pub fn normalize_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    // Bracketed qualifiers: "(x64 en-us)", "[64-bit]".
    let mut cleaned = String::with_capacity(lower.len());
    let mut depth = 0usize;
    for c in lower.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = cleaned
        .split_whitespace()
        .filter(|w| !NOISE_WORDS.contains(w))
        .filter(|w| !looks_like_version(w))
        .map(|w| w.trim_end_matches(['-', ',', ':']))
        .filter(|w| !w.is_empty())
        .collect();
    words.join(" ")
}

/// "23.01", "0.80", "v1.2.3", "130.0.6723.69", "2024": a version-like word.
fn looks_like_version(word: &str) -> bool {
    let w = word.strip_prefix('v').unwrap_or(word);
    !w.is_empty()
        && w.starts_with(|c: char| c.is_ascii_digit())
        && w.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '_')
}

/// Resolves program names to CPE products.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    aliases: HashMap<String, Vec<ProductId>>,
    /// Normalized dictionary title → products.
    dictionary: HashMap<String, Vec<ProductId>>,
    /// product name → vendors, for every vendor:product seen in vulnerability data.
    known: HashMap<String, Vec<String>>,
    known_pairs: HashSet<ProductId>,
}

impl Resolver {
    /// A resolver with the curated aliases only.
    pub fn new() -> Resolver {
        let mut aliases: HashMap<String, Vec<ProductId>> = HashMap::new();
        for (name, products) in ALIASES {
            let entry = aliases.entry(normalize_name(name)).or_default();
            for (vendor, product) in *products {
                // Aliases are written in WFN notation where the product has specials.
                let product = product.replace('\\', "");
                entry.push(ProductId::new(vendor, &product));
            }
        }
        Resolver {
            aliases,
            ..Resolver::default()
        }
    }

    /// Adds a CPE dictionary item: its title (e.g. "Google Chrome 112.0.5615.49") names its
    /// product.
    pub fn add_dictionary_title(&mut self, title: &str, cpe: &Wfn) {
        let Some(id) = ProductId::of(cpe) else {
            return;
        };
        let key = normalize_name(title);
        if key.is_empty() {
            return;
        }
        let entry = self.dictionary.entry(key).or_default();
        if !entry.contains(&id) {
            entry.push(id);
        }
    }

    /// Records a vendor:product that appears in vulnerability data, so that fuzzy resolution
    /// only proposes products that can match something.
    pub fn add_known_product(&mut self, id: &ProductId) {
        if self.known_pairs.insert(id.clone()) {
            self.known
                .entry(id.product.clone())
                .or_default()
                .push(id.vendor.clone());
        }
    }

    /// Every product the name (and publisher, when known) may stand for, best first. Curated
    /// aliases win; the dictionary is asked next; the fuzzy rule only when neither knows the
    /// name.
    pub fn resolve(&self, name: &str, publisher: Option<&str>) -> Vec<Resolution> {
        let key = normalize_name(name);
        if key.is_empty() {
            return Vec::new();
        }
        let publisher_key = publisher.map(normalize_name).unwrap_or_default();
        // "Google Chrome" may arrive as name "Chrome" with publisher "Google LLC".
        let with_publisher = publisher_key
            .split_whitespace()
            .next()
            .map(|first| format!("{first} {key}"));
        let candidates = std::iter::once(key.clone()).chain(with_publisher);
        for k in candidates.clone() {
            if let Some(ids) = self.aliases.get(&k) {
                return tag(ids, ResolvedBy::Alias);
            }
        }
        for k in candidates {
            if let Some(ids) = self.dictionary.get(&k) {
                return tag(ids, ResolvedBy::Dictionary);
            }
        }
        self.fuzzy(&key, &publisher_key)
    }

    /// The product name as NVD would write it ("Foo Bar" → `foo_bar`), accepted when that
    /// product is known and its vendor is unambiguous or agrees with the publisher.
    fn fuzzy(&self, key: &str, publisher_key: &str) -> Vec<Resolution> {
        let product = key.replace(' ', "_");
        let Some(vendors) = self.known.get(&product) else {
            return Vec::new();
        };
        let publisher_words: Vec<String> = publisher_key
            .split_whitespace()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_ascii_alphanumeric())
                    .to_string()
            })
            .filter(|w| {
                !w.is_empty()
                    && !matches!(
                        w.as_str(),
                        "inc"
                            | "llc"
                            | "ltd"
                            | "corporation"
                            | "corp"
                            | "foundation"
                            | "project"
                            | "gmbh"
                            | "co"
                            | "the"
                    )
            })
            .collect();
        let agreeing: Vec<&String> = vendors
            .iter()
            .filter(|v| {
                publisher_words
                    .iter()
                    .any(|w| v.as_str() == w || v.starts_with(&format!("{w}_")))
                    || v.as_str() == product
            })
            .collect();
        let chosen: Vec<&String> = if !agreeing.is_empty() {
            agreeing
        } else if vendors.len() == 1 {
            vendors.iter().collect()
        } else {
            return Vec::new();
        };
        chosen
            .into_iter()
            .map(|v| Resolution {
                product: ProductId::new(v, &product),
                by: ResolvedBy::Fuzzy,
            })
            .collect()
    }
}

fn tag(ids: &[ProductId], by: ResolvedBy) -> Vec<Resolution> {
    ids.iter()
        .map(|p| Resolution {
            product: p.clone(),
            by,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(r: &Resolver, name: &str, publisher: Option<&str>) -> Option<(String, ResolvedBy)> {
        r.resolve(name, publisher)
            .first()
            .map(|x| (x.product.to_string(), x.by))
    }

    #[test]
    fn normalizes_display_names() {
        assert_eq!(
            normalize_name("Mozilla Firefox (x64 en-US)"),
            "mozilla firefox"
        );
        assert_eq!(normalize_name("7-Zip 23.01 (x64)"), "7-zip");
        assert_eq!(normalize_name("PuTTY release 0.80 (64-bit)"), "putty");
        assert_eq!(normalize_name("VLC media player"), "vlc media player");
        assert_eq!(normalize_name("Wireshark 4.2.0 x64"), "wireshark");
        assert_eq!(normalize_name("  "), "");
    }

    #[test]
    fn curated_aliases() {
        let r = Resolver::new();
        let alias = |n| first(&r, n, None);
        assert_eq!(
            alias("Google Chrome"),
            Some(("google:chrome".into(), ResolvedBy::Alias))
        );
        assert_eq!(
            alias("com.google.Chrome"),
            Some(("google:chrome".into(), ResolvedBy::Alias))
        );
        assert_eq!(
            alias("Mozilla Firefox (x64 en-US)").unwrap().0,
            "mozilla:firefox"
        );
        assert_eq!(alias("7-Zip 23.01 (x64)").unwrap().0, "7-zip:7-zip");
        assert_eq!(
            alias("PuTTY release 0.80 (64-bit)").unwrap().0,
            "putty:putty"
        );
        assert_eq!(
            alias("VLC media player").unwrap().0,
            "videolan:vlc_media_player"
        );
        assert_eq!(
            alias("Notepad++ (64-bit x64)").unwrap().0,
            "notepad-plus-plus:notepad++"
        );
        assert_eq!(
            first(&r, "Chrome", Some("Google LLC")).unwrap().0,
            "google:chrome"
        );
        assert_eq!(r.resolve("curl", None).len(), 2);
        assert!(r.resolve("Some Unknown Tool", None).is_empty());
    }

    #[test]
    fn dictionary_and_fuzzy() {
        let mut r = Resolver::new();
        let cpe = Wfn::parse("cpe:2.3:a:acme:rocket_launcher:2.0:*:*:*:*:*:*:*").unwrap();
        r.add_dictionary_title("ACME Rocket Launcher 2.0", &cpe);
        assert_eq!(
            first(&r, "ACME Rocket Launcher", None),
            Some(("acme:rocket_launcher".into(), ResolvedBy::Dictionary))
        );
        r.add_known_product(&ProductId::new("gitea", "gitea"));
        r.add_known_product(&ProductId::new("foo", "widget"));
        r.add_known_product(&ProductId::new("bar", "widget"));
        assert_eq!(
            first(&r, "Gitea 1.21", None),
            Some(("gitea:gitea".into(), ResolvedBy::Fuzzy))
        );
        // Two vendors ship a "widget": only the publisher decides.
        assert!(r.resolve("Widget", None).is_empty());
        assert_eq!(
            first(&r, "Widget", Some("Bar Inc.")).unwrap().0,
            "bar:widget"
        );
    }
}
