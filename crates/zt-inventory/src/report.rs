//! The `InventoryReport` an agent sends, exactly as DESIGN.md fixes it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One agent's full list of installed software at one moment.
///
/// Unknown fields are ignored so that newer agents can add fields without
/// older servers rejecting their reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "report_id": "7d8a6b1e-2f0c-4c1e-9a55-0b7f1d3e2a10",
    "collected_at": "2026-11-26T10:00:00Z",
    "host": {"hostname": "web-1", "os": {"id": "debian", "version_id": "12",
        "name": "Debian GNU/Linux 12 (bookworm)"}, "arch": "x86_64"},
    "apps": [{"name": "openssl", "version": "3.0.11-1~deb12u2", "source": "dpkg",
        "source_name": "openssl"}]
})))]
pub struct InventoryReport {
    /// Chosen by the agent; the server stores a report id once (idempotent retries).
    pub report_id: Uuid,
    /// When the agent collected the inventory (RFC 3339): at most 24 h from the server's clock
    /// either way, or the report is refused with 400 naming `collected_at`.
    pub collected_at: DateTime<Utc>,
    pub host: Host,
    #[cfg_attr(feature = "openapi", schema(max_items = 100_000))]
    pub apps: Vec<App>,
    /// The host's tags as the agent is configured with them (`--tag`, `ZEROTRACE_AGENT_TAGS`):
    /// they replace the tags this agent reported before; tags set through the API stay.
    /// Absent (older agents): the reported tags are left as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub tags: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Host {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 255,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
        )
    )]
    pub hostname: String,
    pub os: OsInfo,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub arch: String,
}

/// The operating system as `/etc/os-release` names it (`ID`, `VERSION_ID`, `PRETTY_NAME`),
/// or the equivalent on Windows and macOS (`windows`/`macos`, the version, the product name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OsInfo {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 1024,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
        )
    )]
    pub id: String,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub version_id: String,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub name: String,
}

/// One installed piece of software.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct App {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 512,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
        )
    )]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 256,
            pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"
        )
    )]
    pub version: String,
    pub source: AppSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub vendor: Option<String>,
    /// For distro packages: the source package the binary package was built from
    /// (dpkg `Source:`, rpm source rpm name). Distro advisories are keyed by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub source_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub source_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 1024, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")
    )]
    pub cpe: Option<String>,
}

impl App {
    /// A plain app with only the required fields set.
    pub fn new(name: impl Into<String>, version: impl Into<String>, source: AppSource) -> Self {
        App {
            name: name.into(),
            version: version.into(),
            source,
            arch: None,
            vendor: None,
            source_name: None,
            source_version: None,
            purl: None,
            cpe: None,
        }
    }
}

/// Where an app was found: the package manager or the OS registry that lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AppSource {
    Dpkg,
    Rpm,
    Apk,
    Pypi,
    Npm,
    Cargo,
    Gem,
    Go,
    Maven,
    Nuget,
    Composer,
    Hex,
    Pub,
    Cran,
    Hackage,
    Conda,
    Windows,
    Macos,
    Homebrew,
    Snap,
    Flatpak,
    /// Anything else: matched only through NVD CPE data.
    Other,
}

impl AppSource {
    pub const ALL: [AppSource; 22] = [
        AppSource::Dpkg,
        AppSource::Rpm,
        AppSource::Apk,
        AppSource::Pypi,
        AppSource::Npm,
        AppSource::Cargo,
        AppSource::Gem,
        AppSource::Go,
        AppSource::Maven,
        AppSource::Nuget,
        AppSource::Composer,
        AppSource::Hex,
        AppSource::Pub,
        AppSource::Cran,
        AppSource::Hackage,
        AppSource::Conda,
        AppSource::Windows,
        AppSource::Macos,
        AppSource::Homebrew,
        AppSource::Snap,
        AppSource::Flatpak,
        AppSource::Other,
    ];

    /// The wire name (`"dpkg"`, `"pypi"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AppSource::Dpkg => "dpkg",
            AppSource::Rpm => "rpm",
            AppSource::Apk => "apk",
            AppSource::Pypi => "pypi",
            AppSource::Npm => "npm",
            AppSource::Cargo => "cargo",
            AppSource::Gem => "gem",
            AppSource::Go => "go",
            AppSource::Maven => "maven",
            AppSource::Nuget => "nuget",
            AppSource::Composer => "composer",
            AppSource::Hex => "hex",
            AppSource::Pub => "pub",
            AppSource::Cran => "cran",
            AppSource::Hackage => "hackage",
            AppSource::Conda => "conda",
            AppSource::Windows => "windows",
            AppSource::Macos => "macos",
            AppSource::Homebrew => "homebrew",
            AppSource::Snap => "snap",
            AppSource::Flatpak => "flatpak",
            AppSource::Other => "other",
        }
    }

    /// Parses a wire name; `None` for an unknown one.
    pub fn parse(s: &str) -> Option<AppSource> {
        AppSource::ALL.into_iter().find(|src| src.as_str() == s)
    }

    /// True for the OS package managers whose advisories are per distro release.
    pub fn is_distro(self) -> bool {
        matches!(self, AppSource::Dpkg | AppSource::Rpm | AppSource::Apk)
    }
}

impl std::fmt::Display for AppSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
