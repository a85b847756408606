//! The offline knowledge bundle (`zerotrace feeds export FILE` / `feeds import FILE`): how an
//! air-gapped site gets the knowledge a connected one synced.
//!
//! A zip archive of JSON-lines files — `advisories.jsonl` (the normalized advisories), `kev.jsonl`,
//! `epss.jsonl`, one record per line — and `manifest.json`, which names the format and its
//! version, when and from which knowledge revision the bundle was made, and for every file its
//! record count and SHA-256. A bundle is checked whole before anything is imported: a missing
//! or extra file, a checksum or count that does not match, a line that does not decode, or a
//! format this version does not know refuses it, naming the problem.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zt_advisory::import::KnowledgeImport;
use zt_advisory::{Advisory, EpssScore, KevEntry};

/// The `format` of a bundle's manifest.
pub const BUNDLE_FORMAT: &str = "zerotrace-knowledge-bundle";
/// The version of the format this build writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

const MANIFEST: &str = "manifest.json";
const ADVISORIES: &str = "advisories.jsonl";
const KEV: &str = "kev.jsonl";
const EPSS: &str = "epss.jsonl";
/// Largest file of a bundle, decompressed (NVD + OSV of every ecosystem is a few GB at most).
const MAX_FILE_BYTES: u64 = 16 << 30;

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    pub records: u64,
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// The knowledge revision of the store it was exported from.
    pub revision: u64,
    /// By file name.
    pub files: BTreeMap<String, BundleFile>,
}

/// Why a bundle was refused (nothing of it is imported).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a knowledge bundle (not a zip archive: {1})")]
    NotZip(String, String),
    #[error("{file}: {message}")]
    Bad { file: String, message: String },
    #[error("{file} line {line}: {message}")]
    BadLine {
        file: String,
        line: u64,
        message: String,
    },
}

fn bad(file: impl Into<String>, message: impl Into<String>) -> BundleError {
    BundleError::Bad {
        file: file.into(),
        message: message.into(),
    }
}

fn jsonl<T: Serialize>(name: &str, items: &[T]) -> Result<(Vec<u8>, BundleFile), BundleError> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|e| bad(name, e.to_string()))?;
        out.push(b'\n');
    }
    let sha256 = hex::encode(Sha256::digest(&out));
    Ok((
        out,
        BundleFile {
            records: items.len() as u64,
            sha256,
        },
    ))
}

/// Writes a bundle of `knowledge` (made at `revision`) to `path`, through a temporary file
/// renamed into place: a failed export leaves no half bundle behind.
pub fn write_bundle(
    path: &Path,
    knowledge: &KnowledgeImport,
    revision: u64,
) -> Result<Manifest, BundleError> {
    let name = path.display().to_string();
    let tmp = path.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).map_err(|e| BundleError::Io(tmp.display().to_string(), e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        version: BUNDLE_VERSION,
        created_at: Utc::now(),
        revision,
        files: BTreeMap::new(),
    };
    let parts = [
        (ADVISORIES, jsonl(ADVISORIES, &knowledge.advisories)?),
        (KEV, jsonl(KEV, &knowledge.kev)?),
        (EPSS, jsonl(EPSS, &knowledge.epss)?),
    ];
    let io = |e: std::io::Error| BundleError::Io(name.clone(), e);
    let zerr = |e: zip::result::ZipError| bad(name.clone(), e.to_string());
    for (file_name, (bytes, entry)) in parts {
        zip.start_file(file_name, opts).map_err(zerr)?;
        zip.write_all(&bytes).map_err(io)?;
        manifest.files.insert(file_name.to_string(), entry);
    }
    zip.start_file(MANIFEST, opts).map_err(zerr)?;
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| bad(MANIFEST, e.to_string()))?;
    zip.write_all(&text).map_err(io)?;
    let mut inner = zip.finish().map_err(zerr)?;
    inner.flush().map_err(io)?;
    inner
        .into_inner()
        .map_err(|e| BundleError::Io(name.clone(), e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(manifest)
}

/// Reads and checks a whole bundle; returns its manifest and records, or why it is refused.
pub fn read_bundle(path: &Path) -> Result<(Manifest, KnowledgeImport), BundleError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| BundleError::Io(name.clone(), e))?;
    read_bundle_from(&name, std::io::BufReader::new(file))
}

fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    bundle: &str,
    file: &str,
) -> Result<Vec<u8>, BundleError> {
    let mut entry = zip
        .by_name(file)
        .map_err(|_| bad(bundle, format!("{file} is missing")))?;
    if entry.size() > MAX_FILE_BYTES {
        return Err(bad(format!("{bundle}!{file}"), "over the size limit"));
    }
    let mut out = Vec::with_capacity(entry.size() as usize);
    (&mut entry)
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad(format!("{bundle}!{file}"), format!("cannot be read: {e}")))?;
    Ok(out)
}

fn parse_lines<T: serde::de::DeserializeOwned>(
    bundle: &str,
    file: &str,
    bytes: &[u8],
) -> Result<Vec<T>, BundleError> {
    let mut out = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let record = serde_json::from_slice(line).map_err(|e| BundleError::BadLine {
            file: format!("{bundle}!{file}"),
            line: i as u64 + 1,
            message: e.to_string(),
        })?;
        out.push(record);
    }
    Ok(out)
}

fn read_bundle_from<R: Read + Seek>(
    name: &str,
    reader: R,
) -> Result<(Manifest, KnowledgeImport), BundleError> {
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| BundleError::NotZip(name.into(), e.to_string()))?;
    let manifest_bytes = read_entry(&mut zip, name, MANIFEST)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| bad(format!("{name}!{MANIFEST}"), format!("not a manifest: {e}")))?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(bad(
            format!("{name}!{MANIFEST}"),
            format!("format {:?}, expected {BUNDLE_FORMAT:?}", manifest.format),
        ));
    }
    if manifest.version != BUNDLE_VERSION {
        return Err(bad(
            format!("{name}!{MANIFEST}"),
            format!(
                "bundle version {} (this zerotrace reads version {BUNDLE_VERSION})",
                manifest.version
            ),
        ));
    }
    let expected: Vec<&str> = vec![ADVISORIES, EPSS, KEV];
    let listed: Vec<&str> = manifest.files.keys().map(String::as_str).collect();
    if listed != expected {
        return Err(bad(
            format!("{name}!{MANIFEST}"),
            format!("lists files {listed:?}, expected {expected:?}"),
        ));
    }
    let in_zip: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| bad(name, format!("bad zip entry name: {e}")))?;
    if let Some(extra) = in_zip
        .iter()
        .find(|f| f.as_str() != MANIFEST && !manifest.files.contains_key(f.as_str()))
    {
        return Err(bad(name, format!("{extra} is not in the manifest")));
    }
    let mut contents = BTreeMap::new();
    for (file, entry) in &manifest.files {
        let bytes = read_entry(&mut zip, name, file)?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if sha != entry.sha256 {
            return Err(bad(
                format!("{name}!{file}"),
                format!(
                    "SHA-256 {sha} does not match the manifest's {}",
                    entry.sha256
                ),
            ));
        }
        contents.insert(file.as_str(), bytes);
    }
    let advisories: Vec<Advisory> = parse_lines(name, ADVISORIES, &contents[ADVISORIES])?;
    let kev: Vec<KevEntry> = parse_lines(name, KEV, &contents[KEV])?;
    let epss: Vec<EpssScore> = parse_lines(name, EPSS, &contents[EPSS])?;
    for (file, got) in [
        (ADVISORIES, advisories.len()),
        (KEV, kev.len()),
        (EPSS, epss.len()),
    ] {
        let want = manifest.files[file].records;
        if got as u64 != want {
            return Err(bad(
                format!("{name}!{file}"),
                format!("{got} records, the manifest says {want}"),
            ));
        }
    }
    let origin = format!("bundle {name} (revision {})", manifest.revision);
    Ok((
        manifest,
        KnowledgeImport {
            advisories,
            kev,
            epss,
            origin,
        },
    ))
}

/// Whether `path` is a knowledge bundle (a zip archive holding `manifest.json`), as opposed
/// to a feed file such as OSV's `all.zip`.
pub fn is_bundle(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(zip) = zip::ZipArchive::new(std::io::BufReader::new(file)) else {
        return false;
    };
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    names.iter().any(|n| n == MANIFEST)
}
